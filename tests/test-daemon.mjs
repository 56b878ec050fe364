// test-daemon.mjs — `orchestra serve` driven by the real client libraries
// people use (the npm packages openai and ollama) and by plain fetch, on
// loopback, with the real test model. Run by ctest: node --test.
// Environment: see daemon-util.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  BIN, MODEL, MODULES, GREEDY, OpenAI, Ollama, missing, skipAll, tmp, writeConfig, startServer, stopServer, metric,
} from './daemon-util.mjs';

if (missing || !OpenAI || !Ollama) {
  skipAll('test-daemon', missing || `npm packages openai and ollama not found in ${MODULES} (scripts/setup.sh installs them)`);
} else {
  const config = writeConfig('roles.ini', `[defaults]
n_threads = 1
idle_ttl = -1
[story]
path = ${MODEL}
temperature = 0
max_tokens = 11
[coder]
fallback = story
temperature = 0
[dream]
fallback = story
temperature = 0.9
alias = gpt-4o-mini
alias = llama3.2:1b
[embedding]
fallback = story
embedding = true
`);
  let srv, oai, olm;
  before(async () => {
    srv = await startServer(config);
    assert.ok(srv.port > 0, `daemon did not start: ${srv.stderr()}`);
    oai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    olm = new Ollama({ host: srv.url });
  });
  after(async () => {
    const { code } = await stopServer(srv);
    assert.equal(code, 0, srv.stderr());
  });

  test('health and the model list (OpenAI)', async () => {
    const h = await fetch(`${srv.url}/health`);
    assert.equal(h.status, 200);
    const models = await oai.models.list();
    const ids = models.data.map((m) => m.id);
    assert.deepEqual(ids, ['story', 'coder', 'dream', 'embedding', 'gpt-4o-mini', 'llama3.2:1b']);
    const one = await oai.models.retrieve('coder');
    assert.equal(one.id, 'coder');
  });

  test('completions: greedy text equals the library\'s own', async () => {
    const r = await oai.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 11, temperature: 0 });
    assert.equal(r.choices[0].text, GREEDY);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 11);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 11);
    const cli = execFileSync(BIN, ['-q', 'generate', '-m', MODEL, '-t', '1', '-p', 'Once upon a time', '-n', '11', '--temp', '0']).toString().replace(/\n$/, '');
    assert.equal(r.choices[0].text, cli);
  });

  test('the next turn reuses the cells of the last one (usage.prompt_tokens_details.cached_tokens)', async () => {
    const first = await oai.completions.create({ model: 'story', prompt: 'Lily and her mom went', max_tokens: 12, temperature: 0 });
    const next = 'Lily and her mom went' + first.choices[0].text + ' Then';
    const again = await oai.completions.create({ model: 'story', prompt: next, max_tokens: 5, temperature: 0 });
    const cached = again.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached >= first.usage.prompt_tokens - 1 && cached < again.usage.prompt_tokens, JSON.stringify(again.usage));
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    const m = metrics.match(/^orchestra_prompt_tokens_cached_total\{role="story"\} (\d+)$/m);
    assert.ok(m && Number(m[1]) >= cached, 'the cached tokens count in /metrics');
  });

  test('completions stream: the pieces make the same text, usage at the end', async () => {
    const stream = await oai.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 11, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '', usage = null, finish = null;
    for await (const c of stream) {
      if (c.choices.length) { text += c.choices[0].text; finish = c.choices[0].finish_reason || finish; }
      if (c.usage) usage = c.usage;
    }
    assert.equal(text, GREEDY);
    assert.equal(finish, 'length');
    assert.equal(usage.completion_tokens, 11);
  });

  test('chat completions, plain and streamed, and a stop string', async () => {
    const msgs = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Once upon a time' }];
    const r = await oai.chat.completions.create({ model: 'coder', messages: msgs, max_tokens: 16 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.ok(r.choices[0].message.content.length > 0);
    const s = await oai.chat.completions.create({ model: 'coder', messages: msgs, max_tokens: 16, stream: true });
    let text = '', role = null;
    for await (const c of s) {
      if (c.choices[0]?.delta?.role) role = c.choices[0].delta.role;
      text += c.choices[0]?.delta?.content || '';
    }
    assert.equal(role, 'assistant');
    assert.equal(text, r.choices[0].message.content);
    const st = await oai.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop: ['girl'] });
    assert.equal(st.choices[0].text, ', there was a little ');
    assert.equal(st.choices[0].finish_reason, 'stop');
  });

  test('embeddings (base64, the client\'s default, and float) equal `orchestra embed`', async () => {
    const r = await oai.embeddings.create({ model: 'embedding', input: ['a cat', 'a dog'] });
    assert.equal(r.data.length, 2);
    assert.ok(r.usage.prompt_tokens >= 4 && r.usage.total_tokens === r.usage.prompt_tokens, JSON.stringify(r.usage));
    const f = await oai.embeddings.create({ model: 'embedding', input: 'a cat', encoding_format: 'float' });
    const cli = JSON.parse(execFileSync(BIN, ['embed', '-m', MODEL, '--threads', '1', '-t', 'a cat']).toString().split('\n')[0]);
    const cos = (a, b) => { let d = 0, x = 0, y = 0; for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; x += a[i] * a[i]; y += b[i] * b[i]; } return d / Math.sqrt(x * y); };
    assert.equal(f.data[0].embedding.length, cli.length);
    assert.ok(cos(f.data[0].embedding, cli) >= 0.9999, 'float embedding differs from the CLI');
    assert.ok(cos(r.data[0].embedding, cli) >= 0.9999, 'base64 embedding differs from the CLI');
    assert.ok(cos(r.data[0].embedding, r.data[1].embedding) < 0.9999, 'two texts, one vector');
  });

  test('OpenAI errors: unknown model 404, bad JSON and bad values 400, too large 413', async () => {
    await assert.rejects(oai.completions.create({ model: 'wizard', prompt: 'x' }), (e) => e.status === 404 && /wizard/.test(e.message));
    await assert.rejects(oai.completions.create({ model: 'story', prompt: 'x', temperature: 9 }), (e) => e.status === 400);
    let r = await fetch(`${srv.url}/v1/completions`, { method: 'POST', body: '{"model": "story", ' });
    assert.equal(r.status, 400);
    const body = await r.json();
    assert.equal(body.error.type, 'invalid_request_error');
    r = await fetch(`${srv.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: 'bad \u0000 nul' }) });
    assert.equal(r.status, 400);
    r = await fetch(`${srv.url}/v1/completions`, { method: 'POST', body: 'x'.repeat(9 << 20) });
    assert.equal(r.status, 413);
    r = await fetch(`${srv.url}/v1/nothing`);
    assert.equal(r.status, 404);
  });

  test('Ollama: version, tags, show, generate (streamed and not), chat, embed, embeddings', async () => {
    const v = await olm.version();
    assert.ok(v.version);
    const tags = await olm.list();
    assert.deepEqual(tags.models.map((m) => m.name), ['story', 'coder', 'dream', 'embedding']);
    assert.equal(tags.models[0].details.family, 'llama');
    const show = await olm.show({ model: 'story' });
    assert.equal(show.model_info['general.architecture'], 'llama');
    const g = await olm.generate({ model: 'story', prompt: 'Once upon a time', stream: false, options: { num_predict: 11, temperature: 0 } });
    assert.equal(g.response, GREEDY);
    assert.equal(g.done, true);
    assert.equal(g.eval_count, 11);
    assert.ok(g.total_duration > 0 && g.prompt_eval_count > 0);
    let text = '', last = null;
    for await (const part of await olm.generate({ model: 'story', prompt: 'Once upon a time', stream: true, options: { num_predict: 11, temperature: 0 } })) {
      text += part.response;
      last = part;
    }
    assert.equal(text, GREEDY);
    assert.equal(last.done, true);
    const c = await olm.chat({ model: 'coder', messages: [{ role: 'user', content: 'Hello' }], stream: false, options: { num_predict: 8 } });
    assert.equal(c.message.role, 'assistant');
    assert.equal(c.eval_count, 8);
    const e = await olm.embed({ model: 'embedding', input: ['a cat', 'a dog'] });
    assert.equal(e.embeddings.length, 2);
    assert.ok(e.prompt_eval_count >= 4);
    const old = await olm.embeddings({ model: 'embedding', prompt: 'a cat' });
    assert.equal(old.embedding.length, e.embeddings[0].length);
    // the replaced system's plain requests: /api/generate with options, stream false
    const raw = await fetch(`${srv.url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: 'Once upon a time', stream: false, options: { temperature: 0, num_predict: 11 } }) });
    assert.equal((await raw.json()).response, GREEDY);
    await assert.rejects(olm.generate({ model: 'wizard', prompt: 'x', stream: false }), (err) => err.status_code === 404);
    // Ollama's name:tag, :latest implied; /api/ps gives the context and (CPU) no VRAM
    const tagged = await olm.generate({ model: 'story:latest', prompt: 'Once upon a time', stream: false, options: { num_predict: 11, temperature: 0 } });
    assert.equal(tagged.response, GREEDY);
    assert.equal((await olm.show({ model: 'coder:latest' })).model_info['general.architecture'], 'llama');
    await assert.rejects(olm.generate({ model: 'story:7b', prompt: 'x', stream: false }), (err) => err.status_code === 404);
    const ps = await olm.ps();
    const story = ps.models.find((m) => m.name === 'story');
    assert.ok(story, JSON.stringify(ps));
    assert.equal(story.size_vram, 0);
    assert.equal(story.context_length, 2048); // stories260K's trained context
  });

  test('Ollama keep_alive: an empty prompt loads, keep_alive 0 unloads', async () => {
    await olm.generate({ model: 'story', prompt: '', keep_alive: 0 });
    let ps = await olm.ps();
    assert.equal(ps.models.length, 0);
    const r = await olm.generate({ model: 'story', prompt: '' });
    assert.equal(r.done_reason, 'load');
    ps = await olm.ps();
    assert.ok(ps.models.some((m) => m.name === 'story'));
    await olm.generate({ model: 'story', prompt: 'Once', stream: false, keep_alive: 0, options: { num_predict: 2 } });
    ps = await olm.ps();
    assert.equal(ps.models.length, 0);
    // /api/embed with no input loads the model and answers no vectors, as Ollama does
    const none = await olm.embed({ model: 'embedding', input: [] });
    assert.deepEqual(none.embeddings, []);
    ps = await olm.ps();
    assert.ok(ps.models.some((m) => m.name === 'embedding'), JSON.stringify(ps));
    await olm.embed({ model: 'embedding', input: '', keep_alive: 0 });
    ps = await olm.ps();
    assert.equal(ps.models.length, 0);
    // /api/show says when the file was changed
    const shown = await olm.show({ model: 'story' });
    assert.match(String(shown.modified_at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // a duration: /api/ps says when the model will go
    await olm.generate({ model: 'story', prompt: 'Once', stream: false, keep_alive: '10m', options: { num_predict: 2 } });
    ps = await olm.ps();
    const left = (new Date(ps.models[0].expires_at) - Date.now()) / 1000;
    assert.ok(left > 540 && left <= 601, `expires in ${left} s, expected about 600`);
    await olm.generate({ model: 'story', prompt: '', keep_alive: 0 });
  });

  test('`orchestra unload` asks the daemon to unload a role', async () => {
    await olm.generate({ model: 'story', prompt: '' }); // load it
    assert.ok((await olm.ps()).models.some((m) => m.name === 'story'));
    const out = execFileSync(BIN, ['unload', 'story', '--url', srv.url]).toString();
    assert.equal(out, 'story: unloaded\n');
    assert.equal((await olm.ps()).models.length, 0);
    let code = 0;
    try { execFileSync(BIN, ['unload', 'nosuchrole', '--url', srv.url], { stdio: 'pipe' }); } catch (e) { code = e.status; }
    assert.equal(code, 3, 'an unknown role exits 3');
  });

  test('a client that leaves mid-stream cancels its generation and returns the lease', async () => {
    const ctl = new AbortController();
    const s = await oai.completions.create({ model: 'dream', prompt: 'Once upon a time', max_tokens: 1900, stream: true }, { signal: ctl.signal });
    let pieces = 0;
    try {
      for await (const c of s) {
        if (++pieces === 3) ctl.abort();
      }
    } catch (e) { /* aborted */ }
    const t0 = performance.now();
    let leases = NaN;
    while (performance.now() - t0 < 5000) {
      leases = await metric(srv.url, 'orchestra_leases', 'role="dream"');
      if (leases === 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    console.log(`lease back ${(performance.now() - t0).toFixed(1)} ms after the client left`);
    assert.equal(leases, 0);
    const out = await metric(srv.url, 'orchestra_tokens_total', 'role="dream",direction="out"');
    assert.ok(out < 1900, `the generation ran on (${out} tokens)`);
  });

  test('many clients on several roles at once', async () => {
    const jobs = [];
    for (let i = 0; i < 12; i++) {
      const role = ['story', 'coder'][i % 2];
      jobs.push(i % 3 === 0
        ? olm.generate({ model: role, prompt: 'Once upon a time', stream: false, options: { num_predict: 11, temperature: 0 } }).then((r) => r.response)
        : oai.completions.create({ model: role, prompt: 'Once upon a time', max_tokens: 11, temperature: 0 }).then((r) => r.choices[0].text));
    }
    jobs.push(oai.embeddings.create({ model: 'embedding', input: 'a cat' }).then(() => GREEDY));
    const texts = await Promise.all(jobs);
    for (const t of texts) assert.equal(t, GREEDY);
  });

  test('the access log names method, path, role, status, tokens and time', async () => {
    await oai.completions.create({ model: 'story', prompt: 'Once', max_tokens: 2 });
    await new Promise((r) => setTimeout(r, 50));
    assert.match(srv.stderr(), /role=story event=http method=POST path=\/v1\/completions status=200 tokens_in=\d+ tokens_out=2 ms=/);
  });

  test('an API key: 401 without it, 200 with it, /health open', async () => {
    const keyed = await startServer(config, [], { ORCH_API_KEY: 's3cret' });
    try {
      assert.equal((await fetch(`${keyed.url}/health`)).status, 200);
      assert.equal((await fetch(`${keyed.url}/v1/models`)).status, 401);
      assert.equal((await fetch(`${keyed.url}/api/tags`, { headers: { Authorization: 'Bearer wrong' } })).status, 401);
      const bad = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: 'nope', maxRetries: 0 });
      await assert.rejects(bad.models.list(), (e) => e.status === 401);
      const good = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: 's3cret', maxRetries: 0 });
      assert.equal((await good.models.list()).data.length, 6);
      const olmKeyed = new Ollama({ host: keyed.url, headers: { Authorization: 'Bearer s3cret' } });
      assert.equal((await olmKeyed.list()).models.length, 4);
    } finally {
      assert.equal((await stopServer(keyed)).code, 0);
    }
  });

  test('SIGTERM with a stream in flight: the stream completes, then exit 0', async () => {
    const s2 = await startServer(config);
    const client = new OpenAI({ baseURL: `${s2.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.completions.create({ model: 'dream', prompt: 'Once upon a time', max_tokens: 300, stream: true });
    let n = 0, finish = null;
    for await (const c of stream) {
      if (++n === 2) s2.child.kill('SIGTERM');
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
    }
    assert.ok(finish, 'the stream did not finish');
    const { code } = await s2.exited;
    assert.equal(code, 0, s2.stderr());
    // and nothing listens any more
    await assert.rejects(fetch(`${s2.url}/health`));
  });

  test('model names a client already sends: aliases of a role', async () => {
    const r = await oai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 });
    assert.equal(r.model, 'dream');
    const g = await olm.generate({ model: 'llama3.2:1b', prompt: 'Once', stream: false, options: { num_predict: 2 } });
    assert.equal(g.eval_count, 2);
  });

  test('past --queue-max on a role: 503 with Retry-After; other roles still serve', async () => {
    const q = await startServer(config, ['--queue-max', '1']);
    const client = new OpenAI({ baseURL: `${q.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const ctl = new AbortController();
    const stream = await client.completions.create({ model: 'dream', prompt: 'Once upon a time', max_tokens: 1900, stream: true }, { signal: ctl.signal });
    const it = stream[Symbol.asyncIterator]();
    await it.next(); /* the first request holds dream's only place */
    const r = await fetch(`${q.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'dream', prompt: 'x', max_tokens: 1 }) });
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.equal((await r.json()).error.type, 'server_error');
    const other = await client.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 11, temperature: 0 });
    assert.equal(other.choices[0].text, GREEDY);
    ctl.abort();
    try { await it.next(); } catch (e) { /* aborted */ }
    assert.equal((await stopServer(q)).code, 0);
  });

  test('a model file that kills llama.cpp: its role answers a clear error, the others serve', async () => {
    /* the test model with a negative RMS epsilon: ggml asserts at the first decode */
    const buf = fs.readFileSync(MODEL);
    const key = Buffer.from('llama.attention.layer_norm_rms_epsilon');
    const at = buf.indexOf(key);
    assert.ok(at > 0, 'the test model has an RMS epsilon');
    assert.equal(buf.readUInt32LE(at + key.length), 6); /* f32 */
    buf.writeFloatLE(-1e-5, at + key.length + 4);
    const badPath = path.join(tmp, 'bad-eps.gguf');
    fs.writeFileSync(badPath, buf);
    const cfg = writeConfig('hostile.ini', `[defaults]\nn_threads = 1\n[story]\npath = ${MODEL}\ntemperature = 0\n[bad]\npath = ${badPath}\n`);
    /* with the pre-check, and without it (test builds): then vetting in a
     * child finds the abort, and the daemon goes on */
    for (const env of [{}, { ORCH_TEST_SKIP_PRECHECK: '1' }]) {
      const h = await startServer(cfg, [], env);
      try {
        const client = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: 'x', maxRetries: 0 });
        const r = await fetch(`${h.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'bad', prompt: 'Once', max_tokens: 2 }) });
        assert.ok(r.status >= 400 && r.status < 600, `status ${r.status}`);
        const msg = (await r.json()).error.message;
        assert.match(msg, /bad-eps\.gguf/);
        assert.match(msg, env.ORCH_TEST_SKIP_PRECHECK ? /failed vetting/ : /epsilon must be positive/);
        const ok = await client.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 11, temperature: 0 });
        assert.equal(ok.choices[0].text, GREEDY);
      } finally {
        assert.equal((await stopServer(h)).code, 0, h.stderr());
      }
    }
  });

  /* The worker process of daemon pid that has `file` mapped (its model). */
  function workerOf(pid, file) {
    const real = fs.realpathSync(file);
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid !== pid || !fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('__worker')) continue;
        if (fs.readFileSync(`/proc/${d}/maps`, 'utf8').includes(real)) return Number(d);
      } catch (e) { /* gone meanwhile */ }
    }
    return 0;
  }

  test('a worker killed mid-stream (SIGKILL): its stream ends with an error naming role and signal, another file streams on, the next request starts a new worker', async () => {
    const copy = path.join(tmp, 'story-copy.gguf');
    fs.copyFileSync(MODEL, copy);
    const cfg = writeConfig('workers.ini', `[defaults]\nn_threads = 1\ntemperature = 0\nn_ctx = 2048\n[story]\npath = ${MODEL}\n[other]\npath = ${copy}\n`);
    const h = await startServer(cfg);
    try {
      const client = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const long = { prompt: 'Once upon a time', max_tokens: 2000, stream: true };
      const victim = await client.completions.create({ model: 'story', ...long });
      const bystander = await client.completions.create({ model: 'other', ...long });
      const it = victim[Symbol.asyncIterator]();
      await it.next(); /* the stream runs */
      const pid = workerOf(h.child.pid, MODEL);
      assert.ok(pid > 0, 'story has a worker process of its own');
      assert.notEqual(workerOf(h.child.pid, copy), pid, 'another file, another worker');
      process.kill(pid, 'SIGKILL');
      let error = null;
      try { for (let c = await it.next(); !c.done; c = await it.next()); } catch (e) { error = e; }
      assert.ok(error, 'the killed stream ends with an error');
      assert.match(String(error.message), /role 'story'.*worker.*died generating: killed by signal 9/);
      let text = '';
      for await (const c of bystander) text += c.choices[0].text;
      assert.ok(text.length > 100, 'the other role streamed to its end');
      const again = await client.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 11 });
      assert.equal(again.choices[0].text, GREEDY);
      assert.ok(workerOf(h.child.pid, MODEL) > 0 && workerOf(h.child.pid, MODEL) !== pid, 'a new worker');
      assert.equal(await metric(h.url, 'orchestra_worker_deaths_total', 'role="story"'), 1);
      assert.equal(await metric(h.url, 'orchestra_worker_deaths_total', 'role="other"'), 0);
      const ps = await (await fetch(`${h.url}/api/ps`)).json();
      const entry = ps.models.find((m) => m.name === 'story');
      assert.equal(entry.worker_deaths, 1);
      assert.match(entry.worker_fault, /signal 9/);
    } finally {
      assert.equal((await stopServer(h)).code, 0, h.stderr());
    }
  });

  test('a worker that hangs in a decode past $ORCH_WORKER_DECODE_TIMEOUT: killed, its request ends with "hung", the next one is served', async () => {
    const cfg = writeConfig('hang.ini', `[defaults]\nn_threads = 1\ntemperature = 0\n[story]\npath = ${MODEL}\n`);
    /* test builds: the worker wedges in a decode after 3 tokens, once */
    const flag = path.join(tmp, 'hang-once');
    fs.writeFileSync(flag, '');
    const h = await startServer(cfg, [], { ORCH_TEST_WORKER_HANG: flag, ORCH_WORKER_DECODE_TIMEOUT: '2' });
    try {
      const r = await fetch(`${h.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: 'Once upon a time', max_tokens: 11 }) });
      assert.equal(r.status, 500);
      assert.match((await r.json()).error.message, /worker for .* died generating: hung: a decode ran past 2 s/);
      const client = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const ok = await client.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 11 });
      assert.equal(ok.choices[0].text, GREEDY);
    } finally {
      assert.equal((await stopServer(h)).code, 0, h.stderr());
    }
  });

  test('the hostile corpus through a running daemon: each bad role answers a clear error, the good one serves; without the pre-check, the files kill only their workers, and a file that kills three is refused', { skip: !process.env.ORCH_TEST_HOSTILE && 'ORCH_TEST_HOSTILE not set' }, async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'corpus-'));
    const files = execFileSync(process.env.ORCH_TEST_HOSTILE, ['--write-corpus', dir]).toString().trim().split('\n').map((l) => l.split('\t'));
    assert.ok(files.length >= 20, `the corpus has ${files.length} files`);
    const roles = files.map(([f], i) => `[bad${i}]\npath = ${path.join(dir, f)}\n`).join('');
    const cfg = writeConfig('corpus.ini', `[defaults]\nn_threads = 1\ntemperature = 0\nvet = false\n[story]\npath = ${MODEL}\n${roles}`);
    for (const env of [{}, { ORCH_TEST_SKIP_PRECHECK: '1' }]) {
      const raw = !!env.ORCH_TEST_SKIP_PRECHECK;
      const h = await startServer(cfg, [], env);
      try {
        const client = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: 'x', maxRetries: 0 });
        let died = 0, refusedFirst = -1;
        for (const [i, [file, kills, name]] of files.entries()) {
          /* raw: only the files proven to kill llama.cpp (the others may
           * take gigabytes or minutes when nothing refuses them) */
          if (raw && kills !== 'kills') continue;
          const r = await fetch(`${h.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: `bad${i}`, prompt: 'Once # upon', max_tokens: 4 }) });
          const body = await r.json();
          if (kills === 'valid') {
            assert.equal(r.status, 200, `${name} (valid): ${JSON.stringify(body)}`);
          } else if (!raw) {
            assert.ok(r.status >= 400, `${name}: status ${r.status}`);
            assert.ok(body.error.message.includes(file), `${name}: ${body.error.message}`);
          } else if (r.status !== 200) {
            assert.ok(body.error.message.includes(file), `${name}: ${body.error.message}`);
            if (/worker for .* died/.test(body.error.message)) {
              died++;
              if (refusedFirst < 0) refusedFirst = i;
            }
          }
          const ok = await client.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 11 });
          assert.equal(ok.choices[0].text, GREEDY, `story after ${name}`);
        }
        if (raw) {
          console.log(`# corpus through the daemon without the pre-check: ${died} workers killed`);
          assert.ok(died >= 10, `${died} of the killing files killed their worker`);
          /* the same file twice more: the third death refuses it */
          const ask = () => fetch(`${h.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: `bad${refusedFirst}`, prompt: 'Once # upon', max_tokens: 4 }) }).then((r) => r.json());
          await ask();
          await ask();
          const refused = await ask();
          assert.match(refused.error.message, /is refused: its worker died 3 times/);
          assert.equal(await metric(h.url, 'orchestra_worker_deaths_total', `role="bad${refusedFirst}"`), 3);
          const text = await (await fetch(`${h.url}/metrics`)).text();
          assert.match(text, new RegExp(`orchestra_worker_fault\\{role="bad${refusedFirst}",refused="1",cause=`));
        }
      } finally {
        assert.equal((await stopServer(h)).code, 0, h.stderr());
      }
    }
  });

  test('a model that cannot fit the memory budget: 507 with the library\'s message', async () => {
    const tiny = writeConfig('tiny.ini', `[defaults]\nmemory_budget = 1K\n[story]\npath = ${MODEL}\n`);
    const t = await startServer(tiny);
    try {
      const r = await fetch(`${t.url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'story', prompt: 'x', stream: false }) });
      assert.equal(r.status, 507);
      assert.match((await r.json()).error, /more than the whole memory budget/);
    } finally {
      assert.equal((await stopServer(t)).code, 0);
    }
  });

  test('SIGHUP: a changed config applies without reloading unchanged models; a broken one is refused', async () => {
    const file = writeConfig('reload.ini', `[defaults]\nn_threads = 1\nidle_ttl = -1\n[story]\npath = ${MODEL}\ntemperature = 0\n[coder]\nfallback = story\n`);
    const h = await startServer(file);
    try {
      const c = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: 'x', maxRetries: 0 });
      assert.equal((await c.completions.create({ model: 'story', prompt: 'Once upon a time', max_tokens: 11 })).choices[0].text, GREEDY);
      const loads = () => (h.stderr().match(/role=story event=load_end/g) || []).length;
      assert.equal(loads(), 1);
      const waitFor = async (re) => { for (let i = 0; i < 250 && !re.test(h.stderr()); i++) await new Promise((r) => setTimeout(r, 20)); return re.test(h.stderr()); };
      fs.writeFileSync(file, `[defaults]\nn_threads = 1\nidle_ttl = -1\n[story]\npath = ${MODEL}\ntemperature = 0\n[poet]\nfallback = story\nmax_tokens = 3\n`);
      h.child.kill('SIGHUP');
      assert.ok(await waitFor(/event=reload .*result=applied/), h.stderr());
      const ids = (await c.models.list()).data.map((m) => m.id);
      assert.deepEqual(ids, ['story', 'poet']);
      await assert.rejects(c.completions.create({ model: 'coder', prompt: 'x' }), (e) => e.status === 404);
      const r = await c.completions.create({ model: 'poet', prompt: 'Once upon a time' });
      assert.equal(r.usage.completion_tokens, 3, 'the new max_tokens default applies');
      assert.equal(loads(), 1, 'the unchanged model was loaded again');
      fs.writeFileSync(file, '[story]\npath = x\ntemperatur = 1\n');
      h.child.kill('SIGHUP');
      assert.ok(await waitFor(/event=reload .*result="kept the old config"/), h.stderr());
      assert.match(h.stderr(), /reload\.ini:3/);
      assert.equal((await c.completions.create({ model: 'poet', prompt: 'Once upon a time' })).usage.completion_tokens, 3);
    } finally {
      assert.equal((await stopServer(h)).code, 0);
    }
  });

  test('a bad config on start exits 3 naming file and line', async () => {
    const bad = writeConfig('bad.ini', '[a]\npath = x\ntemperatur = 1\n');
    const s3 = await startServer(bad);
    const { code } = await s3.exited;
    assert.equal(code, 3);
    assert.match(s3.stderr(), /bad\.ini:3/);
  });
}
