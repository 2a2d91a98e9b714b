// useVoiceChannelEvents with react-test-renderer: members update on events, state follows
// the source, and the subscription is cleaned up on unmount and on a channel change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import React from 'react';
import TestRenderer from 'react-test-renderer';
import { useVoiceChannelEvents } from '../src/react.js';
import { fakeSource, voiceState } from './fakes.mjs';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;
const G = '111', C = '222', C2 = '444';

/** Renders the hook and exposes its latest result. */
function mount(props) {
  const seen = { current: null, renders: 0 };
  function Probe({ guildId, channelId, source }) {
    seen.current = useVoiceChannelEvents(guildId, channelId, { source, rejoinWindowMs: 60000 });
    seen.renders += 1;
    return React.createElement('ul', null,
      seen.current.members.map((m) => React.createElement('li', { key: m.userId }, m.username)));
  }
  let renderer;
  act(() => { renderer = TestRenderer.create(React.createElement(Probe, props)); });
  return { seen, renderer, update: (p) => act(() => renderer.update(React.createElement(Probe, p))) };
}

test('members, events and dropouts follow VOICE_STATE_UPDATEs', () => {
  const src = fakeSource();
  const { seen, renderer } = mount({ guildId: G, channelId: C, source: src });
  assert.deepEqual(seen.current.members, []);
  assert.equal(seen.current.state, 'open');
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u1')));
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u2')));
  assert.deepEqual(seen.current.members.map((m) => m.userId), ['u1', 'u2']);
  assert.deepEqual(renderer.toJSON().children.map((li) => li.children[0]), ['useru1', 'useru2']);
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u1', { self_mute: true })));
  assert.equal(seen.current.members[0].selfMute, true);
  assert.deepEqual(seen.current.events.at(-1).changed, { selfMute: { from: false, to: true } });
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, null, 'u2')));
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u2')));
  assert.equal(seen.current.dropouts.length, 1);
  assert.equal(seen.current.dropouts[0].userId, 'u2');
  assert.deepEqual(seen.current.events.map((e) => e.type), ['join', 'join', 'update', 'leave', 'join', 'dropout']);
  act(() => src.emit('state', 'reconnecting', {}));
  assert.equal(seen.current.state, 'reconnecting');
  act(() => src.emit('reset', { reason: 'lost' }));
  assert.ok(seen.current.members.every((m) => m.stale));
  act(() => renderer.unmount());
});

test('unmount unsubscribes and leaves the guild; no render after unmount', () => {
  const src = fakeSource();
  const { seen, renderer } = mount({ guildId: G, channelId: C, source: src });
  assert.equal(src.count('VOICE_STATE_UPDATE'), 1);
  assert.equal(src.count('state'), 1);
  assert.deepEqual(src.joins, [G]);
  act(() => renderer.unmount());
  assert.equal(src.count('VOICE_STATE_UPDATE'), 0);
  assert.equal(src.count('reset'), 0);
  assert.equal(src.count('state'), 0);
  assert.deepEqual(src.leaves, [G]);
  const renders = seen.renders;
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u1')));
  assert.equal(seen.renders, renders);
});

test('a channel change re-subscribes: the old channel is dropped, the new one starts empty', () => {
  const src = fakeSource();
  const { seen, update, renderer } = mount({ guildId: G, channelId: C, source: src });
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u1')));
  assert.equal(seen.current.members.length, 1);
  update({ guildId: G, channelId: C2, source: src });
  assert.deepEqual(seen.current.members, []);
  assert.equal(src.count('VOICE_STATE_UPDATE'), 1, 'exactly one live subscription');
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, C, 'u9')));
  assert.deepEqual(seen.current.members, []);
  act(() => src.emit('VOICE_STATE_UPDATE', voiceState(G, C2, 'u3')));
  assert.deepEqual(seen.current.members.map((m) => m.userId), ['u3']);
  assert.deepEqual(src.joins, [G, G]);
  assert.deepEqual(src.leaves, [G]);
  act(() => renderer.unmount());
});

test('without a source the hook is idle', () => {
  const { seen, renderer } = mount({ guildId: G, channelId: C, source: undefined });
  assert.deepEqual(seen.current, { members: [], events: [], dropouts: [], state: 'closed' });
  act(() => renderer.unmount());
});
