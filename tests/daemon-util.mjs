// daemon-util.mjs — what the daemon's Node tests share: the environment,
// the client packages, a scratch directory, and a daemon started on a free
// loopback port (it stops by itself when the test process ends).
//
// Environment: ORCH_BIN (the orchestra command), ORCH_NODE_MODULES (where
// setup put the packages), ORCH_TEST_MODEL (default ../shared/models/...),
// ORCH_TEST_SKIP_LOG (skips are noted there).
import { test, after } from 'node:test';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
export const BIN = process.env.ORCH_BIN;
export const MODEL = process.env.ORCH_TEST_MODEL || path.join(here, '..', '..', 'shared', 'models', 'stories260K.gguf');
export const MODULES = process.env.ORCH_NODE_MODULES || path.join(here, '..', '.deps', 'node', 'node_modules');
export const GREEDY = ', there was a little girl named Lily.';

export function skipAll(name, why) {
  const log = process.env.ORCH_TEST_SKIP_LOG;
  if (log) fs.appendFileSync(log, `${name}: ${why}\n`);
  test(name, { skip: why }, () => {});
}

export let OpenAI = null, Ollama = null;
export const missing = !BIN ? 'ORCH_BIN not set' : !fs.existsSync(MODEL) ? `real model not found at ${MODEL}` : null;
try {
  const require = createRequire(path.join(MODULES, 'x.js'));
  const o = require('openai');
  OpenAI = o.default || o.OpenAI || o;
  Ollama = require('ollama').Ollama;
} catch (e) {
  OpenAI = null;
}

export const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orch-daemon-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
export function writeConfig(name, text) {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, text);
  return p;
}

const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

// Starts a daemon on a free loopback port; resolves when it listens.
export async function startServer(config, args = [], env = {}) {
  const portFile = path.join(tmp, `port-${Math.random().toString(36).slice(2)}`);
  const child = spawn(BIN, ['-c', config, '-v', 'serve', '--port', '0', '--port-file', portFile, ...args],
    { env: { ORCH_VET_CACHE: path.join(tmp, 'vetted'), ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => { children.delete(child); resolve({ code, signal }); }));
  for (let i = 0; i < 500; i++) {
    if (fs.existsSync(portFile) && fs.readFileSync(portFile, 'utf8').trim()) break;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const port = fs.existsSync(portFile) ? Number(fs.readFileSync(portFile, 'utf8').trim()) : 0;
  return { child, port, url: `http://127.0.0.1:${port}`, exited, stderr: () => stderr };
}

export async function stopServer(s) {
  if (s.child.exitCode === null) s.child.kill('SIGTERM');
  return s.exited;
}

export async function metric(url, name, labels) {
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{${labels}}`)) return Number(line.split(' ').pop());
  }
  return NaN;
}
