// connect(): the URL, typed dispatch, de-duplication, own reconnects with lastEventId and
// backoff, browser reconnects, reset and shutdown handling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, backoffDelay } from '../src/client.js';
import { fakeEventSourceClass, manualTimers } from './fakes.mjs';

function setup(extra = {}) {
  const ES = fakeEventSourceClass();
  const timers = manualTimers();
  const client = connect({ EventSource: ES, setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout, ...extra });
  return { ES, timers, client };
}

const env = (id, type, data = {}) => ({ version: '1.0', id, type, traceId: 'x', data });

test('one EventSource carries every topic in ?topics=', () => {
  const { ES } = setup({ topics: ['guild:1', 'voice:1', 'channel:2', 'guild:*'] });
  assert.equal(ES.instances.length, 1);
  assert.equal(ES.last.url, '/api/stream?topics=guild:1,voice:1,channel:2,guild:*');
});

test('a first connect can resume with ?lastEventId=, and the token is offered as a header', () => {
  const { ES } = setup({ url: 'http://h/api/stream?x=1', topics: ['a b'], lastEventId: '17-4', token: 'tok' });
  assert.equal(ES.last.url, 'http://h/api/stream?x=1&topics=a%20b&lastEventId=17-4');
  assert.deepEqual(ES.last.init.headers, { Authorization: 'Bearer tok' });
});

test('handlers are typed per event name; * hears every type; types added later are listened to', () => {
  const { ES, client } = setup();
  const got = { msg: [], typing: [], all: [], app: [] };
  client.on('MESSAGE_CREATE', (e) => got.msg.push(e.id));
  client.on('TYPING_START', (e) => got.typing.push(e.id));
  client.on('*', (e) => got.all.push(e.type));
  ES.last.open();
  ES.last.emit('MESSAGE_CREATE', env('1-1', 'MESSAGE_CREATE', { content: 'hi' }), '1-1');
  ES.last.emit('TYPING_START', env('1-2', 'TYPING_START'), '1-2');
  ES.last.emit('APP_SCORE', env('1-3', 'APP_SCORE'), '1-3'); // no listener yet: not delivered
  client.on('APP_SCORE', (e) => got.app.push(e.data));
  ES.last.emit('APP_SCORE', env('1-4', 'APP_SCORE', { n: 1 }), '1-4');
  assert.deepEqual(got.msg, ['1-1']);
  assert.deepEqual(got.typing, ['1-2']);
  assert.deepEqual(got.app, [{ n: 1 }]);
  assert.deepEqual(got.all, ['MESSAGE_CREATE', 'TYPING_START', 'APP_SCORE']);
  assert.equal(client.lastEventId, '1-4');
});

test('unsubscribe stops delivery; a throwing handler does not stop the others', () => {
  const { ES, client } = setup();
  const seen = [];
  const saved = console.error;
  console.error = () => {};
  try {
    client.on('MESSAGE_CREATE', () => { throw new Error('boom'); });
    const off = client.on('MESSAGE_CREATE', (e) => seen.push(e.id));
    ES.last.emit('MESSAGE_CREATE', env('1-1', 'MESSAGE_CREATE'), '1-1');
    off();
    ES.last.emit('MESSAGE_CREATE', env('1-2', 'MESSAGE_CREATE'), '1-2');
  } finally {
    console.error = saved;
  }
  assert.deepEqual(seen, ['1-1']);
});

test('the same id is never delivered twice, even across our own reconnect', () => {
  const { ES, timers, client } = setup();
  const seen = [];
  client.on('*', (e) => seen.push(e.id));
  ES.last.open();
  ES.last.emit('MESSAGE_CREATE', env('5-1', 'MESSAGE_CREATE'), '5-1');
  ES.last.emit('MESSAGE_CREATE', env('5-1', 'MESSAGE_CREATE'), '5-1');
  ES.last.emit('MESSAGE_CREATE', env('5-2', 'MESSAGE_CREATE'), '5-2');
  ES.last.fail(2);
  timers.fireAll();
  ES.last.open();
  ES.last.emit('MESSAGE_CREATE', env('5-2', 'MESSAGE_CREATE'), '5-2'); // replayed overlap
  ES.last.emit('MESSAGE_CREATE', env('5-3', 'MESSAGE_CREATE'), '5-3');
  assert.deepEqual(seen, ['5-1', '5-2', '5-3']);
});

test('after the EventSource gives up, we reconnect with ?lastEventId= and exponential backoff', () => {
  const { ES, timers, client } = setup({ topics: ['guild:1'], random: () => 1, backoff: { baseMs: 1000, capMs: 8000 } });
  const states = [];
  client.on('state', (s, info) => states.push([s, info.delayMs ?? null]));
  ES.last.open();
  ES.last.emit('MESSAGE_CREATE', env('9-7', 'MESSAGE_CREATE'), '9-7');
  const delays = [];
  for (let i = 0; i < 5; i++) {
    ES.last.fail(2);
    assert.ok(ES.last.closed, 'the dead EventSource is closed');
    assert.equal(timers.pending.length, 1, 'exactly one reconnect is scheduled');
    delays.push(timers.delays()[0]);
    timers.fireAll();
    assert.equal(ES.last.url, '/api/stream?topics=guild:1&lastEventId=9-7');
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 8000], 'doubling, capped');
  assert.equal(ES.instances.length, 6);
  // Once a connection opens the backoff starts over.
  ES.last.open();
  ES.last.fail(2);
  assert.deepEqual(timers.delays(), [1000]);
  assert.deepEqual(states.slice(0, 3), [['open', null], ['reconnecting', 1000], ['reconnecting', 2000]]);
});

test('backoff is jittered within [d/2, d]', () => {
  assert.equal(backoffDelay(0, { random: () => 0 }), 500);
  assert.equal(backoffDelay(0, { random: () => 1 }), 1000);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 6000);
  assert.equal(backoffDelay(50, { random: () => 1 }), 30000);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(2);
    assert.ok(d >= 2000 && d <= 4000, `${d}`);
  }
});

test("the browser's own reconnect (readyState CONNECTING) is left to the browser", () => {
  const { ES, timers, client } = setup();
  ES.last.open();
  ES.last.fail(0);
  assert.equal(client.state, 'reconnecting');
  assert.equal(timers.pending.length, 0);
  assert.equal(ES.instances.length, 1);
  ES.last.open();
  assert.equal(client.state, 'open');
});

test('reset is delivered with its body; a reset carrying an id moves the resume point', () => {
  const { ES, timers, client } = setup();
  const resets = [];
  client.on('reset', (r) => resets.push(r));
  ES.last.open();
  ES.last.emit('MESSAGE_CREATE', env('1-1', 'MESSAGE_CREATE'), '1-1');
  ES.last.emit('reset', { version: '1.0', type: 'reset', lastEventId: '0-3', reason: 'the id is from another host epoch', oldestAvailable: null });
  assert.equal(resets.length, 1);
  assert.equal(resets[0].reason, 'the id is from another host epoch');
  assert.equal(client.lastEventId, '1-1');
  ES.last.emit('reset', { type: 'reset', reason: 'events were lost' }, '2-40');
  assert.equal(resets.length, 2);
  assert.equal(client.lastEventId, '2-40');
  ES.last.fail(2);
  timers.fireAll();
  assert.match(ES.last.url, /lastEventId=2-40$/);
});

test('shutdown: the handler runs, and we reconnect and resume by id', () => {
  const { ES, timers, client } = setup({ random: () => 0 });
  let shutdowns = 0;
  client.on('shutdown', () => { shutdowns += 1; });
  ES.last.open();
  ES.last.emit('MESSAGE_CREATE', env('3-3', 'MESSAGE_CREATE'), '3-3');
  const first = ES.last;
  first.emit('shutdown', '{}');
  assert.equal(shutdowns, 1);
  assert.ok(first.closed);
  assert.equal(client.state, 'reconnecting');
  assert.deepEqual(timers.delays(), [500]);
  timers.fireAll();
  assert.notEqual(ES.last, first);
  assert.equal(ES.last.url, '/api/stream?lastEventId=3-3');
  // Events from the old, closed EventSource are ignored.
  first.emit('MESSAGE_CREATE', env('3-9', 'MESSAGE_CREATE'), '3-9');
  assert.equal(client.lastEventId, '3-3');
});

test('close() stops for good', () => {
  const { ES, timers, client } = setup();
  ES.last.open();
  ES.last.fail(2);
  client.close();
  assert.equal(client.state, 'closed');
  assert.equal(timers.pending.length, 0);
  assert.equal(ES.instances.length, 1);
});
