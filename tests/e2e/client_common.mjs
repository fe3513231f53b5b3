// tests/e2e/client_common.mjs: what ollama_client.mjs and openai_sdk.mjs share: the tinychat
// conversation and its greedy reply (models/tinychat/refs.json), the two tools, and the check
// runner that numbers each passed check and stops the process at the first failure.
// Imported by path from the same folder; no npm package needed.

export const SYS = { role: 'system', content: 'You are a helpful voice assistant.' };
export const FRANCE = [SYS, { role: 'user', content: 'What is the capital of France?' }];
export const PARIS = 'The capital of France is Paris.';
export const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Get the current weather in a city.',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', description: 'The name of the city, e.g. Paris' } },
        required: ['city'],
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_time',
      description: 'Get the current local time in a city.',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', description: 'The name of the city, e.g. Tokyo' } },
        required: ['city'],
      },
    },
  },
];

let n = 0;
// check(name, fn): awaits fn; prints "ok N - name", or "FAIL: name: stack" and exits 1.
export async function check(name, fn) {
  try {
    await fn();
  } catch (e) {
    console.error(`FAIL: ${name}: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
  n++;
  console.log(`ok ${n} - ${name}`);
}

// How many checks have passed so far.
export function nChecks() {
  return n;
}
