// tests/e2e/ollama_client.mjs: the official Ollama JavaScript client (npm `ollama`, pinned by
// test_ollama.sh) driving `locallm serve` on the embedded tinychat model, unchanged: only the
// host and an Authorization header differ from talking to Ollama. Expected texts are tinychat's
// greedy replies (models/tinychat/refs.json; the same ones openai_sdk.mjs checks).
// Usage: node ollama_client.mjs CLIENT_DIR BASE_URL API_KEY
//   CLIENT_DIR: the npm prefix holding node_modules/ollama.
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FRANCE, PARIS, SYS, TOOLS, check, nChecks } from './client_common.mjs';

const [clientDir, host, apiKey] = process.argv.slice(2);
if (!clientDir || !host || !apiKey) {
  console.error('usage: node ollama_client.mjs CLIENT_DIR BASE_URL API_KEY');
  process.exit(2);
}
const { Ollama } = await import(pathToFileURL(resolve(clientDir, 'node_modules/ollama/dist/index.mjs')).href);
const ollama = new Ollama({ host, headers: { Authorization: `Bearer ${apiKey}` } });

// The numbers of a final object: counts and durations in nanoseconds, as Ollama reports them.
function checkFinal(r, promptCount) {
  assert.equal(r.done, true);
  assert.equal(r.model, 'tinychat');
  assert.ok(!Number.isNaN(Date.parse(r.created_at)), r.created_at);
  assert.equal(r.prompt_eval_count, promptCount);
  assert.ok(Number.isInteger(r.eval_count) && r.eval_count > 0);
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'])
    assert.ok(Number.isInteger(r[k]) && r[k] >= 0, `${k}: ${r[k]}`);
  assert.ok(r.total_duration >= r.prompt_eval_duration + r.eval_duration, JSON.stringify(r));
}

await check('version', async () => {
  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+\.\d+$/);
});

await check('list (GET /api/tags)', async () => {
  const { models } = await ollama.list();
  assert.equal(models.length, 1);
  assert.equal(models[0].name, 'tinychat:latest');
  assert.equal(models[0].model, 'tinychat:latest');
  assert.equal(models[0].details.family, 'qwen2');
  assert.equal(models[0].details.parameter_size, '5M');
  assert.ok(models[0].size > 1000000);
  assert.ok(!Number.isNaN(Date.parse(models[0].modified_at)));
});

await check('show', async () => {
  const s = await ollama.show({ model: 'tinychat' });
  assert.ok(s.template.includes('<|im_start|>'));
  assert.equal(s.details.family, 'qwen2');
  assert.equal(s.model_info['general.architecture'], 'qwen2');
  assert.equal(s.model_info['qwen2.vocab_size'], 2048);
  assert.ok(s.capabilities.includes('completion') && s.capabilities.includes('tools'));
  assert.match(s.parameters, /num_ctx\s+\d+/);
});

await check('chat, not streamed', async () => {
  const r = await ollama.chat({ model: 'tinychat', messages: FRANCE, options: { temperature: 0 } });
  assert.equal(r.message.role, 'assistant');
  assert.equal(r.message.content, PARIS);
  assert.equal(r.done_reason, 'stop');
  checkFinal(r, 27);
});

await check('chat, streamed', async () => {
  const parts = [];
  for await (const p of await ollama.chat({ model: 'tinychat:latest', messages: FRANCE, stream: true, options: { temperature: 0 } }))
    parts.push(p);
  assert.ok(parts.length >= 4, `only ${parts.length} parts`);
  const last = parts[parts.length - 1];
  assert.ok(parts.slice(0, -1).every((p) => p.done === false && p.message.role === 'assistant'));
  assert.ok(parts[0].message.content, 'the first part carries content');
  assert.equal(parts.map((p) => p.message.content).join(''), PARIS);
  assert.equal(last.done_reason, 'stop');
  assert.equal(last.model, 'tinychat:latest');
  assert.equal(last.eval_count, parts.length - 1);
  checkFinal({ ...last, model: 'tinychat' }, 27);
});

await check('options: num_predict and stop', async () => {
  const r = await ollama.chat({ model: 'tinychat', messages: FRANCE, options: { temperature: 0, num_predict: 2 } });
  assert.equal(r.message.content, 'The capital');
  assert.equal(r.done_reason, 'length');
  assert.equal(r.eval_count, 2);
  const s = await ollama.chat({ model: 'tinychat', messages: FRANCE, options: { temperature: 0, stop: [' Paris'] } });
  assert.equal(s.message.content, 'The capital of France is');
});

await check('generate, not streamed and streamed', async () => {
  const req = { model: 'tinychat', system: SYS.content, prompt: 'What is the capital of France?', options: { temperature: 0 } };
  const r = await ollama.generate(req);
  assert.equal(r.response, PARIS);
  checkFinal(r, 27);
  let text = '';
  let last;
  for await (const p of await ollama.generate({ ...req, stream: true })) {
    text += p.response;
    last = p;
  }
  assert.equal(text, PARIS);
  assert.equal(last.done, true);
  assert.equal(last.response, '');
});

await check('generate raw: the prompt as it is, as /v1/completions continues it', async () => {
  const r = await ollama.generate({ model: 'tinychat', prompt: 'Once upon', raw: true,
    options: { temperature: 0, num_predict: 6, repeat_penalty: 1 } });
  const c = await fetch(`${host}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ prompt: 'Once upon', temperature: 0, max_tokens: 6 }),
  }).then((x) => x.json());
  assert.ok(r.response.length > 0);
  assert.equal(r.response, c.choices[0].text);
  assert.equal(r.prompt_eval_count, c.usage.prompt_tokens);
});

await check('format "json"', async () => {
  const r = await ollama.chat({ model: 'tinychat', format: 'json', options: { temperature: 0, num_predict: 200 },
    messages: [{ role: 'user', content: 'What is the weather in Oslo?' }] });
  const v = JSON.parse(r.message.content);
  assert.equal(typeof v, 'object');
  assert.ok(v !== null && !Array.isArray(v));
});

await check('format: a JSON Schema', async () => {
  const schema = {
    type: 'object',
    properties: { city: { type: 'string' }, temperature_c: { type: 'integer' }, sunny: { type: 'boolean' } },
    required: ['city', 'temperature_c', 'sunny'],
    additionalProperties: false,
  };
  for (const stream of [false, true]) {
    const req = { model: 'tinychat', format: schema, options: { temperature: 0, num_predict: 200 },
      messages: [{ role: 'user', content: 'What is the weather in Oslo?' }] };
    let content = '';
    if (stream) for await (const p of await ollama.chat({ ...req, stream })) content += p.message.content;
    else content = (await ollama.chat(req)).message.content;
    const v = JSON.parse(content);
    assert.deepEqual(Object.keys(v), ['city', 'temperature_c', 'sunny']);
    assert.equal(typeof v.city, 'string');
    assert.ok(Number.isInteger(v.temperature_c));
    assert.equal(typeof v.sunny, 'boolean');
  }
});

await check('tools: a call with arguments as an object', async () => {
  const r = await ollama.chat({ model: 'tinychat', tools: TOOLS, options: { temperature: 0 },
    messages: [{ role: 'user', content: "What's the weather in Paris?" }] });
  assert.equal(r.message.content, '');
  assert.equal(r.message.tool_calls.length, 1);
  assert.equal(r.message.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(r.message.tool_calls[0].function.arguments, { city: 'Paris' });
  assert.equal(r.done_reason, 'stop');
  // streamed: the call comes in a part before the last
  const calls = [];
  let content = '';
  for await (const p of await ollama.chat({ model: 'tinychat', tools: TOOLS, stream: true, options: { temperature: 0 },
    messages: [{ role: 'user', content: 'What time is it in Tokyo?' }] })) {
    content += p.message.content;
    calls.push(...(p.message.tool_calls || []));
  }
  assert.equal(content, '');
  assert.deepEqual(calls, [{ function: { name: 'get_time', arguments: { city: 'Tokyo' } } }]);
});

await check('the answer after a tool result (tool_calls and tool_name in the history)', async () => {
  const r = await ollama.chat({ model: 'tinychat', tools: TOOLS, options: { temperature: 0 },
    messages: [
      { role: 'user', content: "What's the weather in Paris?" },
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
      { role: 'tool', tool_name: 'get_weather', content: '{"temperature_c": 18, "conditions": "sunny"}' },
    ] });
  assert.ok(r.message.content.length > 0);
  assert.equal(r.message.tool_calls, undefined);
});

await check('logprobs', async () => {
  const r = await ollama.chat({ model: 'tinychat', messages: FRANCE, logprobs: true, top_logprobs: 2, options: { temperature: 0 } });
  assert.equal(r.logprobs.length, r.eval_count);
  assert.equal(r.logprobs.map((t) => t.token).join(''), PARIS);
  for (const t of r.logprobs) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 2);
    assert.equal(t.top_logprobs[0].token, t.token);
  }
});

await check('load request, keep_alive', async () => {
  const r = await ollama.chat({ model: 'tinychat', messages: [], keep_alive: '5m' });
  assert.equal(r.done, true);
  assert.equal(r.done_reason, 'load');
  assert.equal(r.message.content, '');
  const g = await ollama.generate({ model: 'tinychat', prompt: '', keep_alive: 0 });
  assert.equal(g.done_reason, 'load');
});

await check('errors: ResponseError with the status and the server message', async () => {
  await assert.rejects(ollama.chat({ model: 'llama3.2', messages: FRANCE }), (e) =>
    e.name === 'ResponseError' && e.status_code === 404 && /model "llama3.2" not found/.test(e.error));
  await assert.rejects(ollama.show({ model: 'llama3.2' }), (e) => e.status_code === 404);
  await assert.rejects(ollama.chat({ model: 'tinychat', messages: FRANCE, format: 'yaml' }), (e) =>
    e.status_code === 400 && /'format' must be "json" or a JSON Schema/.test(e.error));
  await assert.rejects(ollama.chat({ model: 'tinychat', messages: FRANCE, options: { temperature: 'hot' } }), (e) =>
    e.status_code === 400 && /temperature/.test(e.error));
  const anon = new Ollama({ host });
  await assert.rejects(anon.list(), (e) => e.status_code === 401 && /API key/.test(e.error));
  // a streamed request that fails before its first token is a plain HTTP error too
  await assert.rejects(ollama.chat({ model: 'tinychat', messages: [{ role: 'robot', content: 'hi' }], stream: true }), (e) =>
    e.status_code === 400 && /role/.test(e.error));
});

console.log(`ollama_client: ${nChecks()} checks passed`);
