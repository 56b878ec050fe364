// test-dropin.mjs — the daemon as a drop-in for Ollama and OpenAI, field by
// field as their clients see them: sha256 digests, truncation, shortened
// embeddings, the Responses API, CORS for browser front ends, and streams a
// client abandoned counted as 499. Real clients (openai, ollama), loopback,
// the real test model. Run by ctest: node --test. Environment: daemon-util.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import {
  BIN, MODEL, MODULES, GREEDY, OpenAI, Ollama, missing, skipAll, tmp, writeConfig, startServer, stopServer, metric,
} from './daemon-util.mjs';

if (missing || !OpenAI || !Ollama) {
  skipAll('test-dropin', missing || `npm packages openai and ollama not found in ${MODULES} (scripts/setup.sh installs them)`);
} else {
  const KEY = 'drop-in-key';
  const NGL = Number(process.env.ORCH_TEST_NGL || 0); // scripts/gpu-check.sh: -1
  const config = writeConfig('dropin.ini', `[defaults]
n_threads = 1
n_gpu_layers = ${NGL}
idle_ttl = -1
[story]
path = ${MODEL}
temperature = 0
max_tokens = 11
[embedding]
fallback = story
embedding = true
[fim]
path = ${path.join(tmp, 'models', 'fim.gguf')}
temperature = 0
`);
  let srv, plain, oai, olm;
  const auth = { Authorization: `Bearer ${KEY}` };
  const models = path.join(tmp, 'models');
  before(async () => {
    fs.mkdirSync(models, { recursive: true });
    execFileSync(BIN, ['-q', 'mkmodel', '--params', '1M', '--seed', '5', '-o', path.join(models, 'syn.gguf')]);
    fs.symlinkSync(MODEL, path.join(models, 'outside.gguf')); // points out of the folder
    execFileSync(BIN, ['-q', 'mkmodel', '--params', '1M', '--seed', '3', '--fim', '-o', path.join(models, 'fim.gguf')]);
    srv = await startServer(config, ['--api-key', KEY, '--models-dir', models, '--cors-origin', 'https://app.example, https://other.example']);
    assert.ok(srv.port > 0, `daemon did not start: ${srv.stderr()}`);
    plain = await startServer(config); // no --cors-origin, no key
    assert.ok(plain.port > 0, `daemon did not start: ${plain.stderr()}`);
    oai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
    olm = new Ollama({ host: srv.url, headers: auth });
  });
  after(async () => {
    for (const s of [srv, plain]) {
      const { code } = await stopServer(s);
      assert.equal(code, 0, s.stderr());
    }
  });

  test('CORS: a preflight is answered on every route without the key; the call itself needs it', async () => {
    for (const [path, method] of [['/v1/chat/completions', 'POST'], ['/api/tags', 'GET'], ['/v1/models/story', 'GET']]) {
      const pre = await fetch(`${srv.url}${path}`, {
        method: 'OPTIONS',
        headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'authorization, content-type' },
      });
      assert.equal(pre.status, 204, path);
      assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example');
      assert.match(pre.headers.get('access-control-allow-methods'), new RegExp(method));
      assert.match(pre.headers.get('access-control-allow-headers'), /authorization/i);
      assert.equal(pre.headers.get('vary'), 'Origin');
    }
    // the request a browser sends next: the key still decides
    const body = JSON.stringify({ model: 'story', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    const hdr = { Origin: 'https://app.example', 'Content-Type': 'application/json' };
    const no = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: hdr, body });
    assert.equal(no.status, 401);
    assert.equal(no.headers.get('access-control-allow-origin'), 'https://app.example'); // the page can read why
    const yes = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { ...hdr, ...auth }, body });
    assert.equal(yes.status, 200);
    assert.equal(yes.headers.get('access-control-allow-origin'), 'https://app.example');
    // a streamed reply carries it too
    const st = await fetch(`${srv.url}/api/generate`, { method: 'POST', headers: { ...hdr, ...auth }, body: JSON.stringify({ model: 'story', prompt: 'Once', options: { num_predict: 3 } }) });
    assert.equal(st.headers.get('access-control-allow-origin'), 'https://app.example');
    await st.text();
    // an origin not listed gets no permission; an unknown path is no route
    const other = await fetch(`${srv.url}/api/tags`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'GET' } });
    assert.equal(other.status, 204);
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    assert.equal((await fetch(`${srv.url}/api/tags`, { headers: { Origin: 'https://evil.example', ...auth } })).headers.get('access-control-allow-origin'), null);
    assert.equal((await fetch(`${srv.url}/nowhere`, { method: 'OPTIONS', headers: { Origin: 'https://app.example', ...auth } })).status, 404);
    // without --cors-origin no Access-Control header is ever sent; OPTIONS says Allow
    const bare = await fetch(`${plain.url}/api/chat`, { method: 'OPTIONS', headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(bare.status, 204);
    assert.equal(bare.headers.get('allow'), 'POST, OPTIONS');
    assert.equal(bare.headers.get('access-control-allow-origin'), null);
    const got = await fetch(`${plain.url}/api/tags`, { headers: { Origin: 'https://app.example' } });
    assert.equal(got.headers.get('access-control-allow-origin'), null);
  });

  test('a stream the client abandons is logged and counted as 499', async () => {
    const before499 = await metric(plain.url, 'orchestra_requests_total', 'endpoint="/api/generate",status="499"');
    const ctl = new AbortController();
    const res = await fetch(`${plain.url}/api/generate`, { method: 'POST', signal: ctl.signal, body: JSON.stringify({ model: 'story', prompt: 'Once upon a time', options: { num_predict: 1900, temperature: 0.8 } }) });
    const reader = res.body.getReader();
    await reader.read();
    ctl.abort();
    let n = NaN;
    for (let i = 0; i < 250; i++) {
      n = await metric(plain.url, 'orchestra_requests_total', 'endpoint="/api/generate",status="499"');
      if (n === (Number.isNaN(before499) ? 0 : before499) + 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(n, (Number.isNaN(before499) ? 0 : before499) + 1);
    assert.equal(await metric(plain.url, 'orchestra_requests_total', 'endpoint="/api/generate",status="200"'), NaN);
    assert.match(plain.stderr(), /path=\/api\/generate status=499/);
  });

  test('Ollama: digests are the sha256 of the file, in /api/tags and /api/ps', async () => {
    const want = crypto.createHash('sha256').update(fs.readFileSync(MODEL)).digest('hex');
    const tags = await olm.list();
    const digests = Object.fromEntries(tags.models.map((m) => [m.name, m.digest]));
    assert.equal(digests.story, want);
    assert.equal(digests.embedding, want);
    await olm.generate({ model: 'story', prompt: 'Once', stream: false, options: { num_predict: 1 } });
    const ps = await olm.ps();
    const story = ps.models.find((m) => m.name === 'story');
    assert.equal(story.digest, want);
    // on a GPU with every layer offloaded, all of it; else nothing
    const gpu = NGL !== 0 && /\((i?gpu),/.test(execFileSync(BIN, ['--version'], { encoding: 'utf8' }));
    assert.equal(story.size_vram, gpu ? story.size : 0);
  });

  test('Ollama generate: context comes back, and sent again continues the conversation', async () => {
    const opts = { num_predict: 6, temperature: 0 };
    const a = await olm.generate({ model: 'story', prompt: 'Once upon a time', raw: true, stream: false, options: opts });
    assert.equal(a.response, ', there was a little g');
    assert.equal(a.context.length, a.prompt_eval_count + a.eval_count); // prompt and reply
    assert.equal(a.context[0], 1); // the BOS
    const b = await olm.generate({ model: 'story', prompt: ' Lily', raw: true, context: a.context, stream: false, options: opts });
    assert.deepEqual(b.context.slice(0, a.context.length), a.context);
    assert.equal(b.context.length, b.prompt_eval_count + b.eval_count);
    assert.ok(b.prompt_eval_count > a.context.length, 'the context is part of the prompt');
    assert.ok(!b.context.slice(a.context.length).includes(1), 'no second BOS');
    // streamed: the last line carries it; through the template (not raw) too
    let last = null;
    for await (const part of await olm.generate({ model: 'story', prompt: ' Lily', raw: true, context: a.context, stream: true, options: opts })) last = part;
    assert.deepEqual(last.context, b.context);
    const t = await olm.generate({ model: 'story', prompt: 'Hello', context: a.context, stream: false, options: opts });
    assert.deepEqual(t.context.slice(0, a.context.length), a.context);
    // a token the model does not have, or not a token: 400
    await assert.rejects(olm.generate({ model: 'story', prompt: 'x', context: [1, 99999], stream: false }),
      (err) => err.status_code === 400 && /context\[1\] is token 99999; the vocabulary has 512/.test(err.message));
    await assert.rejects(olm.generate({ model: 'story', prompt: 'x', context: ['a'], stream: false }), (err) => err.status_code === 400);
    await assert.rejects(olm.chat({ model: 'story', messages: [{ role: 'user', content: 'x' }], context: [1], stream: false }),
      (err) => err.status_code === 400 && /context/.test(err.message));
  });

  test('Ollama show: model_info from the GGUF header, modified_at', async () => {
    const s = await olm.show({ model: 'story:latest' });
    const mi = s.model_info;
    assert.equal(mi['general.architecture'], 'llama');
    assert.equal(mi['llama.context_length'], 2048);
    assert.equal(mi['llama.embedding_length'], 64);
    assert.equal(mi['llama.block_count'], 5);
    assert.equal(mi['llama.attention.head_count'], 8);
    assert.equal(mi['llama.attention.head_count_kv'], 4);
    assert.equal(mi['llama.vocab_size'], 512);
    assert.ok(mi['general.parameter_count'] > 250000);
    assert.equal(new Date(s.modified_at).getTime(), Math.floor(fs.statSync(MODEL).mtimeMs / 1000) * 1000);
  });

  test('Ollama embed: an over-long text is truncated unless truncate is false; empty input loads', async () => {
    const long = 'Once upon a time there was a cat. '.repeat(400); // past the 2,048-token context
    const e = await olm.embed({ model: 'embedding', input: [long, 'a cat'] });
    assert.equal(e.embeddings.length, 2);
    assert.ok(e.prompt_eval_count <= 2048 + 16, `${e.prompt_eval_count} tokens`);
    await assert.rejects(olm.embed({ model: 'embedding', input: long, truncate: false }),
      (err) => err.status_code === 400 && /tokens; the context holds/.test(err.message));
    const none = await olm.embed({ model: 'embedding', input: [] });
    assert.deepEqual(none.embeddings, []);
    // OpenAI refuses an over-long input, as OpenAI does
    await assert.rejects(oai.embeddings.create({ model: 'embedding', input: long }), (err) => err.status === 400);
  });

  test('OpenAI embeddings: dimensions shortens and normalises again; past the model is a 400', async () => {
    const full = await oai.embeddings.create({ model: 'embedding', input: 'a cat', encoding_format: 'float' });
    const short = await oai.embeddings.create({ model: 'embedding', input: 'a cat', dimensions: 16, encoding_format: 'float' });
    const f = full.data[0].embedding, s = short.data[0].embedding;
    assert.equal(f.length, 64);
    assert.equal(s.length, 16);
    const norm = Math.hypot(...f.slice(0, 16));
    s.forEach((x, i) => assert.ok(Math.abs(x - f[i] / norm) < 1e-5, `component ${i}`));
    assert.ok(Math.abs(Math.hypot(...s) - 1) < 1e-5);
    const b64 = await oai.embeddings.create({ model: 'embedding', input: 'a cat', dimensions: 16 }); // base64
    assert.equal(b64.data[0].embedding.length, 16);
    await assert.rejects(oai.embeddings.create({ model: 'embedding', input: 'a cat', dimensions: 65 }), (err) => err.status === 400 && /64/.test(err.message));
  });

  test('OpenAI Responses API: text, streamed and not, equals the chat completion; instructions; bad input', async () => {
    const ask = [{ role: 'system', content: 'Tell a story.' }, { role: 'user', content: 'Once upon a time' }];
    const chat = await oai.chat.completions.create({ model: 'story', messages: ask, max_tokens: 11 });
    const want = chat.choices[0].message.content;
    const r = await oai.responses.create({ model: 'story', instructions: 'Tell a story.', input: 'Once upon a time', max_output_tokens: 11 });
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_/);
    assert.equal(r.output_text, want);
    assert.equal(r.status, 'incomplete'); // 11 tokens, cut
    assert.equal(r.incomplete_details.reason, 'max_output_tokens');
    assert.equal(r.usage.output_tokens, 11);
    assert.equal(r.usage.input_tokens, chat.usage.prompt_tokens);
    assert.equal(r.output[0].type, 'message');
    assert.equal(r.output[0].content[0].type, 'output_text');
    assert.equal(r.max_output_tokens, 11);
    assert.equal(r.store, false);
    // the same as input items, with parts
    const items = await oai.responses.create({
      model: 'story', max_output_tokens: 11,
      input: [{ role: 'developer', content: 'Tell a story.' }, { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Once upon a time' }] }],
    });
    assert.equal(items.output_text, want);
    // streamed: the helper's deltas make the text, events numbered in order
    const s = oai.responses.stream({ model: 'story', instructions: 'Tell a story.', input: 'Once upon a time', max_output_tokens: 11 });
    let text = '';
    const types = [];
    s.on('response.output_text.delta', (e) => { text += e.delta; });
    s.on('event', (e) => types.push(e.type));
    const fin = await s.finalResponse();
    assert.equal(text, want);
    assert.equal(fin.output_text, want);
    assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete']);
    const done = await oai.responses.create({ model: 'story', input: 'Once upon a time', max_output_tokens: 400, stop: ['.'] });
    assert.equal(done.status, 'completed');
    // what cannot be done is a 400 that says why
    const cases = [
      [{ input: 'x', previous_response_id: 'resp_1' }, /stores no responses/],
      [{ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x/y.png' }] }] }, /only text parts/],
      [{ input: [{ type: 'item_reference', id: 'x' }] }, /item_reference/],
      [{ input: 'x', tools: [{ type: 'web_search' }] }, /only function tools/],
      [{ input: [] }, /non-empty array/],
      [{ input: 'x', tool_choice: 'required' }, /tools/],
      [{ input: 'x', background: true }, /background/],
      [{ input: 'x', text: { format: { type: 'json_schema', name: 'x', schema: { type: 'bogus' } } } }, /schema/],
    ];
    for (const [body, re] of cases) {
      const res = await fetch(`${srv.url}/v1/responses`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'story', ...body }) });
      const j = await res.json();
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.match(j.error.message, re, JSON.stringify(body));
    }
    assert.equal((await fetch(`${srv.url}/v1/responses`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'nobody', input: 'x' }) })).status, 404);
  });

  test('OpenAI n: several choices of one request, streamed and not', async () => {
    const c = await oai.completions.create({ model: 'story', prompt: 'Once upon a time', n: 3 });
    assert.deepEqual(c.choices.map((x) => x.index), [0, 1, 2]);
    for (const x of c.choices) assert.equal(x.text, GREEDY); // the role is greedy
    assert.equal(c.usage.completion_tokens, 33);
    assert.equal(c.usage.prompt_tokens, 5); // the prompt once
    const chat = await oai.chat.completions.create({ model: 'story', messages: [{ role: 'user', content: 'Once upon a time' }], n: 2, max_tokens: 6 });
    assert.equal(chat.choices.length, 2);
    assert.equal(chat.choices[0].message.content, chat.choices[1].message.content);
    // streamed: each choice's pieces under its index, one finish each, usage summed
    const s = await oai.chat.completions.create({ model: 'story', messages: [{ role: 'user', content: 'Once upon a time' }], n: 2, max_tokens: 6, stream: true, stream_options: { include_usage: true } });
    const text = ['', ''], finish = [null, null];
    let usage = null;
    for await (const ch of s) {
      if (ch.usage) usage = ch.usage;
      for (const x of ch.choices) {
        text[x.index] += x.delta.content || '';
        if (x.finish_reason) finish[x.index] = x.finish_reason;
      }
    }
    assert.deepEqual(text, [chat.choices[0].message.content, chat.choices[0].message.content]);
    assert.deepEqual(finish, ['length', 'length']);
    assert.equal(usage.completion_tokens, 12);
    await assert.rejects(oai.completions.create({ model: 'story', prompt: 'x', n: 17 }), (err) => err.status === 400 && /'n' is 17/.test(err.message));
  });

  test('Ollama create, copy, delete: roles kept beside the config, files only from --models-dir', async () => {
    const r = await olm.create({ model: 'made', from: 'syn.gguf', stream: false });
    assert.equal(r.status, 'success');
    assert.ok((await olm.list()).models.some((m) => m.name === 'made'));
    const g = await olm.generate({ model: 'made:latest', prompt: 'hello', raw: true, stream: false, options: { num_predict: 3 } });
    assert.equal(g.eval_count, 3);
    const kept = fs.readFileSync(`${config}.created`, 'utf8');
    assert.match(kept, /\[made\]\npath = .*syn\.gguf/);
    await assert.rejects(olm.create({ model: 'made', from: 'syn.gguf', stream: false }), (err) => err.status_code === 400 && /exists already/.test(err.message));
    // from a model, with parameters of its own; streamed as Ollama streams it
    const steps = [];
    for await (const s of await olm.create({ model: 'terse', from: 'story', parameters: { num_predict: 3, temperature: 0 }, stream: true })) steps.push(s.status);
    assert.equal(steps.at(-1), 'success');
    const t = await olm.generate({ model: 'terse', prompt: 'Once upon a time', raw: true, stream: false });
    assert.equal(t.eval_count, 3);
    assert.equal(t.response, ', there was');
    // copy: the same model under another name; delete what was made, not the config's
    await olm.copy({ source: 'story', destination: 'story2' });
    assert.equal((await olm.generate({ model: 'story2', prompt: 'Once upon a time', raw: true, stream: false })).response, GREEDY);
    await olm.delete({ model: 'story2' });
    await assert.rejects(olm.generate({ model: 'story2', prompt: 'x', stream: false }), (err) => err.status_code === 404);
    await assert.rejects(olm.delete({ model: 'story' }), (err) => err.status_code === 400 && /config file/.test(err.message));
    await assert.rejects(olm.delete({ model: 'nobody' }), (err) => err.status_code === 404);
    await assert.rejects(olm.copy({ source: 'nobody', destination: 'x' }), (err) => err.status_code === 404);
    // files: only inside the folder, and only models
    await assert.rejects(olm.create({ model: 'out', from: 'outside.gguf', stream: false }), (err) => err.status_code === 403 && /outside the models folder/.test(err.message));
    // (the ollama client refuses absolute paths itself)
    const abs = await fetch(`${srv.url}/api/create`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'out', from: MODEL, stream: false }) });
    assert.equal(abs.status, 403);
    await assert.rejects(olm.create({ model: 'none', from: 'missing.gguf', stream: false }), (err) => err.status_code === 404);
    fs.writeFileSync(path.join(models, 'junk.gguf'), 'not a model');
    await assert.rejects(olm.create({ model: 'junk', from: 'junk.gguf', stream: false }), (err) => err.status_code === 400);
    await assert.rejects(olm.create({ model: 'x:7b', from: 'story', stream: false }), (err) => err.status_code === 400 && /tags/.test(err.message));
    await assert.rejects(olm.create({ model: 'q', from: 'story', quantize: 'q4_K_M', stream: false }), (err) => err.status_code === 400 && /quantize/.test(err.message));
    // the daemon without --models-dir takes no file, and reads what the other made on SIGHUP
    const pl = new Ollama({ host: plain.url });
    await assert.rejects(pl.create({ model: 'other', from: 'syn.gguf', stream: false }), (err) => err.status_code === 400 && /--models-dir/.test(err.message));
    plain.child.kill('SIGHUP');
    let names = [];
    for (let i = 0; i < 100 && !names.includes('made'); i++) {
      await new Promise((res) => setTimeout(res, 20));
      names = (await pl.list()).models.map((m) => m.name);
    }
    assert.ok(names.includes('made') && names.includes('terse') && !names.includes('story2'), names.join(','));
    await olm.delete({ model: 'made' });
    await olm.delete({ model: 'terse' });
  });

  test('suffix: fill-in-the-middle with the model\'s FIM tokens (Ollama and OpenAI); echo', async () => {
    // the vocabulary's last three tokens are FIM_PRE, FIM_SUF, FIM_MID (mkmodel --fim, 2048 tokens)
    const [PRE, SUF, MID] = [2045, 2046, 2047];
    const toks = async (text) => (await olm.generate({ model: 'fim', prompt: text, raw: true, stream: false, options: { num_predict: 1 } })).context.slice(1, -1);
    const before = await toks('def add(x, y):'), after_ = await toks('return x');
    const g = await olm.generate({ model: 'fim', prompt: 'def add(x, y):', suffix: 'return x', stream: false, options: { num_predict: 4 } });
    assert.deepEqual(g.context.slice(0, 4 + before.length + after_.length), [1, PRE, ...before, SUF, ...after_, MID]);
    assert.equal(g.prompt_eval_count, 4 + before.length + after_.length);
    assert.equal(g.eval_count, 4);
    // the OpenAI completion of the same infill prompt: the same greedy text; echoed, the prompt first
    const c = await oai.completions.create({ model: 'fim', prompt: 'def add(x, y):', suffix: 'return x', max_tokens: 4 });
    assert.equal(c.choices[0].text, g.response);
    assert.equal(c.usage.prompt_tokens, g.prompt_eval_count);
    const e = await oai.completions.create({ model: 'story', prompt: 'Once upon a time', echo: true });
    assert.equal(e.choices[0].text, `Once upon a time${GREEDY}`);
    const parts = [];
    for await (const ch of await oai.completions.create({ model: 'story', prompt: 'Once upon a time', echo: true, stream: true })) parts.push(ch.choices[0].text);
    assert.equal(parts[0], 'Once upon a time');
    assert.equal(parts.join(''), `Once upon a time${GREEDY}`);
    // a model with no FIM tokens, a chat, a suffix with a context: refused saying why
    await assert.rejects(oai.completions.create({ model: 'story', prompt: 'x', suffix: 'y' }), (err) => err.status === 400 && /no FIM_PRE token/.test(err.message));
    await assert.rejects(olm.generate({ model: 'story', prompt: 'x', suffix: 'y', stream: false }), (err) => err.status_code === 400 && /fill in the middle/.test(err.message));
    await assert.rejects(oai.chat.completions.create({ model: 'story', messages: [{ role: 'user', content: 'x' }], echo: true }), (err) => err.status === 400 && /on \/v1\/completions it is/.test(err.message));
    await assert.rejects(olm.generate({ model: 'fim', prompt: 'x', suffix: 'y', context: g.context, stream: false }), (err) => err.status_code === 400 && /with a context/.test(err.message));
    await assert.rejects(olm.chat({ model: 'fim', messages: [{ role: 'user', content: 'x' }], suffix: 'y', stream: false }), (err) => err.status_code === 400 && /suffix/.test(err.message));
  });

  test('sanity: the key-protected daemon serves the greedy text', async () => {
    const c = await oai.completions.create({ model: 'story', prompt: 'Once upon a time' });
    assert.equal(c.choices[0].text, GREEDY);
  });
}
