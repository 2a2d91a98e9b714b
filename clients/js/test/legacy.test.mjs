// legacySource(): the /api/ws protocol v1 behind the same interface as connect().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { legacySource, voiceChannel } from '../src/client.js';
import { fakeWebSocketClass, manualTimers, voiceState } from './fakes.mjs';

const G = '111', C = '222';

function setup(extra = {}) {
  const WS = fakeWebSocketClass();
  const timers = manualTimers();
  const src = legacySource({ url: 'http://h/api/ws', token: 'tok', WebSocket: WS, random: () => 1, ...timers, setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout, ...extra });
  return { WS, timers, src };
}

// The legacy frame: the SSE envelope's fields without id/version (the protocol has no ids).
const eventFrame = ({ id, version, ...env }) => ({ v: 1, op: 'event', ...env });

test('connects with the gateway.v1 and bearer subprotocols, joins once open', () => {
  const { WS, src } = setup();
  assert.equal(WS.last.url, 'ws://h/api/ws');
  assert.deepEqual(WS.last.protocols, ['gateway.v1', 'bearer.tok']);
  src.join(G);
  assert.deepEqual(WS.last.sent, [], 'nothing is sent before open');
  WS.last.open();
  WS.last.frame({ v: 1, op: 'hello', user: '42', heartbeatMs: 30000, protocol: 1 });
  assert.deepEqual(WS.last.ops('join'), [{ v: 1, op: 'join', guildId: G }]);
  assert.equal(src.state, 'open');
  assert.equal(src.user, '42');
});

test('event frames are relayed as the same envelopes the SSE client delivers', () => {
  const { WS, src } = setup();
  const got = [];
  src.on('VOICE_STATE_UPDATE', (e) => got.push(e));
  src.on('*', (e) => got.push(e.type));
  WS.last.open();
  const env = voiceState(G, C, 'u1');
  WS.last.frame(eventFrame(env));
  WS.last.frame({ v: 1, op: 'unknown-op' });
  WS.last.onmessage({ data: 'not json' });
  assert.equal(got.length, 2);
  assert.equal(got[0].traceId, env.traceId);
  assert.equal(got[0].guildId, G);
  assert.deepEqual(got[0].data, env.data);
  assert.equal(got[0].op, undefined);
  assert.equal(got[1], 'VOICE_STATE_UPDATE');
});

test('joins are reference-counted; the last leave sends leave', () => {
  const { WS, src } = setup();
  WS.last.open();
  src.join(G);
  src.join(G);
  src.leave(G);
  assert.equal(WS.last.ops('leave').length, 0);
  src.leave(G);
  assert.deepEqual(WS.last.ops('join').length, 1);
  assert.deepEqual(WS.last.ops('leave'), [{ v: 1, op: 'leave', guildId: G }]);
});

test('ping keepalive at the host heartbeat; a missing pong closes and reconnects', () => {
  const { WS, timers, src } = setup();
  WS.last.open();
  WS.last.frame({ v: 1, op: 'hello', user: '42', heartbeatMs: 5000, protocol: 1 });
  assert.deepEqual(timers.delays(), [5000]);
  timers.fireAll();
  const [ping] = WS.last.ops('ping');
  assert.ok(ping.nonce);
  WS.last.frame({ v: 1, op: 'pong', nonce: ping.nonce });
  timers.fireAll();
  assert.equal(WS.last.ops('ping').length, 2, 'answered: the next ping goes out');
  const first = WS.last;
  timers.fireAll(); // the second ping was never answered
  assert.equal(first.closedWith.code, 4000);
  assert.equal(src.state, 'reconnecting');
});

test('a dropped socket emits reset, reconnects with backoff and joins its guilds again', () => {
  const { WS, timers, src } = setup({ pingIntervalMs: 60000 });
  const resets = [];
  const states = [];
  src.on('reset', (r) => resets.push(r));
  src.on('state', (s, i) => states.push([s, i.delayMs ?? null]));
  src.join(G);
  WS.last.open();
  WS.last.drop(1006);
  assert.equal(resets.length, 1);
  assert.equal(WS.instances.length, 1);
  assert.deepEqual(timers.delays(), [1000]);
  timers.fireAll();
  assert.equal(WS.instances.length, 2);
  WS.last.drop(1006); // never opened: no second reset, a longer wait
  assert.equal(resets.length, 1);
  assert.deepEqual(timers.delays(), [2000]);
  timers.fireAll();
  WS.last.open();
  assert.deepEqual(WS.last.ops('join'), [{ v: 1, op: 'join', guildId: G }]);
  assert.deepEqual(states, [['open', null], ['reconnecting', 1000], ['reconnecting', 2000], ['open', null]]);
});

test('voiceChannel over the legacy socket: join, members, and stale after a drop', () => {
  const { WS, timers, src } = setup({ pingIntervalMs: 60000 });
  const vc = voiceChannel(src, G, C);
  WS.last.open();
  assert.deepEqual(WS.last.ops('join'), [{ v: 1, op: 'join', guildId: G }]);
  WS.last.frame(eventFrame(voiceState(G, C, 'u1')));
  WS.last.frame(eventFrame(voiceState(G, C, 'u1', { self_mute: true })));
  assert.deepEqual(vc.members.map((m) => [m.userId, m.selfMute, m.stale]), [['u1', true, false]]);
  WS.last.drop();
  assert.equal(vc.members[0].stale, true);
  timers.fireAll();
  WS.last.open();
  WS.last.frame(eventFrame(voiceState(G, C, 'u1', { self_mute: true })));
  assert.equal(vc.members[0].stale, false);
  vc.close();
  assert.deepEqual(WS.last.ops('leave'), [{ v: 1, op: 'leave', guildId: G }]);
  src.close();
  assert.equal(src.state, 'closed');
  assert.equal(WS.last.closedWith.code, 1000);
  assert.equal(timers.pending.length, 0);
});

test('error frames surface as GatewayError', () => {
  const { WS, src } = setup();
  const errors = [];
  src.on('error', (e) => errors.push(e));
  WS.last.open();
  WS.last.frame({ v: 1, op: 'error', code: 'forbidden_guild', message: 'not granted', guildId: G });
  assert.equal(errors[0].code, 'forbidden_guild');
  assert.equal(errors[0].details.guildId, G);
});
