// test-hostile-clients.mjs — `orchestra serve` against clients that do
// what servers must survive (issue 19): they leave before their answer,
// half-close, stay on kept-alive connections through a drain, send bytes
// that are not UTF-8; and a daemon told to stop while generations run, or
// right after a reload. Loopback only, every daemon on a free port, each
// test bounded. Run by ctest: node --test. Environment: see daemon-util.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  BIN, MODEL, missing, skipAll, tmp, writeConfig, startServer, stopServer, metric,
} from './daemon-util.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One raw HTTP/1.1 exchange on a socket of its own: writes `head` and
// `body`, half-closes when asked, reads until the server closes (or
// `until` matches what came). Resolves with the bytes received.
function raw(port, head, body = '', { halfClose = false, until = null, ms = 60000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let got = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no end after ${ms} ms: ${got.slice(-300)}`)); }, ms);
    sock.on('connect', () => {
      sock.write(head + body);
      if (halfClose) sock.end();
    });
    sock.on('data', (d) => {
      got += d;
      if (until && until.test(got)) { clearTimeout(timer); sock.destroy(); resolve(got); }
    });
    sock.on('end', () => { clearTimeout(timer); sock.end(); resolve(got); });
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

function post(path, json, extra = '') {
  const body = JSON.stringify(json);
  return [`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`, body];
}

// A generation far longer than any test waits for: the test model, greedy
// from this prompt, writes 4,000 tokens without an end token (it takes
// 20 s alone); should it end on its own before a test cuts it on another
// CPU, a complete reply is still a right answer.
const LONG = { model: 'dream', prompt: 'Once upon a time', max_tokens: 100000 };

if (missing) {
  skipAll('test-hostile-clients', missing);
} else {
  const config = writeConfig('hostile-clients.ini', `[defaults]
n_threads = 1
idle_ttl = -1
n_parallel = 16
[story]
path = ${MODEL}
temperature = 0
max_tokens = 11
[dream]
fallback = story
temperature = 0
max_tokens = 4000
n_ctx = 4096
`);

  // What every cut generation must say, in either API's shape; a reply
  // that ended on its own before the cut is complete (200).
  const CUT = /cut at the drain deadline/;
  const cutOrDone = (status, message) => {
    if (status === 200) return;
    assert.equal(status, 503, message);
    assert.match(message, CUT);
  };

  test('SIGTERM during 8 streams and 8 non-streamed generations (--drain-timeout 1): every client gets a complete reply or a clean error, then exit 0', async () => {
    const s = await startServer(config, ['--drain-timeout', '1']);
    assert.ok(s.port > 0, s.stderr());
    await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: 'x', max_tokens: 1 }) });
    const plain = [], streams = [];
    for (let i = 0; i < 8; i++) {
      plain.push(fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify(LONG) })
        .then(async (r) => ({ status: r.status, body: await r.text() })));
      streams.push(fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ ...LONG, stream: true }) })
        .then(async (r) => ({ status: r.status, body: await r.text() })));
    }
    await sleep(500);
    const t0 = performance.now();
    s.child.kill('SIGTERM');
    const { code } = await s.exited;
    const ms = performance.now() - t0;
    console.log(`# exit ${ms.toFixed(0)} ms after SIGTERM (drain 1 s)`);
    assert.equal(code, 0, s.stderr());
    for (const p of await Promise.all(plain))
      cutOrDone(p.status, p.status === 200 ? '' : JSON.parse(p.body).error.message);
    for (const st of await Promise.all(streams)) {
      assert.equal(st.status, 200);
      const events = st.body.split('\n\n').filter(Boolean);
      assert.equal(events.at(-1), 'data: [DONE]', 'the stream ends with its terminator event');
      const last = JSON.parse(events.at(-2).slice(6));
      if (!last.choices?.[0]?.finish_reason)
        assert.match(last.error.message, CUT, 'the last event before it says why the stream ended');
    }
    const cut = Number(s.stderr().match(/event=stopping .*requests_cut=(\d+)/)?.[1]);
    assert.ok(cut >= 8, `${cut} of 16 generations cut`);
  });

  test('a second SIGTERM stops at once, whatever the drain timeout', async () => {
    const s = await startServer(config, ['--drain-timeout', '600']);
    const body = { model: LONG.model, prompt: LONG.prompt, stream: false, options: { num_predict: 100000 } };
    const jobs = [0, 1].map(() => fetch(`${s.url}/api/generate`, { method: 'POST', body: JSON.stringify(body) })
      .then(async (r) => ({ status: r.status, body: await r.text() })));
    await sleep(500);
    s.child.kill('SIGTERM');
    await sleep(300);
    s.child.kill('SIGTERM');
    assert.equal((await s.exited).code, 0, s.stderr());
    for (const j of await Promise.all(jobs))
      cutOrDone(j.status, j.status === 200 ? '' : JSON.parse(j.body).error);
    assert.match(s.stderr(), /event=stopping .*second_signal=yes/);
  });

  test('SIGHUP then SIGTERM: the reload runs off the signal thread and does not hold the stop up; SIGHUPs are answered and logged', async () => {
    const s = await startServer(config, ['--drain-timeout', '1']);
    const job = fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify(LONG) }).then((r) => r.status);
    await sleep(300);
    for (let i = 0; i < 5; i++) s.child.kill('SIGHUP');
    await sleep(300);
    s.child.kill('SIGTERM');
    assert.equal((await s.exited).code, 0, s.stderr());
    assert.ok([200, 503].includes(await job));
    const reloads = [...s.stderr().matchAll(/event=reload .*signals=(\d+)/g)].map((m) => Number(m[1]));
    assert.ok(reloads.length >= 1, s.stderr());
    assert.ok(reloads.reduce((a, b) => a + b, 0) <= 5);
  });

  test('a non-streamed request whose client leaves stops within a token and returns its lease', async () => {
    const s = await startServer(config);
    try {
      await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ ...LONG, max_tokens: 1 }) });
      const ctls = [0, 1, 2, 3].map(() => new AbortController());
      let done = 0;
      const jobs = ctls.map((c) => fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify(LONG), signal: c.signal })
        .then(() => { done++; }, () => null));
      await sleep(400);
      const left = 4 - done; // the others ended on their own
      for (const c of ctls) c.abort();
      await Promise.all(jobs);
      let leases = NaN;
      for (let i = 0; i < 250; i++) {
        leases = await metric(s.url, 'orchestra_leases', 'role="dream"');
        if (leases === 0) break;
        await sleep(20);
      }
      assert.equal(leases, 0, 'the leases came back');
      const out = await metric(s.url, 'orchestra_tokens_total', 'role="dream",direction="out"');
      assert.ok(out < 4 * 4000, `the generations ran on (${out} tokens)`);
      let gone = NaN;
      for (let i = 0; i < 100 && !(gone === left); i++) {
        gone = (await metric(s.url, 'orchestra_requests_total', 'endpoint="/v1/completions",status="499"')) || 0;
        await sleep(20);
      }
      assert.equal(gone, left, 'each is counted as the client closing its request (499)');
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('clients that half-close after their request are served to the end (10 streams)', async () => {
    const s = await startServer(config);
    try {
      const [head, body] = post('/v1/completions', { model: 'story', prompt: 'Once upon a time', max_tokens: 40, stream: true }, 'Connection: close\r\n');
      const got = await Promise.all(Array.from({ length: 10 }, () => raw(s.port, head, body, { halfClose: true })));
      for (const g of got) {
        assert.match(g, /^HTTP\/1\.1 200/);
        assert.match(g, /"finish_reason":"length"/);
        assert.match(g, /data: \[DONE\]/);
      }
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('draining: a kept-alive connection\'s next request gets 503 with Connection: close', async () => {
    const s = await startServer(config, ['--drain-timeout', '1']);
    const long = fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify(LONG) }).then((r) => r.status);
    const sock = net.connect({ host: '127.0.0.1', port: s.port });
    let got = '';
    sock.on('data', (d) => { got += d; });
    const closed = new Promise((r) => sock.on('close', r));
    const [head, body] = post('/v1/completions', { model: 'story', prompt: 'Once upon a time', max_tokens: 2 });
    sock.write(head + body);
    for (let i = 0; i < 500 && !/"usage"/.test(got); i++) await sleep(10);
    assert.match(got, /^HTTP\/1\.1 200/);
    s.child.kill('SIGTERM');
    await sleep(200);
    got = '';
    sock.write(head + body);
    await closed;
    assert.match(got, /^HTTP\/1\.1 503/);
    assert.match(got, /[Cc]onnection: close/);
    assert.match(got, /the server is stopping/);
    assert.ok([200, 503].includes(await long));
    assert.equal((await s.exited).code, 0, s.stderr());
  });

  test('error messages that quote a client\'s bytes stay valid JSON: a long multi-byte model name, /v1/models/%FF', async () => {
    const s = await startServer(config);
    try {
      const name = 'é'.repeat(70); // 140 bytes: any cut lands inside a character
      for (const p of ['/v1/completions', '/api/generate']) {
        const r = await fetch(`${s.url}${p}`, { method: 'POST', body: JSON.stringify({ model: name, prompt: 'x' }) });
        assert.equal(r.status, 404, p);
        JSON.parse(await r.text());
      }
      const r = await fetch(`${s.url}/v1/models/%FF`);
      assert.equal(r.status, 404);
      JSON.parse(await r.text());
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('bodies: a chunked body past --body-max is cut at 8x with a 413, not read without end; Expect: 100-continue past it is 413 before the body; an unknown transfer coding is 501; too many JSON containers are 400 before parsing', async () => {
    const s = await startServer(config, ['--body-max', '4000']);
    try {
      // a chunked body a little past the limit: read to its end, then 413
      const small = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: new Blob(['x'.repeat(6000)]).stream(), duplex: 'half' });
      assert.equal(small.status, 413);
      // an endless one (100 MiB): the daemon stops reading after 8x the limit
      const endless = await new Promise((resolve) => {
        const sock = net.connect({ host: '127.0.0.1', port: s.port });
        let sent = 0;
        const chunk = `400\r\n${'x'.repeat(1024)}\r\n`;
        sock.on('connect', () => {
          sock.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
          const pump = () => { while (sent < 100000 && sock.write(chunk)) sent++; if (sent < 100000) sock.once('drain', pump); };
          pump();
        });
        sock.on('error', () => resolve(sent));
        sock.on('close', () => resolve(sent));
      });
      // (what the client wrote includes what the sockets' buffers held)
      assert.ok(endless < 20000, `${endless} KiB of an endless body written before the daemon closed`);
      const [h] = post('/v1/completions', {}, 'Expect: 100-continue\r\n');
      const expect = await raw(s.port, h.replace(/Content-Length: \d+/, 'Content-Length: 5000'), '', { until: /\r\n\r\n/ });
      assert.match(expect, /^HTTP\/1\.1 413/);
      const te = await raw(s.port, 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', '5\r\nhello\r\n0\r\n\r\n', { ms: 5000 });
      assert.match(te, /^HTTP\/1\.1 501/);
      const many = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: `{"model":"story","prompt":"x","x":[${'[],'.repeat(1300)}[]]}` });
      assert.equal(many.status, 200, 'a few thousand containers are fine');
      const deep = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: '['.repeat(65) + ']'.repeat(65) });
      assert.equal(deep.status, 400);
      assert.match((await deep.json()).error.message, /nests deeper than 64/);
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('JSON types are strict: stream, stream_options, include_usage, encoding_format, Ollama stream and system', async () => {
    const s = await startServer(config);
    try {
      const bad = [
        ['/v1/completions', { model: 'story', prompt: 'x', stream: 'yes' }, /'stream' must be true or false/],
        ['/v1/completions', { model: 'story', prompt: 'x', stream_options: 1 }, /'stream_options' must be an object/],
        ['/v1/chat/completions', { model: 'story', messages: [{ role: 'user', content: 'x' }], stream: true, stream_options: { include_usage: 'no' } }, /include_usage' must be true or false/],
        ['/v1/embeddings', { model: 'story', input: 'x', encoding_format: 7 }, /encoding_format/],
        ['/api/generate', { model: 'story', prompt: 'x', stream: 0 }, /'stream' must be true or false/],
        ['/api/generate', { model: 'story', prompt: 'x', system: ['a'] }, /'system' must be a string/],
      ];
      for (const [p, body, re] of bad) {
        const r = await fetch(`${s.url}${p}`, { method: 'POST', body: JSON.stringify(body) });
        assert.equal(r.status, 400, `${p} ${JSON.stringify(body)}`);
        const e = (await r.json()).error;
        assert.match(typeof e === 'string' ? e : e.message, re);
      }
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('keep_alive past any clock is forever, not an overflow; the auth scheme is case-insensitive; clients see model file names, not paths', async () => {
    const s = await startServer(config, ['--api-key', 'k']);
    try {
      const auth = { Authorization: 'bearer k' };
      for (const keep of ['9223372036854774000ms', 1e300, '1e300h']) {
        const r = await fetch(`${s.url}/api/generate`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'story', prompt: 'x', stream: false, keep_alive: keep, options: { num_predict: 1 } }) });
        assert.equal(r.status, 200, String(keep));
      }
      const show = await (await fetch(`${s.url}/api/show`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'story' }) })).json();
      assert.equal(show.path, 'stories260K.gguf');
      const missing = writeConfig('missing.ini', '[gone]\npath = /nonexistent/dir/gone.gguf\n');
      const m = await startServer(missing);
      try {
        const r = await fetch(`${m.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'gone', prompt: 'x' }) });
        const msg = (await r.json()).error.message;
        assert.match(msg, /'gone\.gguf'/);
        assert.doesNotMatch(msg, /nonexistent/);
      } finally {
        assert.equal((await stopServer(m)).code, 0);
      }
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('role metric slots are reused: 300 distinct role names over reloads, each still served', async () => {
    const file = writeConfig('slots.ini', `[defaults]\nn_threads = 1\nidle_ttl = -1\n[story]\npath = ${MODEL}\nmax_tokens = 1\n`);
    const s = await startServer(file);
    try {
      for (let i = 0; i < 300; i++) {
        fs.writeFileSync(file, `[defaults]\nn_threads = 1\nidle_ttl = -1\n[story]\npath = ${MODEL}\nmax_tokens = 1\n[r${i}]\nfallback = story\n`);
        const before = (s.stderr().match(/event=reload /g) || []).length;
        s.child.kill('SIGHUP');
        for (let k = 0; k < 500 && (s.stderr().match(/event=reload /g) || []).length === before; k++) await sleep(2);
        const r = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: `r${i}`, prompt: 'x' }) });
        assert.equal(r.status, 200, `role r${i}: ${await r.text()}`);
      }
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  // Opens n connections that send a request's headers a byte at a time,
  // slower than anyone waits, and never finish them; resolves with a
  // closer, and counts how many the daemon ended.
  async function slowloris(port, n, everyMs) {
    const socks = [];
    let ended = 0;
    for (let i = 0; i < n; i++) {
      const sock = net.connect({ host: '127.0.0.1', port });
      sock.on('error', () => {});
      sock.on('close', () => { ended++; });
      const text = 'GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: ' + 'a'.repeat(10000);
      let at = 0;
      const timer = setInterval(() => { if (!sock.destroyed) sock.write(text[at++ % text.length]); }, everyMs);
      sock.on('close', () => clearInterval(timer));
      socks.push(sock);
    }
    await sleep(1500); // older than a connection the daemon would spare
    return { close: () => { for (const s of socks) s.destroy(); }, ended: () => ended };
  }

  test('slowloris at 2x the connection cap: /health and a generation are still answered, and the slow connections are cut by the deadline', async () => {
    const s = await startServer(config, ['--max-connections', '16', '--idle-timeout', '3']);
    const slow = await slowloris(s.port, 32, 500);
    try {
      const h = await fetch(`${s.url}/health`);
      assert.equal(h.status, 200);
      const g = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: 'Once upon a time' }) });
      assert.equal(g.status, 200);
      for (let i = 0; i < 300 && slow.ended() < 32; i++) await sleep(20);
      assert.equal(slow.ended(), 32, 'every slow connection was ended (evicted or past its deadline)');
      assert.match(s.stderr(), /event=connection_cut why="no whole request within the idle timeout"/);
      assert.match(s.stderr(), /event=connection_cut why="evicted/);
    } finally {
      slow.close();
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('a burst of 4x the queue cap past the connection cap: every request answered, 200 or 503 with Retry-After, none reset', async () => {
    const s = await startServer(config, ['--max-connections', '8', '--queue-max', '8']);
    try {
      const body = JSON.stringify({ ...LONG, max_tokens: 200 });
      const got = await Promise.all(Array.from({ length: 32 }, () => fetch(`${s.url}/v1/completions`, { method: 'POST', body })
        .then((r) => ({ status: r.status, retry: r.headers.get('retry-after') }), (e) => ({ status: 0, err: String(e.cause || e) }))));
      const ok = got.filter((g) => g.status === 200).length;
      const busy = got.filter((g) => g.status === 503 && g.retry).length;
      console.log(`# burst of 32: ${ok} answered 200, ${busy} 503 with Retry-After`);
      assert.equal(ok + busy, 32, JSON.stringify(got.filter((g) => g.status !== 200 && !(g.status === 503 && g.retry))));
      assert.ok(ok >= 8);
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('a body that trickles in is cut at the idle timeout, whatever its pace', async () => {
    const s = await startServer(config, ['--idle-timeout', '2']);
    try {
      const t0 = performance.now();
      const ended = await new Promise((resolve) => {
        const sock = net.connect({ host: '127.0.0.1', port: s.port });
        sock.on('error', () => {});
        sock.on('connect', () => sock.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{'));
        const timer = setInterval(() => sock.write(' '), 300);
        const limit = setTimeout(() => { clearInterval(timer); sock.destroy(); resolve(-1); }, 20000);
        sock.on('close', () => { clearInterval(timer); clearTimeout(limit); resolve(performance.now() - t0); });
      });
      console.log(`# a trickling body cut after ${ended.toFixed(0)} ms (idle timeout 2 s)`);
      assert.ok(ended > 0, 'the daemon kept the trickling connection for 20 s');
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('the budget binds every request: num_ctx 2^22 under a 50M budget is 507 before anything is made; a context that fits is charged for its request and given back', async () => {
    const file = writeConfig('budget.ini', `[defaults]\nn_threads = 1\nidle_ttl = -1\nmemory_budget = 50M\nload_timeout = 2000\n[story]\npath = ${MODEL}\nmax_tokens = 2\n`);
    const s = await startServer(file);
    try {
      const gen = (num_ctx) => fetch(`${s.url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: 'Once upon a time', stream: false, options: { num_ctx, num_predict: 2 } }) });
      assert.equal((await fetch(`${s.url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: 'Once upon a time', stream: false }) })).status, 200);
      const used = await metric(s.url, 'orchestra_memory_used_bytes', '').catch(() => NaN);
      const r = await gen(4194304);
      assert.equal(r.status, 507);
      assert.match((await r.json()).error, /a context of 4194304 tokens/);
      assert.equal((await gen(4096)).status, 200, 'a context that fits runs');
      const text = await (await fetch(`${s.url}/metrics`)).text();
      const after = Number(text.match(/^orchestra_memory_used_bytes (\d+)/m)[1]);
      const before = Number.isNaN(used) ? after : used;
      assert.equal(after, before, 'the context was given back');
      // and a role may cap what a request asks for
      fs.writeFileSync(file, `[defaults]\nn_threads = 1\nidle_ttl = -1\nmemory_budget = 50M\n[story]\npath = ${MODEL}\nmax_tokens = 2\nn_ctx_max = 3000\n`);
      s.child.kill('SIGHUP');
      for (let i = 0; i < 250 && !/event=reload .*result=applied/.test(s.stderr()); i++) await sleep(20);
      const capped = await gen(4096);
      assert.equal(capped.status, 400);
      assert.match((await capped.json()).error, /allows at most 3000 \(n_ctx_max\)/);
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('a pinned model filling the budget: another role that cannot fit gets 507 at once, not 503 after the load timeout', async () => {
    // two synthetic models of about 25 MiB each (weights, one 512-token context): one fits
    const [a, b] = ['a', 'b'].map((n, i) => {
      const f = path.join(tmp, `pin-${n}.gguf`);
      execFileSync(BIN, ['-q', 'mkmodel', '--params', '10M', '--seed', String(5 + i), '-o', f]);
      return f;
    });
    const file = writeConfig('pinned.ini', `[defaults]\nn_threads = 1\nidle_ttl = -1\nmemory_budget = 40M\nload_timeout = 60000\nn_parallel = 1\nn_ctx = 512\n[pinned]\npath = ${a}\npin = true\nmax_tokens = 1\n[other]\npath = ${b}\nmax_tokens = 1\n`);
    const s = await startServer(file);
    try {
      assert.equal((await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'pinned', prompt: 'x' }) })).status, 200);
      const t0 = performance.now();
      const r = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'other', prompt: 'x' }) });
      const ms = performance.now() - t0;
      const body = await r.json();
      assert.equal(r.status, 507, JSON.stringify(body));
      assert.match(body.error.message, /pinned models \(pinned\)/);
      assert.ok(ms < 30000, `answered after ${ms} ms: it waited for the load timeout`);
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });

  test('an unload during a generation does not make the next request wait for it: /admin/unload, then keep_alive 0, while a stream runs', async () => {
    const s = await startServer(config);
    try {
      for (const how of ['admin', 'keep_alive']) {
        const ctl = new AbortController();
        const r = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ ...LONG, stream: true }), signal: ctl.signal });
        const reader = r.body.getReader();
        await reader.read(); // the stream runs
        let streaming = true;
        const drain = (async () => { try { while (!(await reader.read()).done); } catch (e) { /* aborted */ } streaming = false; })();
        if (how === 'admin') {
          const u = await fetch(`${s.url}/admin/unload`, { method: 'POST', body: JSON.stringify({ role: 'story' }) });
          assert.equal(u.status, 200);
        } else {
          const k = await fetch(`${s.url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: '', keep_alive: 0 }) });
          assert.equal(k.status, 200);
        }
        // the role sharing the file, and the unloaded role itself, answer while the stream goes on
        for (const model of ['story', 'dream']) {
          const g = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: 3 }) });
          assert.equal(g.status, 200);
          assert.ok(streaming, `${how}: ${model} waited for the stream to end`);
        }
        ctl.abort();
        await drain;
      }
    } finally {
      assert.equal((await stopServer(s)).code, 0);
    }
  });
}
