// test-agents.mjs — what agent frameworks need from `orchestra serve`, driven
// by the real clients: tool calls (required, named, streamed and not) and
// structured output through the npm packages openai, ollama, LangChain.js
// (@langchain/openai, @langchain/ollama) and the Vercel AI SDK
// (ai, @ai-sdk/openai-compatible, and @ai-sdk/openai's default: OpenAI's
// Responses API), on synthetic random-weight models that
// carry the real chat templates of the pinned llama.cpp source. A random
// model writes noise: what holds is that the grammar leaves it no choice.
// Environment: see daemon-util.mjs; ORCH_TEST_TEMPLATES (the templates).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import {
  BIN, MODULES, OpenAI, Ollama, missing, skipAll, tmp, writeConfig, startServer, stopServer, metric,
} from './daemon-util.mjs';

const TEMPLATES = process.env.ORCH_TEST_TEMPLATES;
const FAMILIES = {
  qwen25: 'Qwen-Qwen2.5-7B-Instruct.jinja',
  qwen3: 'Qwen-Qwen3-0.6B.jinja',
  llama31: 'meta-llama-Llama-3.1-8B-Instruct.jinja',
  llama32: 'meta-llama-Llama-3.2-3B-Instruct.jinja',
  hermes: 'NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja',
  mistral: 'mistralai-Mistral-Nemo-Instruct-2407.jinja',
  deepseek: 'deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja',
  granite: 'ibm-granite-granite-4.0.jinja',
  gptoss: 'openai-gpt-oss-120b.jinja',
  functionary: 'meetkai-functionary-medium-v3.2.jinja',
};
const CITIES = ['Paris', 'Rome', 'Oslo'];
const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', enum: CITIES } }, required: ['city'] },
  },
};
const PERSON = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 150 } },
  required: ['name', 'age'],
  additionalProperties: false,
};
const SYSTEM = 'You are a helpful assistant.';
const ASK = [{ role: 'system', content: SYSTEM }, { role: 'user', content: 'What is the weather in Paris?' }];
const USER = ASK.slice(1);

let lc = null;
try {
  const require = createRequire(path.join(MODULES, 'x.js'));
  lc = {
    ChatOpenAI: require('@langchain/openai').ChatOpenAI,
    ChatOllama: require('@langchain/ollama').ChatOllama,
    ai: await import(require.resolve('ai')),
    compat: await import(require.resolve('@ai-sdk/openai-compatible')),
    aiOpenAI: await import(require.resolve('@ai-sdk/openai')),
    z: require('zod').z,
  };
} catch (e) {
  lc = null;
}

function validCall(name, args, where) {
  assert.equal(name, 'get_weather', where);
  const a = typeof args === 'string' ? JSON.parse(args) : args;
  assert.ok(CITIES.includes(a.city), `${where}: ${JSON.stringify(a)}`);
}

function validPerson(o, where) {
  const p = typeof o === 'string' ? JSON.parse(o) : o;
  assert.equal(typeof p.name, 'string', where);
  assert.ok(Number.isInteger(p.age) && p.age >= 0 && p.age <= 150, `${where}: ${JSON.stringify(p)}`);
  assert.deepEqual(Object.keys(p).sort(), ['age', 'name'], where);
}

const why = missing || (!OpenAI || !Ollama || !lc ? `npm packages not found in ${MODULES} (scripts/setup.sh installs them)` : null) ||
  (!TEMPLATES || !fs.existsSync(TEMPLATES) ? 'ORCH_TEST_TEMPLATES not set' : null);
if (why) {
  skipAll('test-agents', why);
} else {
  let ini = '[defaults]\nn_threads = 1\nidle_ttl = -1\nmax_tokens = 400\nvet = false\n';
  for (const [role, file] of Object.entries(FAMILIES)) {
    const gguf = path.join(tmp, `${role}.gguf`);
    const tmpl = fs.readFileSync(path.join(TEMPLATES, file), 'utf8');
    execFileSync(BIN, ['-q', 'mkmodel', '--params', '100000', '--ctx', '4096', '--seed', '3', '--chat-template', tmpl, '-o', gguf]);
    ini += `[${role}]\npath = ${gguf}\n`;
  }
  fs.writeFileSync(path.join(tmp, 'raises.jinja'), "{{ raise_exception('this template refuses every chat') }}");
  ini += `[raising]\npath = ${path.join(tmp, 'qwen25.gguf')}\nchat_template = ${path.join(tmp, 'raises.jinja')}\n`;
  ini += `[qwen3_quiet]\npath = ${path.join(tmp, 'qwen3.gguf')}\nreasoning = off\n`;
  const config = writeConfig('agents.ini', ini);
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

  test('openai: tool_choice "required" and a named function, streamed and not, on ten template families', async () => {
    for (const model of Object.keys(FAMILIES)) {
      for (const tool_choice of ['required', { type: 'function', function: { name: 'get_weather' } }]) {
        const r = await oai.chat.completions.create({ model, messages: ASK, tools: [WEATHER], tool_choice, seed: 11 });
        const c = r.choices[0];
        assert.equal(c.finish_reason, 'tool_calls', `${model} ${JSON.stringify(tool_choice)}: ${JSON.stringify(c.message).slice(0, 300)}`);
        assert.ok(c.message.tool_calls[0].id, model);
        validCall(c.message.tool_calls[0].function.name, c.message.tool_calls[0].function.arguments, model);
      }
      // the client's stream helper assembles delta.tool_calls into the message
      const s = oai.chat.completions.stream({ model, messages: ASK, tools: [WEATHER], tool_choice: 'required', seed: 12 });
      const done = await s.finalChatCompletion();
      const m = done.choices[0].message;
      assert.equal(done.choices[0].finish_reason, 'tool_calls', `${model} streamed`);
      validCall(m.tool_calls[0].function.name, m.tool_calls[0].function.arguments, `${model} streamed`);
    }
  });

  test('openai: a conversation with a tool call and its result continues; response_format json_schema and json_object', async () => {
    const history = [...ASK,
      // (an id of 9 letters and digits: Mistral's template requires it)
      { role: 'assistant', content: null, tool_calls: [{ id: 'call7abcd', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call7abcd', content: '{"temperature": 21}' }];
    for (const model of ['qwen25', 'llama32', 'mistral']) {
      const r = await oai.chat.completions.create({ model, messages: history, tools: [WEATHER], max_tokens: 8 });
      assert.ok(r.choices[0].message, model);
      const s = await oai.chat.completions.create({
        model, messages: ASK, response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: PERSON } }, seed: 4,
      });
      validPerson(s.choices[0].message.content, `${model} json_schema`);
      const o = await oai.chat.completions.create({ model, messages: ASK, response_format: { type: 'json_object' }, max_tokens: 300, seed: 5 });
      if (o.choices[0].finish_reason === 'stop')
        assert.equal(typeof JSON.parse(o.choices[0].message.content), 'object', `${model} json_object`);
    }
  });

  test('ollama: tools with a required call (tool_choice, ours), streamed and not; format as a schema and "json"', async () => {
    for (const model of ['qwen25', 'qwen3', 'llama31', 'hermes', 'granite']) {
      const r = await olm.chat({ model, messages: ASK, tools: [WEATHER], tool_choice: 'required', stream: false, options: { seed: 6 } });
      const call = r.message.tool_calls[0].function;
      validCall(call.name, call.arguments, `${model} ollama`);
      assert.equal(typeof call.arguments, 'object');
      let calls = [];
      for await (const part of await olm.chat({ model, messages: ASK, tools: [WEATHER], tool_choice: 'required', stream: true, options: { seed: 7 } }))
        if (part.message.tool_calls) calls = calls.concat(part.message.tool_calls);
      assert.equal(calls.length >= 1, true, `${model} ollama streamed`);
      validCall(calls[0].function.name, calls[0].function.arguments, `${model} ollama streamed`);
      if (model === 'qwen3') continue; // (thinking first: see the AI SDK test)
      const f = await olm.chat({ model, messages: ASK, format: PERSON, stream: false, options: { seed: 8, num_predict: 300 } });
      validPerson(f.message.content, `${model} ollama format`);
      const g = await olm.generate({ model, prompt: 'Describe a person.', format: PERSON, stream: false, options: { seed: 9, num_predict: 300 } });
      validPerson(g.response, `${model} ollama generate format`);
    }
  });

  test('LangChain.js: ChatOpenAI bindTools with tool_choice "required", withStructuredOutput; ChatOllama withStructuredOutput', async () => {
    const { ChatOpenAI, ChatOllama, z } = lc;
    // (names from a list: a random model's free string would run to the token
    // limit, and zod counts a length in UTF-16 units where a grammar counts characters)
    const schema = z.object({ name: z.enum(['Ada', 'Grace', 'Linus']), age: z.number().int().min(0).max(150) });
    for (const model of ['qwen25', 'llama32', 'hermes']) {
      const chat = new ChatOpenAI({ model, apiKey: 'unused', configuration: { baseURL: `${srv.url}/v1` }, maxRetries: 0, temperature: 0.8 });
      const bound = chat.bindTools([WEATHER], { tool_choice: 'required' });
      const msg = await bound.invoke(ASK);
      assert.ok(msg.tool_calls.length >= 1, `${model}: ${JSON.stringify(msg)}`);
      validCall(msg.tool_calls[0].name, msg.tool_calls[0].args, `${model} langchain`);
      const person = await chat.withStructuredOutput(schema, { name: 'person' }).invoke(ASK);
      validPerson(person, `${model} langchain structured`);
      const ollama = new ChatOllama({ model, baseUrl: srv.url, temperature: 0.8, numPredict: 300 });
      const p2 = await ollama.withStructuredOutput(schema, { name: 'person' }).invoke(ASK);
      validPerson(p2, `${model} langchain ollama structured`);
    }
  });

  test('AI SDK: generateText and streamText with toolChoice "required", generateObject', async () => {
    const { generateText, streamText, generateObject, tool } = lc.ai;
    const { z } = lc;
    const provider = lc.compat.createOpenAICompatible({ name: 'orchestra', baseURL: `${srv.url}/v1`, supportsStructuredOutputs: true });
    const tools = { get_weather: tool({ description: 'The weather in a city', inputSchema: z.object({ city: z.enum(CITIES) }) }) };
    for (const model of ['qwen25', 'qwen3', 'functionary', 'llama32']) {
      const r = await generateText({ model: provider(model), system: SYSTEM, messages: USER, tools, toolChoice: 'required', maxRetries: 0 });
      assert.ok(r.toolCalls.length >= 1, `${model}: ${r.text}`);
      validCall(r.toolCalls[0].toolName, r.toolCalls[0].input, `${model} ai sdk`);
      const s = streamText({ model: provider(model), system: SYSTEM, messages: USER, tools, toolChoice: 'required', maxRetries: 0 });
      const calls = await s.toolCalls;
      assert.ok(calls.length >= 1, `${model} streamed`);
      validCall(calls[0].toolName, calls[0].input, `${model} ai sdk streamed`);
      // (not on a thinking template: a random model may think to the token limit
      // before its object; a required call is made without thinking)
      if (model === 'qwen3') continue;
      const o = await generateObject({
        model: provider(model), system: SYSTEM, messages: USER, maxRetries: 0, seed: 21,
        schema: z.object({ name: z.enum(['Ada', 'Grace', 'Linus']), age: z.number().int().min(0).max(150) }),
      });
      validPerson(o.object, `${model} ai sdk object`);
    }
  });

  test('Responses API: function calls (required, named), streamed and not, a call\'s output continues; text.format json_schema', async () => {
    const tool = { type: 'function', ...WEATHER.function };
    for (const model of ['qwen25', 'llama31', 'hermes', 'mistral', 'gptoss']) {
      for (const tool_choice of ['required', { type: 'function', name: 'get_weather' }]) {
        const r = await oai.responses.create({ model, instructions: SYSTEM, input: USER, tools: [tool], tool_choice, seed: 13 });
        assert.equal(r.status, 'completed', model);
        const calls = r.output.filter((o) => o.type === 'function_call');
        assert.equal(calls.length, 1, `${model}: ${JSON.stringify(r.output).slice(0, 300)}`);
        assert.ok(calls[0].call_id && calls[0].id.startsWith('fc_'), model);
        validCall(calls[0].name, calls[0].arguments, `${model} responses`);
      }
      // the client's stream helper assembles the events into the response
      const s = oai.responses.stream({ model, input: USER, tools: [tool], tool_choice: 'required', seed: 14 });
      let args = '';
      s.on('response.function_call_arguments.delta', (e) => { args += e.delta; });
      const done = await s.finalResponse();
      const call = done.output.find((o) => o.type === 'function_call');
      validCall(call.name, call.arguments, `${model} responses streamed`);
      assert.equal(args, call.arguments, model);
    }
    // a call and its output in input: the model answers on (Mistral's ids: 9 characters)
    const r = await oai.responses.create({
      model: 'qwen25', max_output_tokens: 8, tools: [tool],
      input: [...USER, { type: 'function_call', call_id: 'call7abcd', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call_output', call_id: 'call7abcd', output: '{"temperature": 21}' }],
    });
    assert.ok(['completed', 'incomplete'].includes(r.status));
    const f = await oai.responses.create({ model: 'llama32', input: USER, seed: 15, text: { format: { type: 'json_schema', name: 'person', strict: true, schema: PERSON } } });
    validPerson(f.output_text, 'responses json_schema');
    // thinking (DeepSeek R1's template opens it): a reasoning item first, streamed as reasoning_text
    const events = [];
    const t = oai.responses.stream({ model: 'deepseek', input: USER, max_output_tokens: 6, seed: 16 });
    for await (const e of t) events.push(e);
    const fin = events.at(-1);
    assert.equal(fin.type, 'response.incomplete');
    assert.equal(fin.response.incomplete_details.reason, 'max_output_tokens');
    assert.equal(fin.response.output[0].type, 'reasoning');
    const said = events.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => e.delta).join('');
    assert.ok(said.length > 0);
    assert.equal(fin.response.output[0].content[0].text, said);
    assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
    assert.deepEqual(events.slice(0, 4).map((e) => e.type), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
  });

  test('AI SDK @ai-sdk/openai (the Responses API by default): generateText, streamText with toolChoice "required"', async () => {
    const { generateText, streamText, tool } = lc.ai;
    const { z } = lc;
    const provider = lc.aiOpenAI.createOpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused' });
    const served = () => metric(srv.url, 'orchestra_requests_total', 'endpoint="/v1/responses",status="200"');
    const before = await served();
    const tools = { get_weather: tool({ description: 'The weather in a city', inputSchema: z.object({ city: z.enum(CITIES) }) }) };
    for (const model of ['qwen25', 'llama32']) {
      const r = await generateText({ model: provider(model), system: SYSTEM, messages: USER, tools, toolChoice: 'required', maxRetries: 0 });
      assert.ok(r.toolCalls.length >= 1, `${model}: ${r.text}`);
      validCall(r.toolCalls[0].toolName, r.toolCalls[0].input, `${model} ai sdk responses`);
      const s = streamText({ model: provider(model), system: SYSTEM, messages: USER, tools, toolChoice: 'required', maxRetries: 0 });
      const calls = await s.toolCalls;
      assert.ok(calls.length >= 1, `${model} streamed`);
      validCall(calls[0].toolName, calls[0].input, `${model} ai sdk responses streamed`);
      const t = await generateText({ model: provider(model), prompt: 'Say hi.', maxOutputTokens: 5, maxRetries: 0 });
      assert.equal(typeof t.text, 'string');
      assert.equal(t.usage.outputTokens, 5);
    }
    assert.equal(await served(), before + 6); // each call went to /v1/responses
  });

  test('ollama /api/show: the template a role renders with and the capabilities it reads', async () => {
    const q = await olm.show({ model: 'qwen25' });
    assert.equal(q.template, fs.readFileSync(path.join(TEMPLATES, FAMILIES.qwen25), 'utf8'));
    assert.ok(q.capabilities.includes('tools') && q.capabilities.includes('completion'), JSON.stringify(q.capabilities));
    assert.ok(!q.capabilities.includes('thinking'), JSON.stringify(q.capabilities));
    const t = await olm.show({ model: 'qwen3' });
    assert.ok(t.capabilities.includes('thinking') && t.capabilities.includes('tools'), JSON.stringify(t.capabilities));
    const o = await olm.show({ model: 'raising' }); // the role's chat_template file
    assert.match(o.template, /refuses every chat/);
  });

  test('reasoning off, per request and per role: the template is asked not to think', async () => {
    const ask = (model, extra = {}) => oai.chat.completions.create({ model, messages: ASK, max_tokens: 1, ...extra });
    const thinking = (await ask('qwen3')).usage.prompt_tokens;
    const quiet = (await ask('qwen3_quiet')).usage.prompt_tokens;
    const none = (await ask('qwen3', { reasoning_effort: 'none' })).usage.prompt_tokens;
    const kw = (await ask('qwen3', { chat_template_kwargs: { enable_thinking: false } })).usage.prompt_tokens;
    // Qwen 3 closes an empty <think></think> block after the prompt when told not to think
    assert.ok(quiet > thinking, `${quiet} > ${thinking}`);
    assert.equal(none, quiet);
    assert.equal(kw, quiet);
    const r = await olm.chat({ model: 'qwen3', messages: ASK, think: false, stream: false, options: { num_predict: 1 } });
    assert.equal(r.prompt_eval_count, quiet);
  });

  test('bad input is a clear 400 and the role serves its next request', async () => {
    const post = (body) => fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'qwen25', messages: ASK, max_tokens: 4, ...body }) });
    const cases = [
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'bogus' } } } }, /schema/],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: 'not a schema' } } }, /schema/],
      [{ grammar: 'root ::= missing-rule' }, /grammar/],
      [{ grammar: 'root ::= "unterminated' }, /grammar/],
      [{ tools: [{ type: 'function', function: { parameters: {} } }] }, /no function name/],
      [{ tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'other' } } }, /other/],
      [{ tool_choice: 'required' }, /tools/],
      [{ messages: [{ role: 'user', content: 'hi' }, { role: 'tool', tool_call_id: 'call_404', content: '1' }] }, /call_404/],
      [{ json_schema: { type: 'object', properties: Object.fromEntries(Array.from({ length: 20000 }, (_, i) => [`p${i}`, { type: 'string' }])) } }, /at most/],
      [{ json_schema: JSON.parse('{"items":'.repeat(100) + '{}' + '}'.repeat(100)) }, /deeper/],
      [{ logprobs: true }, /logprobs/],
      [{ logit_bias: { 5: 10 } }, /logit_bias/],
    ];
    for (const [body, re] of cases) {
      const r = await post(body);
      const text = await r.text();
      assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${text}`);
      assert.match(JSON.parse(text).error.message, re);
    }
    const raising = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'raising', messages: ASK, max_tokens: 4 }) });
    assert.equal(raising.status, 400);
    assert.match((await raising.json()).error.message, /refuses every chat/);
    const ok = await post({ grammar: 'root ::= "yes" | "no"' });
    assert.equal(ok.status, 200);
    assert.match((await ok.json()).choices[0].message.content, /^(yes|no)$/);
    const forever = await post({ grammar: 'root ::= "a" root', max_tokens: 12 });
    const fj = await forever.json();
    assert.equal(fj.choices[0].finish_reason, 'length');
    assert.match(fj.choices[0].message.content, /^a+$/);
  });
}
