// streams.mjs — streams beside a long prompt, Orchestra against llama-server
// in one run: 4 streamed completions run; once they flow, a ~2,000-token
// prompt arrives (max_tokens 1). Reported for each server: the streams'
// tokens/s before it and while it is read, their per-token gap (p50, p99)
// while it is read, and its time to the first token (TTFT). REPS runs
// each, alternated; medians. Where setup built a CPU backend for this CPU
// (.deps/llama/lib/native), orchestra also runs on the release's backends
// (orchestra-release: ORCH_GGML_BACKEND_DIR=.deps/llama/lib) in the same
// run. Prints figures; asserts nothing.
// Build the peer first: bench/build-llama-server.sh.
// usage: node bench/streams.mjs [MODEL.gguf]   (default: a synthetic 17M model, 8192 trained)
// env: ORCH_BIN (default build/orchestra), REPS (default 3), THREADS (default 2),
//      ORCH_EXTRA (more [defaults] lines for orchestra's config, e.g. "stream_latency = -1")
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const top = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
const bin = process.env.ORCH_BIN || path.join(top, 'build', 'orchestra');
const server = path.join(top, '.deps', 'llama-server', 'bin', 'llama-server');
const model = process.argv[2] || path.join(top, 'build', 'bench', 'streams-17m.gguf');
const reps = Number(process.env.REPS || 3), threads = Number(process.env.THREADS || 2);
const N_STREAMS = 4, STREAM_TOKENS = 2000;
if (!fs.existsSync(model)) {
  fs.mkdirSync(path.dirname(model), { recursive: true });
  execFileSync(bin, ['-q', 'mkmodel', '--params', '17M', '--seed', '3', '--ctx', '8192', '-o', model]);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'streams-'));
const words = 'the quick brown fox jumps over a lazy dog while seven small birds sing near the river bank'.split(' ');
let runNo = 0; // each run's long prompt is new: nothing of it is cached
const long = () => `${++runNo} ${Date.now()} ` + Array.from({ length: 800 }, (_, i) => words[(i * 7 + runNo) % words.length]).join(' ');

async function waitUp(url) {
  for (let i = 0; i < 300; i++) {
    try { if ((await fetch(`${url}/health`)).ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

function start(kind, port) {
  let child;
  if (kind.startsWith('orchestra')) {
    const cfg = path.join(dir, 'o.ini');
    const env = kind === 'orchestra-release' ? { ...process.env, ORCH_GGML_BACKEND_DIR: release } : process.env;
    fs.writeFileSync(cfg, `[defaults]\nn_threads = ${threads}\nidle_ttl = -1\n${process.env.ORCH_EXTRA || ''}\n` +
      `[m]\npath = ${model}\nn_parallel = ${N_STREAMS + 1}\nn_ctx = 4096\n`);
    child = spawn(bin, ['-q', '-c', cfg, 'serve', '--port', String(port)], { env, stdio: ['ignore', 'ignore', process.env.ORCH_BENCH_LOG ? fs.openSync(`${process.env.ORCH_BENCH_LOG}.${kind}`, 'w') : 'ignore'] });
  } else {
    child = spawn(server, ['-m', model, '--host', '127.0.0.1', '--port', String(port), '-t', String(threads),
      '-tb', String(threads), '-np', String(N_STREAMS + 1), '-c', String(4096 * (N_STREAMS + 1)), '--no-webui'], { stdio: 'ignore' });
  }
  return child;
}

// one streamed completion: the arrival time of each token (ms)
async function stream(url, stamps, stop) {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt: 'Once upon a time', max_tokens: STREAM_TOKENS, temperature: 0, stream: true }),
  });
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  while (!stop.done) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (ev.startsWith('data: {')) stamps.push(performance.now());
    }
  }
  reader.cancel().catch(() => {});
}

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN; };
const median = (a) => pct(a, 0.5);

async function once(url) {
  const stop = { done: false };
  const stamps = Array.from({ length: N_STREAMS }, () => []);
  const runs = stamps.map((s) => stream(url, s, stop));
  await new Promise((r) => setTimeout(r, 2500)); // the streams flow
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt: long(), max_tokens: 1, temperature: 0 }),
  });
  const body = await r.json();
  const t1 = performance.now();
  if (!r.ok) throw new Error(`${url}: ${JSON.stringify(body)}`);
  stop.done = true;
  await Promise.all(runs);
  const inWin = (t) => t >= t0 && t <= t1;
  const before = stamps.flat().filter((t) => t >= t0 - 1500 && t < t0).length / 1.5;
  const during = stamps.flat().filter(inWin).length / ((t1 - t0) / 1000);
  const gaps = [];
  for (const s of stamps) for (let i = 1; i < s.length; i++) if (inWin(s[i])) gaps.push(s[i] - s[i - 1]);
  return { ttft: t1 - t0, before, during, p50: median(gaps), p99: pct(gaps, 0.99), prompt: body.usage?.prompt_tokens };
}

const release = path.join(top, '.deps', 'llama', 'lib');
const results = { orchestra: [], ...(fs.existsSync(path.join(release, 'native')) ? { 'orchestra-release': [] } : {}), 'llama-server': [] };
const ports = { orchestra: 18301, 'llama-server': 18302, 'orchestra-release': 18303 };
const procs = {};
try {
  for (const k of Object.keys(results)) procs[k] = start(k, ports[k]);
  for (const k of Object.keys(results)) await waitUp(`http://127.0.0.1:${ports[k]}`);
  for (let i = 0; i < reps; i++)
    for (const k of Object.keys(results)) results[k].push(await once(`http://127.0.0.1:${ports[k]}`));
} finally {
  for (const p of Object.values(procs)) p.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(`model ${path.basename(model)}, ${threads} threads, ${N_STREAMS} streams, long prompt ${results.orchestra[0].prompt} tokens, ${reps} runs (medians)`);
console.log('server          streams t/s before  while read  kept   gap p50 ms  gap p99 ms  TTFT ms');
const row = {};
for (const [k, rs] of Object.entries(results)) {
  const m = (f) => median(rs.map(f));
  row[k] = { before: m((r) => r.before), during: m((r) => r.during), p50: m((r) => r.p50), p99: m((r) => r.p99), ttft: m((r) => r.ttft) };
  const x = row[k];
  console.log(`${k.padEnd(15)} ${x.before.toFixed(1).padStart(18)} ${x.during.toFixed(1).padStart(11)} ${(100 * x.during / x.before).toFixed(0).padStart(4)}% ${x.p50.toFixed(1).padStart(11)} ${x.p99.toFixed(1).padStart(11)} ${x.ttft.toFixed(0).padStart(8)}`);
}
if (row['orchestra-release'])
  console.log(`TTFT orchestra/orchestra-release: ${(row.orchestra.ttft / row['orchestra-release'].ttft).toFixed(2)}x; ` +
    `streams' rate before: ${(row.orchestra.before / row['orchestra-release'].before).toFixed(2)}x`);
console.log(`TTFT orchestra/llama-server: ${(row.orchestra.ttft / row['llama-server'].ttft).toFixed(2)}x; streams kept while read: ` +
  `${(100 * row.orchestra.during / row.orchestra.before).toFixed(0)}% vs ${(100 * row['llama-server'].during / row['llama-server'].before).toFixed(0)}%`);
