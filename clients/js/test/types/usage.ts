// Compiled by test/types.test.mjs (tsc --noEmit): the hand-written .d.ts files describe a
// usable API. Never run.
import { connect, commands, legacySource, voiceChannel, GatewayError, type GatewayEvent, type VoiceMember } from '@gateway-host/client';
import { useVoiceChannelEvents } from '@gateway-host/client/react';

const client = connect({ topics: ['guild:1', 'voice:1'], lastEventId: '1-2' });
const off: () => void = client.on<{ content: string }>('MESSAGE_CREATE', (e: GatewayEvent<{ content: string }>) => {
  const text: string = e.data.content;
  void text;
});
off();
client.on('reset', (r) => { const why: string | undefined = r.reason; void why; });
client.on('state', (s, info) => { const st: 'connecting' | 'open' | 'reconnecting' | 'closed' = s; void st; void info.delayMs; });

async function send(): Promise<void> {
  try {
    const out = await client.sendMessage({ channelId: '2', content: 'hi' });
    if (out.outcome === 'pending') await client.waitForOutcome(out.requestId, { timeoutMs: 10_000 });
  } catch (e) {
    if (e instanceof GatewayError && e.status === 429) {
      const ms: number | null = e.retryAfterMs;
      void ms;
    }
  }
  await commands({ token: 't' }).addReaction({ channelId: '2', messageId: '3', emoji: 'x:4' });
}
void send;

const legacy = legacySource({ url: '/api/ws', token: 't' });
const vc = voiceChannel(legacy, '1', '2', { rejoinWindowMs: 10_000 });
vc.on('dropout', (d) => { const gap: number = d.gapMs; void gap; });
vc.on('update', (u) => { void u.changed.selfMute?.to; });
const members: VoiceMember[] = vc.members;
void members;

export function Panel(): number {
  const { members: m, dropouts, state } = useVoiceChannelEvents('1', '2', { client });
  void dropouts; void state;
  return m.length;
}
