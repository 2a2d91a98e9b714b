// voiceChannel(): members from VOICE_STATE_UPDATE, join/leave/update, dropouts, stale.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { voiceChannel, connect } from '../src/client.js';
import { fakeSource, voiceState, clock, fakeEventSourceClass } from './fakes.mjs';

const G = '111', C = '222', OTHER = '333';

function setup(opts = {}) {
  const src = fakeSource();
  const now = clock();
  const vc = voiceChannel(src, G, C, { now, ...opts });
  const log = [];
  for (const t of ['join', 'leave', 'update', 'dropout', 'stale']) vc.on(t, (e) => log.push([t, e]));
  const send = (...a) => src.emit('VOICE_STATE_UPDATE', voiceState(...a));
  return { src, now, vc, log, send };
}

test('join, mute/deaf update with what changed, leave', () => {
  const { vc, log, send } = setup();
  send(G, C, 'u1');
  send(G, C, 'u2');
  assert.deepEqual(vc.members.map((m) => m.userId), ['u1', 'u2']);
  assert.equal(vc.members[0].username, 'useru1');
  send(G, C, 'u1', { self_mute: true, deaf: true });
  send(G, C, 'u1', { self_mute: true, deaf: true }); // same state again: no update
  send(G, null, 'u2');
  assert.deepEqual(log.map(([t, e]) => [t, e.userId]), [['join', 'u1'], ['join', 'u2'], ['update', 'u1'], ['leave', 'u2']]);
  const update = log[2][1];
  assert.deepEqual(update.changed, { selfMute: { from: false, to: true }, deaf: { from: false, to: true } });
  assert.equal(update.member.selfMute, true);
  assert.equal(log[3][1].reason, 'disconnected');
  assert.deepEqual(vc.members.map((m) => m.userId), ['u1']);
  assert.equal(vc.members[0].selfMute, true);
});

test('other guilds, other channels and other event types are ignored', () => {
  const { vc, src, log, send } = setup();
  send('999', C, 'u1');
  send(G, OTHER, 'u1');
  send(G, null, 'u1'); // never was here: no leave
  src.emit('VOICE_STATE_UPDATE', { type: 'VOICE_STATE_UPDATE', data: null });
  assert.equal(vc.members.length, 0);
  assert.equal(log.length, 0);
});

test('a disconnect and return within rejoinWindowMs is a dropout with its gap', () => {
  const { vc, log, send, now } = setup({ rejoinWindowMs: 15000 });
  send(G, C, 'u1');
  send(G, null, 'u1');
  now.advance(4200);
  send(G, C, 'u1');
  const kinds = log.map(([t]) => t);
  assert.deepEqual(kinds, ['join', 'leave', 'join', 'dropout']);
  const [, dropout] = log[3];
  assert.equal(dropout.userId, 'u1');
  assert.equal(dropout.gapMs, 4200);
  assert.equal(log[2][1].rejoin, true);
  assert.equal(vc.dropouts.length, 1);
  assert.equal(vc.members.length, 1);
});

test('a return after the window, or after moving to another channel, is no dropout', () => {
  const { log, send, now } = setup({ rejoinWindowMs: 15000 });
  send(G, C, 'u1');
  send(G, null, 'u1');
  now.advance(15001);
  send(G, C, 'u1');
  send(G, OTHER, 'u1'); // moved away on purpose
  now.advance(1000);
  send(G, C, 'u1');
  assert.deepEqual(log.map(([t, e]) => [t, e.reason ?? e.rejoin]), [
    ['join', false], ['leave', 'disconnected'], ['join', false], ['leave', 'moved'], ['join', false],
  ]);
});

test('a reset marks every member stale until a fresh state arrives', () => {
  const { vc, src, log, send } = setup();
  send(G, C, 'u1');
  send(G, C, 'u2');
  src.emit('reset', { type: 'reset', reason: 'the id is older than the replay ring' });
  assert.deepEqual(vc.members.map((m) => m.stale), [true, true]);
  const stale = log.find(([t]) => t === 'stale')[1];
  assert.deepEqual(stale.userIds, ['u1', 'u2']);
  assert.equal(stale.reason, 'the id is older than the replay ring');
  send(G, C, 'u2', { self_deaf: true });
  assert.deepEqual(vc.members.map((m) => [m.userId, m.stale]), [['u1', true], ['u2', false]]);
  // A leave that was missed before the reset cannot be turned into a dropout afterwards.
  send(G, null, 'u2');
  src.emit('reset', {});
  send(G, C, 'u2');
  assert.equal(log.filter(([t]) => t === 'dropout').length, 0);
});

test('seed() replaces the list after a refetch; members not listed leave', () => {
  const { vc, src, log } = setup();
  src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u1'));
  src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u2'));
  src.emit('reset', {});
  vc.seed([voiceState(G, C, 'u2').data, voiceState(G, C, 'u3').data]);
  assert.deepEqual(vc.members.map((m) => [m.userId, m.stale]), [['u2', false], ['u3', false]]);
  assert.deepEqual(log.filter(([t]) => t === 'leave').map(([, e]) => [e.userId, e.reason]), [['u1', 'resync']]);
});

test('events are a bounded recent list; close() unsubscribes and leaves the guild', () => {
  const { vc, src, send } = setup({ maxEvents: 3 });
  for (let i = 0; i < 10; i++) send(G, C, `u${i}`);
  assert.equal(vc.events.length, 3);
  assert.deepEqual(vc.events.map((e) => e.userId), ['u7', 'u8', 'u9']);
  assert.deepEqual(src.joins, [G]);
  assert.equal(src.count('VOICE_STATE_UPDATE'), 1);
  vc.close();
  assert.equal(src.count('VOICE_STATE_UPDATE'), 0);
  assert.equal(src.count('reset'), 0);
  assert.deepEqual(src.leaves, [G]);
});

test('over the SSE client: a stream reset marks members stale', () => {
  const ES = fakeEventSourceClass();
  const client = connect({ EventSource: ES, topics: [`voice:${G}`] });
  const vc = voiceChannel(client, G, C);
  ES.last.open();
  const s = voiceState(G, C, 'u1');
  ES.last.emit('VOICE_STATE_UPDATE', s, s.id);
  ES.last.emit('VOICE_STATE_UPDATE', s, s.id); // de-duplicated by the client
  assert.equal(vc.events.length, 1);
  assert.deepEqual(vc.members.map((m) => m.userId), ['u1']);
  ES.last.emit('reset', { type: 'reset', reason: 'events were lost' });
  assert.equal(vc.members[0].stale, true);
  client.close();
});

test('a client whose topics cannot carry voice:<guild> is refused at once', () => {
  const client = connect({ EventSource: fakeEventSourceClass(), topics: ['channel:5'] });
  assert.throws(() => voiceChannel(client, G, C), /voice:111/);
  const wide = connect({ EventSource: fakeEventSourceClass(), topics: ['voice:*'] });
  assert.doesNotThrow(() => voiceChannel(wide, G, C));
});
