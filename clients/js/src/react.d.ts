import type { ConnectionState, EventSourceLike, VoiceDropout, VoiceEvent, VoiceMember, VoiceOptions } from './client.js';

export interface UseVoiceChannelOptions extends Omit<VoiceOptions, 'now'> {
  /** A connect() client (subscribed to voice:<guildId>) or a legacySource(). */
  source?: EventSourceLike;
  /** Same as `source`, for a connect() client. */
  client?: EventSourceLike;
}

export interface VoiceChannelEvents {
  members: VoiceMember[];
  /** The most recent events, oldest first (bounded by maxEvents). */
  events: VoiceEvent[];
  dropouts: VoiceDropout[];
  /** The source's connection state ('closed' without a source). */
  state: ConnectionState;
}

export declare function useVoiceChannelEvents(
  guildId: string | null | undefined,
  channelId: string | null | undefined,
  options?: UseVoiceChannelOptions,
): VoiceChannelEvents;
