// Command helpers: request shape, outcomes, GatewayError (429 retryAfterMs), polling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commands, connect, GatewayError } from '../src/client.js';
import { fakeFetch, fakeEventSourceClass } from './fakes.mjs';

const delivered = { version: '1.0', requestId: 'a'.repeat(32), traceId: 't1', kind: 'send-message', outcome: 'delivered', attempts: 1, latencyMs: 3, result: { messageId: '9' } };
const pending = { version: '1.0', requestId: 'b'.repeat(32), traceId: 't2', kind: 'send-message', outcome: 'pending', statusUrl: `/api/commands/${'b'.repeat(32)}` };

test('sendMessage POSTs JSON with the bearer token and resolves with the 200 outcome', async () => {
  const fetch = fakeFetch([{ status: 200, body: delivered }]);
  const c = commands({ fetch, token: 'tok', baseUrl: 'http://h/' });
  const out = await c.sendMessage({ channelId: '2', content: 'hi', nonce: 'n1' });
  assert.deepEqual(out, delivered);
  const [call] = fetch.calls;
  assert.equal(call.url, 'http://h/api/commands/send-message');
  assert.equal(call.method, 'POST');
  assert.equal(call.credentials, 'same-origin');
  assert.equal(call.headers.Authorization, 'Bearer tok');
  assert.equal(call.headers['Content-Type'], 'application/json');
  assert.deepEqual(call.body, { channelId: '2', content: 'hi', nonce: 'n1' });
});

test('addReaction and typingStart hit their routes; without a token no Authorization (cookie path)', async () => {
  const fetch = fakeFetch([{ status: 202, body: pending }, { status: 200, body: delivered }]);
  const c = commands({ fetch });
  assert.equal((await c.addReaction({ channelId: '2', messageId: '3', emoji: '🔥' })).outcome, 'pending');
  await c.typingStart({ channelId: '2' });
  assert.equal(fetch.calls[0].url, '/api/commands/add-reaction');
  assert.deepEqual(fetch.calls[0].body, { channelId: '2', messageId: '3', emoji: '🔥' });
  assert.equal(fetch.calls[1].url, '/api/commands/typing-start');
  assert.deepEqual(fetch.calls[1].body, { channelId: '2' });
  assert.equal(fetch.calls[0].headers.Authorization, undefined);
});

test('429 rejects with GatewayError carrying retryAfterMs from the body', async () => {
  const fetch = fakeFetch([{ status: 429, headers: { 'retry-after': '5' }, body: { version: '1.0', traceId: 't', error: { code: 'rate_limited', message: 'slow down', retryAfterMs: 4200 } } }]);
  const err = await commands({ fetch }).sendMessage({ channelId: '2', content: 'x' }).catch((e) => e);
  assert.ok(err instanceof GatewayError);
  assert.ok(err instanceof Error);
  assert.equal(err.status, 429);
  assert.equal(err.code, 'rate_limited');
  assert.equal(err.message, 'slow down');
  assert.equal(err.retryAfterMs, 4200);
  assert.equal(err.traceId, 't');
});

test('429 without error.retryAfterMs falls back to the Retry-After header', async () => {
  const fetch = fakeFetch([{ status: 429, headers: { 'retry-after': '3' }, body: { error: { code: 'rate_limited', message: 'm' } } }]);
  const err = await commands({ fetch }).typingStart({ channelId: '2' }).catch((e) => e);
  assert.equal(err.retryAfterMs, 3000);
});

test('400 carries the field errors; 422 carries requestId; a network failure is a GatewayError too', async () => {
  const fields = [{ field: 'channelId', code: 'invalid_snowflake', message: 'not a snowflake' }];
  const fetch = fakeFetch([
    { status: 400, body: { error: { code: 'validation_failed', message: 'bad', fields } } },
    { status: 422, body: { error: { code: 'rejected', message: 'no', requestId: 'r1', outcome: 'rejected', upstreamCode: 'not-found' } } },
    new TypeError('connection refused'),
    { status: 502 },
  ]);
  const c = commands({ fetch });
  const e400 = await c.sendMessage({ channelId: 'x', content: 'y' }).catch((e) => e);
  assert.deepEqual([e400.status, e400.code, e400.fields], [400, 'validation_failed', fields]);
  assert.equal(e400.retryAfterMs, null);
  const e422 = await c.sendMessage({ channelId: '1', content: 'y' }).catch((e) => e);
  assert.deepEqual([e422.code, e422.requestId, e422.details.upstreamCode], ['rejected', 'r1', 'not-found']);
  const eNet = await c.sendMessage({ channelId: '1', content: 'y' }).catch((e) => e);
  assert.deepEqual([eNet.status, eNet.code], [0, 'network_error']);
  const e502 = await c.sendMessage({ channelId: '1', content: 'y' }).catch((e) => e);
  assert.deepEqual([e502.status, e502.code], [502, 'http_502']);
});

test('waitForOutcome polls GET /api/commands/{id} until terminal', async () => {
  const fetch = fakeFetch([{ status: 200, body: pending }, { status: 200, body: pending }, { status: 200, body: { ...pending, outcome: 'expired', attempts: 0 } }]);
  const c = commands({ fetch, setTimeout: (fn) => queueMicrotask(fn) });
  const out = await c.waitForOutcome(pending.requestId, { intervalMs: 10 });
  assert.equal(out.outcome, 'expired');
  assert.equal(fetch.calls.length, 3);
  assert.equal(fetch.calls[0].method, 'GET');
  assert.equal(fetch.calls[0].url, `/api/commands/${pending.requestId}`);
});

test('waitForOutcome is bounded', async () => {
  const fetch = fakeFetch(Array.from({ length: 3 }, () => ({ status: 200, body: pending })));
  const c = commands({ fetch, setTimeout: (fn) => queueMicrotask(fn) });
  const err = await c.waitForOutcome('r', { maxPolls: 3 }).catch((e) => e);
  assert.equal(err.code, 'timeout');
  assert.equal(fetch.calls.length, 3);
});

test('a connect() client has the command helpers, aimed at the stream\'s origin', async () => {
  const fetch = fakeFetch([{ status: 200, body: delivered }, { status: 200, body: delivered }]);
  const client = connect({ EventSource: fakeEventSourceClass(), fetch, token: 't' });
  assert.equal((await client.sendMessage({ channelId: '2', content: 'hi' })).outcome, 'delivered');
  assert.equal(fetch.calls[0].url, '/api/commands/send-message');
  client.close();
  const remote = connect({ EventSource: fakeEventSourceClass(), fetch, url: 'https://gw.example:8443/api/stream' });
  await remote.typingStart({ channelId: '2' });
  assert.equal(fetch.calls[1].url, 'https://gw.example:8443/api/commands/typing-start');
  remote.close();
});

test('the helpers work detached from their object', async () => {
  const fetch = fakeFetch([{ status: 200, body: pending }, { status: 200, body: delivered }]);
  const { waitForOutcome } = commands({ fetch, setTimeout: (fn) => queueMicrotask(fn) });
  assert.equal((await waitForOutcome('r')).outcome, 'delivered');
});
