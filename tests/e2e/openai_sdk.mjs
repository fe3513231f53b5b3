// tests/e2e/openai_sdk.mjs: the official OpenAI Node SDK (npm `openai`, pinned by
// test_openai_sdk.sh) driving `locallm serve` on the embedded tinychat model, unchanged: only
// baseURL and apiKey differ from talking to OpenAI. Expected texts are tinychat's greedy replies
// (models/tinychat/refs.json, the same ones tests/e2e/test_server.sh checks with curl).
// Usage: node openai_sdk.mjs SDK_DIR BASE_URL API_KEY
//   SDK_DIR: the npm prefix holding node_modules/openai.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FRANCE, PARIS, SYS, TOOLS, check, nChecks } from './client_common.mjs';

const [sdkDir, baseURL, apiKey] = process.argv.slice(2);
if (!sdkDir || !baseURL || !apiKey) {
  console.error('usage: node openai_sdk.mjs SDK_DIR BASE_URL API_KEY');
  process.exit(2);
}
const sdk = await import(pathToFileURL(resolve(sdkDir, 'node_modules/openai/index.mjs')).href);
const OpenAI = sdk.default;
const sdkVersion = JSON.parse(readFileSync(resolve(sdkDir, 'node_modules/openai/package.json'), 'utf8')).version;

// No retries: a failure must show, not be hidden by a second attempt.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['tinychat']);
});

await check('models.retrieve', async () => {
  const m = await client.models.retrieve('tinychat');
  assert.equal(m.id, 'tinychat');
  assert.equal(m.object, 'model');
  assert.equal(m.owned_by, 'locallm');
  await assert.rejects(client.models.retrieve('gpt-4o'), (e) =>
    e instanceof sdk.NotFoundError && e.status === 404 && e.code === 'model_not_found' && /gpt-4o/.test(e.message));
});

await check('chat.completions.create with logprobs', async () => {
  const r = await client.chat.completions.create({
    model: 'tinychat', messages: FRANCE, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const lp = r.choices[0].logprobs.content;
  // the tokens spell the reply; each is its own most likely alternative (greedy) with the
  // same log-probability, and log-probabilities are <= 0 and sorted
  assert.equal(lp.map((t) => t.token).join(''), r.choices[0].message.content);
  for (const t of lp) {
    assert.equal(t.top_logprobs.length, 3);
    assert.equal(t.top_logprobs[0].token, t.token);
    assert.equal(t.top_logprobs[0].logprob, t.logprob);
    assert.ok(t.logprob <= 0);
    assert.ok(t.top_logprobs[1].logprob <= t.top_logprobs[0].logprob);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
  }
});

await check('chat.completions.create, not streamed', async () => {
  const { data: r, response } = await client.chat.completions
    .create({ model: 'tinychat', messages: FRANCE, temperature: 0 })
    .withResponse();
  assert.equal(response.status, 200);
  assert.equal(r.object, 'chat.completion');
  assert.ok(r.id.startsWith('chatcmpl-'));
  assert.equal(r.model, 'tinychat');
  assert.equal(r.choices.length, 1);
  assert.deepEqual(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, PARIS);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.prompt_tokens, 27);
  assert.ok(Number.isInteger(r.usage.completion_tokens) && r.usage.completion_tokens >= 7);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.ok(Number.isInteger(r.usage.prompt_tokens_details.cached_tokens));
});

await check('a second call sharing the prefix reports cached_tokens', async () => {
  const r = await client.chat.completions.create({
    model: 'tinychat',
    messages: [SYS, { role: 'user', content: [{ type: 'text', text: 'What is the capital of France?' }] }],
    temperature: 0,
  });
  assert.equal(r.choices[0].message.content, PARIS);
  assert.ok(r.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(r.usage));
});

await check('max_tokens gives finish_reason length', async () => {
  const r = await client.chat.completions.create({ model: 'tinychat', messages: FRANCE, temperature: 0, max_tokens: 2 });
  assert.equal(r.choices[0].message.content, 'The capital');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 2);
});

await check('stop strings', async () => {
  const r = await client.chat.completions.create({ model: 'tinychat', messages: FRANCE, temperature: 0, stop: [' Paris'] });
  assert.equal(r.choices[0].message.content, 'The capital of France is');
});

await check('chat.completions.create, streamed with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'tinychat',
    messages: FRANCE,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.ok(chunks.length >= 4, `only ${chunks.length} chunks`);
  assert.equal(chunks[0].object, 'chat.completion.chunk');
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.ok(chunks[0].choices[0].delta.content, 'the first chunk carries content');
  const text = chunks.map((c) => (c.choices.length ? c.choices[0].delta.content || '' : '')).join('');
  assert.equal(text, PARIS);
  const fin = chunks.filter((c) => c.choices.length && c.choices[0].finish_reason);
  assert.equal(fin.length, 1);
  assert.equal(fin[0].choices[0].finish_reason, 'stop');
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.prompt_tokens, 27);
  assert.ok(last.usage.completion_tokens >= 7);
  assert.ok(last.usage.prompt_tokens_details.cached_tokens > 0);
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
});

await check('streamed without include_usage: no usage chunk', async () => {
  const stream = await client.chat.completions.create({
    model: 'tinychat',
    messages: [{ role: 'user', content: 'What colour is the sky?' }],
    temperature: 0,
    stream: true,
  });
  let text = '';
  for await (const c of stream) {
    assert.equal(c.usage, undefined);
    text += c.choices[0]?.delta?.content || '';
  }
  assert.equal(text, 'The sky is blue.');
});

await check('the SDK stream helper (beta.chat.completions.stream) and finalChatCompletion', async () => {
  const runner = client.beta.chat.completions.stream({ model: 'tinychat', messages: FRANCE, temperature: 0 });
  let deltas = '';
  runner.on('content', (d) => {
    deltas += d;
  });
  const final = await runner.finalChatCompletion();
  assert.equal(deltas, PARIS);
  assert.equal(final.choices[0].message.content, PARIS);
});

await check('tool calls, not streamed', async () => {
  const r = await client.chat.completions.create({
    model: 'tinychat',
    messages: [{ role: 'user', content: "What's the weather in Paris?" }],
    tools: TOOLS,
    temperature: 0,
  });
  const msg = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.content, null);
  assert.equal(msg.tool_calls.length, 1);
  assert.equal(msg.tool_calls[0].type, 'function');
  assert.ok(msg.tool_calls[0].id);
  assert.equal(msg.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: 'Paris' });
});

await check('tool calls, streamed (delta.tool_calls)', async () => {
  const stream = await client.chat.completions.create({
    model: 'tinychat',
    messages: [{ role: 'user', content: 'What time is it in Tokyo?' }],
    tools: TOOLS,
    temperature: 0,
    stream: true,
  });
  const calls = [];
  let content = '';
  let finish = null;
  for await (const c of stream) {
    const d = c.choices[0]?.delta || {};
    content += d.content || '';
    for (const t of d.tool_calls || []) calls.push(t);
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
  }
  assert.equal(content, '');
  assert.equal(calls.length, 1);
  assert.equal(calls[0].index, 0);
  assert.equal(calls[0].function.name, 'get_time');
  assert.deepEqual(JSON.parse(calls[0].function.arguments), { city: 'Tokyo' });
  assert.equal(finish, 'tool_calls');
});

await check('the answer after a tool result', async () => {
  const r = await client.chat.completions.create({
    model: 'tinychat',
    tools: TOOLS,
    temperature: 0,
    messages: [
      { role: 'user', content: "What's the weather in Paris?" },
      {
        role: 'assistant',
        content: '',
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": 18, "condition": "sunny"}' },
    ],
  });
  assert.equal(r.choices[0].message.content, 'It is 18 degrees and sunny in Paris.');
  assert.equal(r.choices[0].finish_reason, 'stop');
});

const PROMPT = '<|im_start|>user\nWhat is 9 times 8?<|im_end|>\n<|im_start|>assistant\n';

await check('completions.create', async () => {
  const r = await client.completions.create({ model: 'tinychat', prompt: PROMPT, temperature: 0, max_tokens: 32 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, '9 times 8 is 72.');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens >= 8);
});

await check('completions.create, streamed', async () => {
  const stream = await client.completions.create({ model: 'tinychat', prompt: PROMPT, temperature: 0, stream: true });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.text || '';
  assert.equal(text, '9 times 8 is 72.');
});

await check('seeded sampling is reproducible', async () => {
  const req = { model: 'tinychat', messages: [{ role: 'user', content: 'hey there, how r u' }], temperature: 1, top_p: 0.95, seed: 1234, max_tokens: 20 };
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create(req);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

await check('aborting a stream (barge-in), then the server still answers', async () => {
  // ignore_eos (a locallm extension, passed through by the SDK): 2000 tokens unless cancelled (long enough that a fast machine cannot finish before the disconnect is seen);
  // test_openai_sdk.sh checks in the server log that far fewer were generated.
  const ac = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'tinychat', messages: [{ role: 'user', content: 'Tell me a long story.' }], temperature: 0, stream: true, max_tokens: 2000, ignore_eos: true },
    { signal: ac.signal },
  );
  let got = 0;
  for await (const c of stream) {
    if (c.choices[0]?.delta?.content) got++;
    if (got === 2) {
      ac.abort();
      break;
    }
  }
  assert.equal(got, 2);
  const r = await client.chat.completions.create({ model: 'tinychat', messages: FRANCE, temperature: 0 });
  assert.equal(r.choices[0].message.content, PARIS);
});

await check('a wrong API key: AuthenticationError, 401', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'not-the-key', maxRetries: 0 });
  await assert.rejects(
    bad.chat.completions.create({ model: 'tinychat', messages: FRANCE }),
    (e) => {
      assert.ok(e instanceof sdk.AuthenticationError, `got ${e && e.constructor && e.constructor.name}`);
      assert.equal(e.status, 401);
      assert.equal(e.code, 'invalid_api_key');
      assert.match(e.message, /API key/);
      return true;
    },
  );
  await assert.rejects(bad.models.list(), (e) => e instanceof sdk.AuthenticationError && e.status === 401);
});

await check('a bad request: BadRequestError, 400, with param', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'tinychat', messages: [] }), (e) => {
    assert.ok(e instanceof sdk.BadRequestError, `got ${e && e.constructor && e.constructor.name}`);
    assert.equal(e.status, 400);
    assert.equal(e.param, 'messages');
    assert.equal(e.type, 'invalid_request_error');
    return true;
  });
  await assert.rejects(
    client.chat.completions.create({ model: 'tinychat', messages: FRANCE, temperature: 5 }),
    (e) => e instanceof sdk.BadRequestError && e.param === 'temperature',
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'tinychat', messages: FRANCE, stream: true, max_tokens: 1e9 }),
    (e) => e instanceof sdk.BadRequestError && e.param === 'max_tokens',
  );
});

await check('the server still answers after the errors', async () => {
  const r = await client.chat.completions.create({ model: 'tinychat', messages: [{ role: 'user', content: 'What is 7 plus 5?' }], temperature: 0 });
  assert.equal(r.choices[0].message.content, '7 plus 5 is 12.');
});

console.log(`openai_sdk.mjs: ${nChecks()} checks passed (openai ${sdkVersion})`);
