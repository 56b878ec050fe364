// test-pull.mjs — Ollama's /api/pull on roles, through the ollama client,
// from a loopback HTTP source this test runs: progress in Ollama's streamed
// shape, the sha256 checked (the config's, or a Hugging Face redirect's
// X-Linked-Etag), a cut transfer resumed with a Range request, an abandoned
// pull resumed by the next, one download for two clients, If-Modified-Since
// for a file already there; and a source that 404s, truncates for good,
// redirects forever, sends 10 GB (announced or not), a wrong sha256 or no
// model: each a clear error, no file and no partial file left, an older
// file kept, the other roles serving throughout. Environment: daemon-util.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  BIN, MODEL, MODULES, GREEDY, Ollama, missing, skipAll, tmp, writeConfig, startServer, stopServer,
} from './daemon-util.mjs';

if (missing || !Ollama) {
  skipAll('test-pull', missing || `npm package ollama not found in ${MODULES} (scripts/setup.sh installs it)`);
} else {
  const dl = path.join(tmp, 'dl');
  const synPath = path.join(tmp, 'syn-source.gguf');
  let good, sha, source, srv, olm, stopSource;
  const seen = []; // [path, range header, status] of every request the source answered
  const gate = {}; // name -> { open: Promise, release() } for the slow routes
  const sockets = new Set();
  const when = (name) => {
    if (!gate[name]) {
      let release;
      const open = new Promise((r) => { release = r; });
      gate[name] = { open, release, closed: false };
    }
    return gate[name];
  };
  const LAST_MODIFIED = 'Tue, 01 Dec 2026 10:00:00 GMT';

  // serves good from `range` on (a Range request gets 206), cut after `cut` bytes when given
  async function serveFile(req, res, { cut, hold } = {}) {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range || '');
    const start = m ? Number(m[1]) : 0;
    if (!m && req.headers['if-modified-since'] === LAST_MODIFIED) {
      res.writeHead(304);
      res.end();
      return 304;
    }
    if (start >= good.length) {
      res.writeHead(416, { 'Content-Range': `bytes */${good.length}` });
      res.end();
      return 416;
    }
    const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': good.length - start, 'Last-Modified': LAST_MODIFIED, 'Accept-Ranges': 'bytes' };
    if (m) headers['Content-Range'] = `bytes ${start}-${good.length - 1}/${good.length}`;
    res.writeHead(m ? 206 : 200, headers);
    const body = good.subarray(start);
    if (hold && start === 0) {
      const g = when(hold);
      res.write(body.subarray(0, body.length >> 1));
      res.on('close', () => { g.closed = true; });
      await g.open;
      if (!res.destroyed) res.end(body.subarray(body.length >> 1));
    } else if (cut !== undefined) {
      res.write(body.subarray(0, cut));
      await new Promise((r) => setTimeout(r, 20));
      res.destroy();
    } else {
      res.end(body);
    }
    return m ? 206 : 200;
  }

  async function handle(req, res) {
    const u = req.url;
    let status = 200;
    if (u === '/m/good.gguf' || u === '/cdn/good.gguf') status = await serveFile(req, res);
    else if (u === '/hf/resolve/main/good.gguf') {
      // as Hugging Face answers: a redirect to its CDN naming the file's sha256
      res.writeHead(302, { Location: '/cdn/good.gguf', 'X-Linked-Etag': `"${sha}"`, 'X-Linked-Size': String(good.length) });
      res.end();
      status = 302;
    } else if (u === '/cut-once.gguf') status = await serveFile(req, res, req.headers.range ? {} : { cut: 100000 });
    else if (u === '/cut.gguf') status = await serveFile(req, res, { cut: req.headers.range ? 0 : 100000 });
    else if (u === '/slow.gguf') status = await serveFile(req, res, { hold: 'slow' });
    else if (u === '/shared.gguf') status = await serveFile(req, res, { hold: 'shared' });
    else if (u === '/loop') {
      res.writeHead(302, { Location: '/loop' });
      res.end();
      status = 302;
    } else if (u === '/huge.gguf' || u === '/endless.gguf') {
      // 10 GB announced, or sent chunked with no length, until the client leaves
      res.writeHead(200, u === '/huge.gguf' ? { 'Content-Length': String(10 * 2 ** 30) } : {});
      const zeros = Buffer.alloc(1 << 16);
      let sent = 0;
      while (!res.destroyed && sent < 10 * 2 ** 30) {
        if (!res.write(zeros)) {
          await new Promise((r) => {
            const done = () => { res.off('drain', done); res.off('close', done); r(); };
            res.on('drain', done);
            res.on('close', done);
          });
        }
        sent += zeros.length;
      }
      res.end();
    } else if (u === '/junk.gguf') {
      res.writeHead(200, { 'Content-Length': 11 });
      res.end('not a model');
    } else {
      res.writeHead(404);
      res.end('no such file');
      status = 404;
    }
    seen.push([u, req.headers.range || '', status]);
  }

  const config = () => {
    const roles = {
      pulled: ['/m/good.gguf', sha], hf: ['/hf/resolve/main/good.gguf'], resume: ['/cut-once.gguf'],
      cut: ['/cut.gguf'], missing: ['/missing.gguf'], loop: ['/loop'], huge: ['/huge.gguf'],
      endless: ['/endless.gguf'], wrongsha: ['/m/good.gguf', '0'.repeat(64)], junk: ['/junk.gguf'],
      slow: ['/slow.gguf'], shared: ['/shared.gguf'], kept: ['/cut.gguf', sha],
    };
    let text = `[defaults]\nn_threads = 1\nidle_ttl = -1\nmemory_budget = 64M\n[story]\npath = ${MODEL}\ntemperature = 0\n`;
    for (const [role, [url, digest]] of Object.entries(roles)) {
      text += `[${role}]\npath = ${path.join(dl, `${role}.gguf`)}\nsource = ${source}${url}\n`;
      if (digest) text += `sha256 = ${digest}\n`;
    }
    return writeConfig('pull.ini', text);
  };
  const onDisk = () => fs.readdirSync(dl).sort();
  const hits = (u) => seen.filter((s) => s[0] === u);

  before(async () => {
    fs.mkdirSync(dl, { recursive: true });
    execFileSync(BIN, ['-q', 'mkmodel', '--params', '1M', '--seed', '7', '-o', synPath]);
    good = fs.readFileSync(synPath);
    sha = crypto.createHash('sha256').update(good).digest('hex');
    const http_srv = http.createServer((req, res) => { handle(req, res).catch(() => res.destroy()); });
    http_srv.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
    await new Promise((r) => http_srv.listen(0, '127.0.0.1', r));
    source = `http://127.0.0.1:${http_srv.address().port}`;
    stopSource = () => { for (const s of sockets) s.destroy(); http_srv.close(); };
    fs.copyFileSync(MODEL, path.join(dl, 'kept.gguf')); // a file already there, not the configured one
    srv = await startServer(config());
    assert.ok(srv.port > 0, `daemon did not start: ${srv.stderr()}`);
    olm = new Ollama({ host: srv.url });
  });
  after(async () => {
    stopSource();
    const { code } = await stopServer(srv);
    assert.equal(code, 0, srv.stderr());
  });

  test('a pull streams Ollama progress, checks the configured sha256, and the role then serves the file', async () => {
    const steps = [];
    for await (const s of await olm.pull({ model: 'pulled', stream: true })) steps.push(s);
    const status = steps.map((s) => s.status);
    assert.equal(status[0], 'pulling manifest');
    assert.deepEqual(status.slice(-3), ['verifying sha256 digest', 'writing manifest', 'success']);
    const prog = steps.filter((s) => s.status === `pulling ${sha.slice(0, 12)}`);
    assert.ok(prog.length >= 1, JSON.stringify(steps));
    assert.equal(prog.at(-1).completed, good.length);
    assert.equal(prog.at(-1).total, good.length);
    assert.equal(prog.at(-1).digest, `sha256:${sha}`);
    assert.ok(fs.readFileSync(path.join(dl, 'pulled.gguf')).equals(good));
    assert.ok(!onDisk().some((f) => f.endsWith('.partial')), onDisk().join(','));
    const g = await olm.generate({ model: 'pulled:latest', prompt: 'hello', raw: true, stream: false, options: { num_predict: 3 } });
    assert.equal(g.eval_count, 3);
    const tag = (await olm.list()).models.find((m) => m.name === 'pulled:latest' || m.name === 'pulled');
    assert.equal(tag.digest, sha);
    // again: the file there is the configured one, so the source is not asked
    const before = seen.length;
    assert.equal((await olm.pull({ model: 'pulled', stream: false })).status, 'success');
    assert.equal(seen.length, before);
  });

  test('a Hugging Face resolve URL: redirected, checked against its X-Linked-Etag; then If-Modified-Since', async () => {
    const steps = [];
    for await (const s of await olm.pull({ model: 'hf', stream: true })) steps.push(s);
    assert.equal(steps.at(-1).status, 'success');
    assert.ok(steps.some((s) => s.digest === `sha256:${sha}`), JSON.stringify(steps));
    assert.deepEqual(hits('/hf/resolve/main/good.gguf').map((h) => h[2]), [302]);
    assert.ok(fs.readFileSync(path.join(dl, 'hf.gguf')).equals(good));
    assert.equal(fs.statSync(path.join(dl, 'hf.gguf')).mtime.toUTCString(), LAST_MODIFIED);
    assert.equal((await olm.pull({ model: 'hf', stream: false })).status, 'success');
    assert.deepEqual(hits('/cdn/good.gguf').map((h) => h[2]), [200, 304]);
    assert.ok(fs.readFileSync(path.join(dl, 'hf.gguf')).equals(good));
  });

  test('a transfer cut mid-file is resumed with a Range request', async () => {
    assert.equal((await olm.pull({ model: 'resume', stream: false })).status, 'success');
    assert.deepEqual(hits('/cut-once.gguf').map((h) => h[1]), ['', 'bytes=100000-']);
    assert.ok(fs.readFileSync(path.join(dl, 'resume.gguf')).equals(good));
  });

  test('a pull whose client left keeps its part, and the next one resumes from it', async () => {
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/api/pull`, { method: 'POST', body: JSON.stringify({ model: 'slow' }), signal: ac.signal });
    const reader = res.body.getReader();
    let text = '';
    while (!/"completed":[1-9]/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    // the daemon stops the download once nobody follows it
    for (let i = 0; i < 300 && !when('slow').closed; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(when('slow').closed, 'the download went on without a client');
    const part = path.join(dl, 'slow.gguf.partial');
    for (let i = 0; i < 100 && !fs.existsSync(part); i++) await new Promise((r) => setTimeout(r, 20));
    const kept = fs.statSync(part).size;
    assert.ok(kept > 0 && kept < good.length, String(kept));
    assert.ok(!fs.existsSync(path.join(dl, 'slow.gguf')));
    when('slow').release();
    assert.equal((await olm.pull({ model: 'slow', stream: false })).status, 'success');
    assert.equal(hits('/slow.gguf').at(-1)[1], `bytes=${kept}-`);
    assert.ok(fs.readFileSync(path.join(dl, 'slow.gguf')).equals(good));
    assert.ok(!fs.existsSync(part));
  });

  test('two clients pulling one role share one download', async () => {
    const a = (async () => { const s = []; for await (const x of await olm.pull({ model: 'shared', stream: true })) s.push(x.status); return s; })();
    for (let i = 0; i < 300 && hits('/shared.gguf').length === 0 && !fs.existsSync(path.join(dl, 'shared.gguf.partial')); i++) await new Promise((r) => setTimeout(r, 20));
    const b = olm.pull({ model: 'shared:latest', stream: false });
    await new Promise((r) => setTimeout(r, 100));
    when('shared').release();
    assert.equal((await a).at(-1), 'success');
    assert.equal((await b).status, 'success');
    assert.equal(hits('/shared.gguf').length, 1);
    assert.ok(fs.readFileSync(path.join(dl, 'shared.gguf')).equals(good));
  });

  test('bad sources: each a clear error, no file and no partial file left, an older file kept', async () => {
    const cases = [
      ['missing', 502, /answered HTTP 404/],
      ['loop', 502, /redirected more than 10 times/],
      ['cut', 502, /ended after 100000 of \d+ bytes \(2 tries\)/],
      ['huge', 507, /larger than 64\.0 MiB, the memory budget/],
      ['endless', 507, /larger than 64\.0 MiB/],
      ['wrongsha', 502, new RegExp(`sha256 is ${sha}, not 0{64} \\(the sha256 its config section gives\\)`)],
      ['junk', 502, /not a model/],
      ['kept', 502, /ended after/],
    ];
    const keptBefore = fs.readFileSync(path.join(dl, 'kept.gguf'));
    for (const [role, code, re] of cases) {
      const t0 = Date.now();
      await assert.rejects(olm.pull({ model: role, stream: false }), (err) => {
        assert.equal(err.status_code, code, `${role}: ${err.message}`);
        assert.match(err.message, re, role);
        return true;
      });
      assert.ok(Date.now() - t0 < 30000, role);
      const left = onDisk().filter((f) => f.startsWith(`${role}.`));
      assert.deepEqual(left, role === 'kept' ? ['kept.gguf'] : [], `${role}: ${left}`);
    }
    assert.ok(fs.readFileSync(path.join(dl, 'kept.gguf')).equals(keptBefore));
    // streamed, the error is the stream's last line, which the client throws
    await assert.rejects((async () => { for await (const s of await olm.pull({ model: 'missing', stream: true })) void s; })(), /answered HTTP 404/);
    // no source, no model
    await assert.rejects(olm.pull({ model: 'story', stream: false }), (err) => err.status_code === 400 && /no source to pull from.*source = URL/.test(err.message));
    await assert.rejects(olm.pull({ model: 'nobody', stream: false }), (err) => err.status_code === 404);
    await assert.rejects(olm.pull({ model: 'story:7b', stream: false }), (err) => err.status_code === 404);
    // nothing else disturbed
    const g = await olm.generate({ model: 'story', prompt: 'Once upon a time', raw: true, stream: false, options: { num_predict: 11 } });
    assert.equal(g.response, GREEDY);
  });

  test('a source in the config is checked when it is read', () => {
    const bad = writeConfig('bad-source.ini', `[r]\npath = ${MODEL}\nsource = ftp://example/x.gguf\n`);
    assert.throws(() => execFileSync(BIN, ['-c', bad, 'ps'], { stdio: 'pipe' }), (e) => /source = 'ftp:\/\/example\/x\.gguf': expected an http/.test(e.stderr));
    const bad2 = writeConfig('bad-sha.ini', `[r]\npath = ${MODEL}\nsha256 = abc\n`);
    assert.throws(() => execFileSync(BIN, ['-c', bad2, 'ps'], { stdio: 'pipe' }), (e) => /sha256 = 'abc': expected the file's sha256/.test(e.stderr));
  });
}
