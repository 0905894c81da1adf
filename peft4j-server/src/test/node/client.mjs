// Drives a running peft4j serve with the official OpenAI Node library: node client.mjs BASE_URL API_KEY
// Prints one line per check and "ALL OK" at the end; exits non-zero on the first failure.
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });

const models = await client.models.list();
const ids = models.data.map((m) => m.id);
assert.ok(ids.includes('tiny') && ids.includes('lora') && ids.includes('pt'), `models: ${ids}`);
assert.equal(models.data.find((m) => m.id === 'lora').parent, 'tiny');
console.log('models ok', ids.join(','));

const c = await client.completions.create({ model: 'lora', prompt: 'Hello there', max_tokens: 5, temperature: 0, logprobs: 2, ignore_eos: true });
assert.equal(c.object, 'text_completion');
assert.equal(c.choices[0].finish_reason, 'length');
assert.equal(c.choices[0].logprobs.tokens.length, 5);
assert.equal(c.choices[0].logprobs.token_logprobs.length, 5);
assert.ok(Object.keys(c.choices[0].logprobs.top_logprobs[0]).length >= 1);
assert.equal(c.usage.completion_tokens, 5);
console.log('completion ok', JSON.stringify(c.choices[0].text));

const echo = await client.completions.create({ model: 'tiny', prompt: [[2, 40, 41, 42]], max_tokens: 0, echo: true, logprobs: 1, temperature: 0 });
assert.equal(echo.choices[0].logprobs.token_logprobs[0], null);
assert.equal(echo.choices[0].logprobs.token_logprobs.length, 4);
console.log('echo logprobs ok');

let streamed = '';
let finish = null;
const cs = await client.completions.create({ model: 'lora', prompt: 'Hello there', max_tokens: 5, temperature: 0, ignore_eos: true, stream: true });
for await (const chunk of cs) {
  streamed += chunk.choices[0]?.text ?? '';
  finish = chunk.choices[0]?.finish_reason ?? finish;
}
assert.equal(streamed, c.choices[0].text);
assert.equal(finish, 'length');
console.log('completion stream ok');

const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name a color.' }];
const chat = await client.chat.completions.create({ model: 'pt', messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 });
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices[0].message.role, 'assistant');
assert.equal(typeof chat.choices[0].message.content, 'string');
assert.ok(chat.choices[0].logprobs.content.length >= 1);
assert.equal(chat.choices[0].logprobs.content[0].top_logprobs.length, 2);
console.log('chat ok', JSON.stringify(chat.choices[0].message.content));

let chatText = '';
let usage = null;
const stream = await client.chat.completions.create({ model: 'pt', messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  chatText += chunk.choices[0]?.delta?.content ?? '';
}
assert.equal(chatText, chat.choices[0].message.content);
assert.equal(usage.completion_tokens, chat.usage.completion_tokens);
console.log('chat stream ok');

await assert.rejects(client.completions.create({ model: 'no-such-model', prompt: 'x', max_tokens: 1 }), (e) => e.status === 404 && e.code === 'model_not_found');
await assert.rejects(client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: -1 }), (e) => e.status === 400 && e.param === 'max_tokens');
const bad = new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 });
await assert.rejects(bad.models.list(), (e) => e.status === 401);
console.log('errors ok');
console.log('ALL OK');
