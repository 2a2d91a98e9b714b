// Types for @gateway-host/client (hand-written; the module is plain JavaScript).

/** Discord v10 dispatch names an `on('*')` handler hears without registering them. */
export declare const KNOWN_EVENT_TYPES: readonly string[];

/** One event as the stream delivers it (the `data:` line of docs/stream.md). */
export interface GatewayEvent<D = any> {
  version: '1.0';
  /** The host's id, `<epoch>-<seq>`. */
  id: string;
  type: string;
  traceId: string;
  guildId: string | null;
  channelId: string | null;
  /** Upstream emission time, ms since the Unix epoch. */
  timestamp: number;
  upstreamSession?: string;
  upstreamSeq?: number;
  /** The Discord payload (or the router's redacted replacement). */
  data: D;
}

/** The body of `event: reset`: the resume point could not be placed, or events were lost. */
export interface ResetInfo {
  version?: '1.0';
  type: 'reset';
  lastEventId?: string;
  reason?: string;
  oldestAvailable?: string | null;
  [key: string]: unknown;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StateInfo {
  /** Set when we scheduled our own reconnect. */
  delayMs?: number;
  attempt?: number;
}

export interface FieldError {
  field: string;
  code: string;
  message: string;
}

/** Every failed request, flattened from `{"error": {...}}`. */
export declare class GatewayError extends Error {
  name: 'GatewayError';
  /** HTTP status; 0 for a network failure or a client-side timeout. */
  status: number;
  /** `error.code` (`rate_limited`, `validation_failed`, …), or `network_error`, `timeout`, `http_<status>`. */
  code: string;
  fields: FieldError[];
  /** From `error.retryAfterMs`, else the `Retry-After` header; null when neither. Set on every 429. */
  retryAfterMs: number | null;
  requestId: string | null;
  traceId: string | null;
  /** The whole `error` object (e.g. `upstreamCode`, `outcome`, `attempts`). */
  details: Record<string, unknown> | null;
  constructor(init?: Partial<Pick<GatewayError, 'status' | 'code' | 'message' | 'fields' | 'retryAfterMs' | 'requestId' | 'traceId' | 'details'>>);
  static fromResponse(response: Response, body: unknown): GatewayError;
}

export type CommandKind = 'send-message' | 'add-reaction' | 'typing-start';

/** 200 (`delivered`), 202 (`pending`), or a polled outcome. */
export interface CommandOutcome {
  version: '1.0';
  requestId: string;
  traceId: string;
  kind: CommandKind;
  outcome: 'pending' | 'delivered' | 'rejected' | 'expired';
  attempts?: number;
  latencyMs?: number;
  result?: Record<string, unknown>;
  rejection?: { code: string; message: string };
  statusUrl?: string;
}

export interface CommandOptions {
  /** Prefix of /api/commands (default: same origin). */
  baseUrl?: string;
  /** Caller JWT for `Authorization: Bearer`; without it the `gateway_token` cookie is used. */
  token?: string | (() => string | null | undefined);
  credentials?: RequestCredentials;
  fetch?: typeof fetch;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: unknown) => void;
}

export interface WaitOptions {
  intervalMs?: number;
  timeoutMs?: number;
  maxPolls?: number;
}

export interface Commands {
  sendMessage(cmd: { channelId: string; content: string; nonce?: string }): Promise<CommandOutcome>;
  addReaction(cmd: { channelId: string; messageId: string; emoji: string }): Promise<CommandOutcome>;
  typingStart(cmd: { channelId: string }): Promise<CommandOutcome>;
  getOutcome(requestId: string): Promise<CommandOutcome>;
  /** Resolves with the terminal outcome (delivered, rejected or expired); rejects with `timeout`. */
  waitForOutcome(requestId: string, options?: WaitOptions): Promise<CommandOutcome>;
}

export declare function commands(options?: CommandOptions): Commands;

export interface BackoffOptions {
  baseMs?: number;
  capMs?: number;
  random?: () => number;
}

export declare function backoffDelay(attempt: number, options?: BackoffOptions): number;
export declare function topicMatches(pattern: string, topic: string): boolean;

export interface ConnectOptions extends CommandOptions {
  url?: string;
  topics?: string[];
  token?: string;
  lastEventId?: string;
  EventSource?: new (url: string, init?: any) => EventSource;
  withCredentials?: boolean;
  /** Extra event names `on('*')` should hear (app-published types). */
  types?: string[];
  backoff?: { baseMs?: number; capMs?: number };
  /** How many recent ids are remembered for de-duplication (default 4096). */
  dedupWindow?: number;
  random?: () => number;
}

type Off = () => void;

/** What voiceChannel() needs from a transport: connect() clients and legacySource() both fit. */
export interface EventSourceLike {
  readonly state?: ConnectionState;
  readonly topics?: string[];
  on(type: string, fn: (...args: any[]) => void): Off;
  join?(guildId: string): void;
  leave?(guildId: string): void;
}

export declare class GatewayClient implements Commands, EventSourceLike {
  readonly url: string;
  readonly topics: string[];
  /** The last id delivered (or carried by a reset); sent as ?lastEventId= on our own reconnects. */
  lastEventId: string | null;
  state: ConnectionState;
  constructor(options?: ConnectOptions);
  on(type: 'reset', fn: (reset: ResetInfo, raw: MessageEvent) => void): Off;
  on(type: 'shutdown', fn: (body: unknown, raw: MessageEvent) => void): Off;
  on(type: 'state', fn: (state: ConnectionState, info: StateInfo) => void): Off;
  on(type: 'error', fn: (error: unknown) => void): Off;
  on<D = any>(type: string, fn: (event: GatewayEvent<D>, raw: MessageEvent) => void): Off;
  off(type: string, fn: (...args: any[]) => void): void;
  close(): void;
  streamUrl(): string;
  sendMessage: Commands['sendMessage'];
  addReaction: Commands['addReaction'];
  typingStart: Commands['typingStart'];
  getOutcome: Commands['getOutcome'];
  waitForOutcome: Commands['waitForOutcome'];
}

export declare function connect(options?: ConnectOptions): GatewayClient;

export interface LegacyOptions {
  url?: string;
  token?: string;
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
  pingIntervalMs?: number;
  backoff?: { baseMs?: number; capMs?: number };
  random?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: unknown) => void;
}

/** A relayed legacy `event` frame: the SSE envelope's fields, without ids (protocol v1 has none). */
export type LegacyEvent<D = any> = Omit<GatewayEvent<D>, 'id' | 'version' | 'upstreamSession' | 'upstreamSeq'> & { id?: string };

export declare class LegacySource implements EventSourceLike {
  readonly url: string;
  /** Always false: the legacy socket cannot resume; a drop emits `reset`. */
  readonly resumable: false;
  state: ConnectionState;
  /** From the host's `hello`. */
  user?: string;
  constructor(options?: LegacyOptions);
  on(type: 'reset', fn: (reset: ResetInfo) => void): Off;
  on(type: 'state', fn: (state: ConnectionState, info: StateInfo) => void): Off;
  on(type: 'error', fn: (error: unknown) => void): Off;
  on(type: 'hello' | 'joined' | 'left', fn: (frame: Record<string, unknown>) => void): Off;
  on<D = any>(type: string, fn: (event: LegacyEvent<D>) => void): Off;
  off(type: string, fn: (...args: any[]) => void): void;
  join(guildId: string): void;
  leave(guildId: string): void;
  close(): void;
}

export declare function legacySource(options?: LegacyOptions): LegacySource;

/** Discord v10 VOICE_STATE_UPDATE payload (the fields the helper reads). */
export interface VoiceState {
  guild_id?: string;
  channel_id: string | null;
  user_id: string;
  session_id?: string;
  self_mute?: boolean;
  self_deaf?: boolean;
  mute?: boolean;
  deaf?: boolean;
  self_stream?: boolean;
  self_video?: boolean;
  suppress?: boolean;
  member?: { nick?: string | null; user?: { id?: string; username?: string; global_name?: string | null } };
}

export interface VoiceMember {
  userId: string;
  sessionId: string | null;
  username: string | null;
  selfMute: boolean;
  selfDeaf: boolean;
  mute: boolean;
  deaf: boolean;
  selfStream: boolean;
  selfVideo: boolean;
  suppress: boolean;
  /** ms (options.now) when this member (re)joined. */
  joinedAt: number;
  updatedAt: number;
  /** True after a reset until a fresh state arrives: their leave may have been missed. */
  stale: boolean;
}

export type VoiceFlag = 'selfMute' | 'selfDeaf' | 'mute' | 'deaf' | 'selfStream' | 'selfVideo' | 'suppress';

export type VoiceEvent =
  | { type: 'join'; at: number; userId: string; member: VoiceMember; rejoin: boolean; gapMs: number | null; traceId: string | null }
  | { type: 'leave'; at: number; userId: string; member: VoiceMember | undefined; reason: 'disconnected' | 'moved' | 'resync'; toChannelId: string | null; traceId: string | null }
  | { type: 'update'; at: number; userId: string; member: VoiceMember; changed: Partial<Record<VoiceFlag, { from: boolean; to: boolean }>>; traceId: string | null }
  | VoiceDropout
  | { type: 'stale'; at: number; userIds: string[]; reason: string };

export interface VoiceDropout {
  type: 'dropout';
  at: number;
  userId: string;
  member: VoiceMember;
  /** How long they were gone. */
  gapMs: number;
  leftAt: number;
  returnedAt: number;
}

export interface VoiceSnapshot {
  members: VoiceMember[];
  events: VoiceEvent[];
  dropouts: VoiceDropout[];
}

export interface VoiceOptions {
  /** A disconnect followed by a return within this window is a dropout (default 15000). */
  rejoinWindowMs?: number;
  /** Length of the recent-events list (default 50). */
  maxEvents?: number;
  maxDropouts?: number;
  now?: () => number;
}

export declare class VoiceChannel {
  readonly source: EventSourceLike;
  readonly guildId: string;
  readonly channelId: string;
  readonly members: VoiceMember[];
  readonly state: ConnectionState;
  events: VoiceEvent[];
  dropouts: VoiceDropout[];
  constructor(source: EventSourceLike, guildId: string, channelId: string, options?: VoiceOptions);
  on<T extends VoiceEvent['type']>(type: T, fn: (event: Extract<VoiceEvent, { type: T }>) => void): Off;
  on(type: 'change', fn: (snapshot: VoiceSnapshot) => void): Off;
  off(type: string, fn: (...args: any[]) => void): void;
  /** Replace the member list with states fetched elsewhere (e.g. after a reset). */
  seed(states: VoiceState[]): void;
  close(): void;
}

export declare function voiceChannel(source: EventSourceLike, guildId: string, channelId: string, options?: VoiceOptions): VoiceChannel;
