// @gateway-host/client: the browser side of gateway-host, one dependency-free ES module.
//
// Why one file: the host serves this exact file at GET /client.js (no bundler, no import
// map), and the npm package exports the same file, so the page and the package never
// drift apart. Contents:
//   * connect()        one EventSource for many topics, typed handlers, resume, reset, backoff
//   * commands()       POST /api/commands/* with typed errors (GatewayError) and outcomes
//   * voiceChannel()   the live member list of one voice channel, with dropouts
//   * legacySource()   the same event interface over the legacy /api/ws protocol v1
// Wire formats: docs/stream.md, docs/commands.md, docs/legacy-ws.md in the gateway-host repo.

/** Discord v10 dispatch names: an `on('*')` handler hears these plus any type given to `on()`. */
export const KNOWN_EVENT_TYPES = Object.freeze([
  'READY', 'RESUMED', 'APPLICATION_COMMAND_PERMISSIONS_UPDATE',
  'AUTO_MODERATION_RULE_CREATE', 'AUTO_MODERATION_RULE_UPDATE', 'AUTO_MODERATION_RULE_DELETE',
  'AUTO_MODERATION_ACTION_EXECUTION', 'CHANNEL_CREATE', 'CHANNEL_UPDATE', 'CHANNEL_DELETE',
  'CHANNEL_PINS_UPDATE', 'THREAD_CREATE', 'THREAD_UPDATE', 'THREAD_DELETE', 'THREAD_LIST_SYNC',
  'THREAD_MEMBER_UPDATE', 'THREAD_MEMBERS_UPDATE', 'ENTITLEMENT_CREATE', 'ENTITLEMENT_UPDATE',
  'ENTITLEMENT_DELETE', 'GUILD_CREATE', 'GUILD_UPDATE', 'GUILD_DELETE', 'GUILD_AUDIT_LOG_ENTRY_CREATE',
  'GUILD_BAN_ADD', 'GUILD_BAN_REMOVE', 'GUILD_EMOJIS_UPDATE', 'GUILD_STICKERS_UPDATE',
  'GUILD_INTEGRATIONS_UPDATE', 'GUILD_MEMBER_ADD', 'GUILD_MEMBER_REMOVE', 'GUILD_MEMBER_UPDATE',
  'GUILD_MEMBERS_CHUNK', 'GUILD_ROLE_CREATE', 'GUILD_ROLE_UPDATE', 'GUILD_ROLE_DELETE',
  'GUILD_SCHEDULED_EVENT_CREATE', 'GUILD_SCHEDULED_EVENT_UPDATE', 'GUILD_SCHEDULED_EVENT_DELETE',
  'GUILD_SCHEDULED_EVENT_USER_ADD', 'GUILD_SCHEDULED_EVENT_USER_REMOVE',
  'GUILD_SOUNDBOARD_SOUND_CREATE', 'GUILD_SOUNDBOARD_SOUND_UPDATE', 'GUILD_SOUNDBOARD_SOUND_DELETE',
  'GUILD_SOUNDBOARD_SOUNDS_UPDATE', 'SOUNDBOARD_SOUNDS', 'INTEGRATION_CREATE', 'INTEGRATION_UPDATE',
  'INTEGRATION_DELETE', 'INTERACTION_CREATE', 'INVITE_CREATE', 'INVITE_DELETE', 'MESSAGE_CREATE',
  'MESSAGE_UPDATE', 'MESSAGE_DELETE', 'MESSAGE_DELETE_BULK', 'MESSAGE_REACTION_ADD',
  'MESSAGE_REACTION_REMOVE', 'MESSAGE_REACTION_REMOVE_ALL', 'MESSAGE_REACTION_REMOVE_EMOJI',
  'MESSAGE_POLL_VOTE_ADD', 'MESSAGE_POLL_VOTE_REMOVE', 'PRESENCE_UPDATE', 'STAGE_INSTANCE_CREATE',
  'STAGE_INSTANCE_UPDATE', 'STAGE_INSTANCE_DELETE', 'SUBSCRIPTION_CREATE', 'SUBSCRIPTION_UPDATE',
  'SUBSCRIPTION_DELETE', 'TYPING_START', 'USER_UPDATE', 'VOICE_CHANNEL_EFFECT_SEND',
  'VOICE_STATE_UPDATE', 'VOICE_SERVER_UPDATE', 'VOICE_CHANNEL_STATUS_UPDATE', 'WEBHOOKS_UPDATE',
]);

/** Events about the connection itself, never gateway events. */
const CONTROL_EVENTS = new Set(['reset', 'shutdown', 'state', 'error', '*']);

// ---------------------------------------------------------------------------------------
// GatewayError

/** Every failed request: the host's JSON error shape, flattened. */
export class GatewayError extends Error {
  constructor({ status = 0, code = 'unknown', message = 'request failed', fields = [],
    retryAfterMs = null, requestId = null, traceId = null, details = null } = {}) {
    super(message);
    this.name = 'GatewayError';
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.retryAfterMs = retryAfterMs;
    this.requestId = requestId;
    this.traceId = traceId;
    this.details = details;
  }

  /** Build from a non-2xx response and its (possibly unparsable) JSON body. */
  static fromResponse(response, body) {
    const err = (body && typeof body === 'object' && body.error) || {};
    return new GatewayError({
      status: response.status,
      code: typeof err.code === 'string' ? err.code : `http_${response.status}`,
      message: typeof err.message === 'string' ? err.message : `HTTP ${response.status}`,
      fields: Array.isArray(err.fields) ? err.fields : [],
      retryAfterMs: retryAfterMs(err, response.headers),
      requestId: err.requestId ?? null,
      traceId: (body && body.traceId) ?? null,
      details: err,
    });
  }
}

function retryAfterMs(err, headers) {
  if (typeof err.retryAfterMs === 'number' && err.retryAfterMs >= 0) return err.retryAfterMs;
  const raw = headers && typeof headers.get === 'function' ? headers.get('retry-after') : null;
  if (raw == null) return null;
  const secs = Number(raw);
  if (Number.isFinite(secs) && secs >= 0) return Math.round(secs * 1000);
  const at = Date.parse(raw);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : null;
}

// ---------------------------------------------------------------------------------------
// Small shared pieces

/** A tiny typed emitter: `on(type, fn)` returns its own unsubscribe. */
class Emitter {
  constructor() { this._handlers = new Map(); }

  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('handler must be a function');
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._handlers.get(type);
    if (set) set.delete(fn);
  }

  _emit(type, ...args) {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(...args); } catch (e) { reportHandlerError(e); }
    }
  }
}

// A throwing handler must not break the stream or the other handlers.
function reportHandlerError(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else if (typeof console !== 'undefined') console.error(e);
}

/** Exponential backoff with jitter: attempt n waits a random time in [d/2, d], d = min(cap, base·2^n). */
export function backoffDelay(attempt, { baseMs = 1000, capMs = 30000, random = Math.random } = {}) {
  const d = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + random() * (d / 2));
}

function timersOf(options) {
  return {
    setTimeout: options.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms)),
    clearTimeout: options.clearTimeout || ((id) => globalThis.clearTimeout(id)),
  };
}

function parseJson(text) {
  try { return JSON.parse(text); } catch { return null; }
}

/** Append query parameters to a (possibly relative) URL; `:` `,` `*` stay readable. */
function withQuery(url, params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v == null || v === '') continue;
    parts.push(`${k}=${encodeURIComponent(v).replace(/%3A/gi, ':').replace(/%2C/gi, ',')}`);
  }
  if (!parts.length) return url;
  return url + (url.includes('?') ? '&' : '?') + parts.join('&');
}

/** Does topic pattern `p` (may end in `*`) cover topic `t`? */
export function topicMatches(p, t) {
  return p.endsWith('*') ? t.startsWith(p.slice(0, -1)) : p === t;
}

// ---------------------------------------------------------------------------------------
// Commands

/**
 * Command helpers without a stream: `commands({ baseUrl, token, fetch })`.
 * Each resolves with the outcome body (200 delivered, 202 pending) or rejects with GatewayError.
 */
export function commands(options = {}) {
  const baseUrl = (options.baseUrl || '').replace(/\/$/, '');
  const fetchImpl = options.fetch || ((...a) => globalThis.fetch(...a));
  const timers = timersOf(options);

  function headers(json) {
    const h = { Accept: 'application/json' };
    if (json) h['Content-Type'] = 'application/json';
    const token = typeof options.token === 'function' ? options.token() : options.token;
    if (token) h.Authorization = `Bearer ${token}`;
    return h;
  }

  async function request(method, path, body) {
    let response;
    try {
      response = await fetchImpl(baseUrl + path, {
        method,
        credentials: options.credentials || 'same-origin',
        headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new GatewayError({ code: 'network_error', message: String(e && e.message || e) });
    }
    const parsed = parseJson(await response.text().catch(() => ''));
    if (response.status === 200 || response.status === 202) {
      if (parsed && typeof parsed === 'object') return parsed;
      throw new GatewayError({ status: response.status, code: 'bad_response', message: 'the host answered without a JSON body' });
    }
    throw GatewayError.fromResponse(response, parsed);
  }

  const post = (kind, body) => request('POST', `/api/commands/${kind}`, body);

  const api = {
    sendMessage({ channelId, content, nonce } = {}) {
      const body = { channelId, content };
      if (nonce != null) body.nonce = nonce;
      return post('send-message', body);
    },
    addReaction({ channelId, messageId, emoji } = {}) {
      return post('add-reaction', { channelId, messageId, emoji });
    },
    typingStart({ channelId } = {}) {
      return post('typing-start', { channelId });
    },
    /** GET /api/commands/{requestId} once. */
    getOutcome(requestId) {
      return request('GET', `/api/commands/${encodeURIComponent(requestId)}`);
    },
    /**
     * Poll until the command is delivered, rejected or expired (resolves with the outcome
     * document, whatever the outcome), or reject with GatewayError `timeout` after `timeoutMs`.
     */
    async waitForOutcome(requestId, { intervalMs = 500, timeoutMs = 65000, maxPolls = 1000 } = {}) {
      const started = Date.now();
      for (let poll = 0; poll < maxPolls; poll++) {
        const doc = await api.getOutcome(requestId);
        if (doc.outcome && doc.outcome !== 'pending') return doc;
        if (Date.now() - started + intervalMs > timeoutMs) break;
        await new Promise((r) => timers.setTimeout(r, intervalMs));
      }
      throw new GatewayError({ code: 'timeout', message: `no outcome for ${requestId} in time`, requestId });
    },
  };
  return api;
}

// ---------------------------------------------------------------------------------------
// The stream

const ES_CONNECTING = 0;
const ES_CLOSED = 2;

/**
 * Open the event stream: one EventSource for every topic.
 *
 * options: url ('/api/stream'), topics ([] = all the token grants), token (commands'
 * Authorization header; also offered to EventSource implementations that accept headers),
 * lastEventId (resume point), EventSource (constructor), types (extra event names for '*'),
 * backoff ({baseMs, capMs}), dedupWindow (ids remembered, 4096), baseUrl (commands; default
 * the origin of an absolute `url`, else same origin),
 * fetch, random, setTimeout/clearTimeout.
 */
export function connect(options = {}) {
  return new GatewayClient(options);
}

export class GatewayClient extends Emitter {
  constructor(options = {}) {
    super();
    this.options = options;
    this.url = options.url || '/api/stream';
    this.topics = [...(options.topics || [])];
    this.lastEventId = options.lastEventId || null;
    this.state = 'connecting';
    this._EventSource = options.EventSource || globalThis.EventSource;
    if (typeof this._EventSource !== 'function') {
      throw new TypeError('no EventSource: pass options.EventSource');
    }
    this._timers = timersOf(options);
    this._attempt = 0;
    this._retryTimer = null;
    this._es = null;
    this._closed = false;
    this._listening = new Set();
    this._seen = new Set();
    this._seenOrder = [];
    this._dedupWindow = options.dedupWindow || 4096;
    this._types = new Set([...KNOWN_EVENT_TYPES, ...(options.types || [])]);
    // Commands go to the stream's origin unless told otherwise.
    const origin = /^https?:\/\//i.test(this.url) ? new URL(this.url).origin : '';
    Object.assign(this, commands({ ...options, baseUrl: options.baseUrl ?? origin }));
    this._open();
  }

  /** Handle one event type (`'MESSAGE_CREATE'`, `'*'`, `'reset'`, `'shutdown'`, `'state'`, `'error'`). */
  on(type, fn) {
    const off = super.on(type, fn);
    if (!CONTROL_EVENTS.has(type) && !this._types.has(type)) {
      this._types.add(type);
      if (this._es) this._listen(this._es, type);
    }
    return off;
  }

  /** Stop for good: close the EventSource, cancel any reconnect. */
  close() {
    this._closed = true;
    this._timers.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._closeSource();
    this._setState('closed');
  }

  /** The URL of the next connection: topics, plus the resume id on our own reconnects. */
  streamUrl() {
    return withQuery(this.url, {
      topics: this.topics.length ? this.topics.join(',') : null,
      lastEventId: this.lastEventId,
    });
  }

  _open() {
    const init = { withCredentials: this.options.withCredentials ?? false };
    if (this.options.token) init.headers = { Authorization: `Bearer ${this.options.token}` };
    let es;
    try {
      es = new this._EventSource(this.streamUrl(), init);
    } catch (e) {
      this._emit('error', e);
      this._scheduleReconnect();
      return;
    }
    this._es = es;
    this._listening = new Set();
    es.onopen = () => {
      if (es !== this._es) return;
      this._attempt = 0;
      this._setState('open');
    };
    es.onerror = (e) => {
      if (es !== this._es) return;
      if (es.readyState === ES_CONNECTING) {
        // The browser reconnects by itself and sends Last-Event-ID.
        this._setState('reconnecting');
      } else if (es.readyState === ES_CLOSED || es.readyState === undefined) {
        this._emit('error', e);
        this._closeSource();
        this._scheduleReconnect();
      }
    };
    es.onmessage = (e) => this._onEvent(es, 'message', e);
    for (const type of this._types) this._listen(es, type);
    es.addEventListener('reset', (e) => this._onReset(es, e));
    es.addEventListener('shutdown', (e) => this._onShutdown(es, e));
  }

  _listen(es, type) {
    if (this._listening.has(type)) return;
    this._listening.add(type);
    es.addEventListener(type, (e) => this._onEvent(es, type, e));
  }

  _onEvent(es, type, e) {
    if (es !== this._es) return;
    const id = e.lastEventId || null;
    if (id) {
      if (this._seen.has(id)) return; // never deliver the same id twice
      this._remember(id);
      this.lastEventId = id;
    }
    const parsed = parseJson(e.data);
    const envelope = parsed && typeof parsed === 'object' ? parsed : { type, data: e.data };
    if (id && !envelope.id) envelope.id = id;
    const name = envelope.type || type;
    this._emit(name, envelope, e);
    this._emit('*', envelope, e);
  }

  _remember(id) {
    this._seen.add(id);
    this._seenOrder.push(id);
    while (this._seenOrder.length > this._dedupWindow) this._seen.delete(this._seenOrder.shift());
  }

  _onReset(es, e) {
    if (es !== this._es) return;
    const body = parseJson(e.data) || { type: 'reset' };
    // A reset may carry an id (events were lost before it): resume from there next time.
    if (e.lastEventId && !this._seen.has(e.lastEventId)) {
      this._remember(e.lastEventId);
      this.lastEventId = e.lastEventId;
    }
    this._emit('reset', body, e);
  }

  _onShutdown(es, e) {
    if (es !== this._es) return;
    this._emit('shutdown', parseJson(e.data), e);
    // The host is going away: reconnect ourselves (with backoff) and resume by id.
    this._closeSource();
    this._scheduleReconnect();
  }

  _closeSource() {
    if (!this._es) return;
    const es = this._es;
    this._es = null;
    try { es.close(); } catch { /* already closed */ }
  }

  _scheduleReconnect() {
    if (this._closed || this._retryTimer) return;
    const delayMs = backoffDelay(this._attempt++, { ...this.options.backoff, random: this.options.random });
    this._setState('reconnecting', { delayMs, attempt: this._attempt });
    this._retryTimer = this._timers.setTimeout(() => {
      this._retryTimer = null;
      if (!this._closed) this._open();
    }, delayMs);
  }

  _setState(state, info = {}) {
    if (this.state === state && !info.delayMs) return;
    this.state = state;
    this._emit('state', state, info);
  }
}

// ---------------------------------------------------------------------------------------
// The legacy /api/ws adapter

const WS_OPEN = 1;

/**
 * The legacy voice socket (/api/ws protocol v1) behind the same interface as connect():
 * `on(type, fn)` with the same envelopes (minus `id`: the legacy protocol has no ids),
 * `on('reset')`, `on('state')`, plus ref-counted
 * `join(guildId)` / `leave(guildId)`. There is no resume on this socket, so whenever an
 * open socket drops the adapter emits `reset` (events may have been missed) and reconnects
 * with backoff, joining its guilds again.
 *
 * options: url ('/api/ws'), token (sent as subprotocol `bearer.<token>`), WebSocket,
 * pingIntervalMs (default: the host's heartbeatMs, else 30000), backoff, random, timers.
 */
export function legacySource(options = {}) {
  return new LegacySource(options);
}

export class LegacySource extends Emitter {
  constructor(options = {}) {
    super();
    this.options = options;
    this.url = absoluteWsUrl(options.url || '/api/ws');
    this.state = 'connecting';
    this.resumable = false;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') throw new TypeError('no WebSocket: pass options.WebSocket');
    this._timers = timersOf(options);
    this._guilds = new Map(); // guildId -> ref count
    this._attempt = 0;
    this._retryTimer = null;
    this._pingTimer = null;
    this._pendingPing = null;
    this._nonce = 0;
    this._ws = null;
    this._closed = false;
    this._open();
  }

  join(guildId) {
    const n = this._guilds.get(guildId) || 0;
    this._guilds.set(guildId, n + 1);
    if (n === 0) this._send({ v: 1, op: 'join', guildId });
  }

  leave(guildId) {
    const n = this._guilds.get(guildId) || 0;
    if (n <= 1) {
      this._guilds.delete(guildId);
      if (n === 1) this._send({ v: 1, op: 'leave', guildId });
    } else this._guilds.set(guildId, n - 1);
  }

  close() {
    this._closed = true;
    this._timers.clearTimeout(this._retryTimer);
    this._stopPing();
    const ws = this._ws;
    this._ws = null;
    if (ws) try { ws.close(1000); } catch { /* already closed */ }
    this._setState('closed');
  }

  _open() {
    const protocols = ['gateway.v1'];
    if (this.options.token) protocols.push(`bearer.${this.options.token}`);
    let ws;
    try {
      ws = new this._WebSocket(this.url, protocols);
    } catch (e) {
      this._emit('error', e);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (ws !== this._ws) return;
      this._attempt = 0;
      opened = true;
      for (const guildId of this._guilds.keys()) this._send({ v: 1, op: 'join', guildId });
      this._setState('open');
      this._startPing(this.options.pingIntervalMs || 30000);
    };
    ws.onmessage = (e) => { if (ws === this._ws) this._onFrame(e.data); };
    ws.onerror = (e) => { if (ws === this._ws) this._emit('error', e); };
    ws.onclose = (e) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._stopPing();
      if (this._closed) return;
      if (opened) {
        this._emit('reset', { type: 'reset', reason: 'legacy socket closed; it cannot resume, events may have been missed', code: e && e.code });
      }
      this._scheduleReconnect();
    };
  }

  _onFrame(text) {
    if (typeof text !== 'string') return;
    const frame = parseJson(text);
    if (!frame || typeof frame !== 'object') return;
    switch (frame.op) {
      case 'hello':
        this.user = frame.user;
        if (!this.options.pingIntervalMs && frame.heartbeatMs > 0) this._startPing(frame.heartbeatMs);
        this._emit('hello', frame);
        break;
      case 'event': {
        const { v, op, ...envelope } = frame;
        this._emit(envelope.type, envelope);
        this._emit('*', envelope);
        break;
      }
      case 'pong':
        if (frame.nonce === this._pendingPing) this._pendingPing = null;
        break;
      case 'joined': case 'left':
        this._emit(frame.op, frame);
        break;
      case 'error':
        this._emit('error', new GatewayError({ code: frame.code, message: frame.message, details: frame }));
        break;
      default:
        break;
    }
  }

  _send(frame) {
    const ws = this._ws;
    if (ws && ws.readyState === WS_OPEN) ws.send(JSON.stringify(frame));
  }

  // An app-level ping each period; one still unanswered at the next tick means a dead socket.
  _startPing(periodMs) {
    this._stopPing();
    const tick = () => {
      if (this._pendingPing !== null) {
        const ws = this._ws;
        if (ws) try { ws.close(4000, 'no pong'); } catch { /* ignore */ }
        if (ws && ws.onclose) ws.onclose({ code: 4000, reason: 'no pong' });
        return;
      }
      this._pendingPing = String(++this._nonce);
      this._send({ v: 1, op: 'ping', nonce: this._pendingPing });
      this._pingTimer = this._timers.setTimeout(tick, periodMs);
    };
    this._pingTimer = this._timers.setTimeout(tick, periodMs);
  }

  _stopPing() {
    this._timers.clearTimeout(this._pingTimer);
    this._pingTimer = null;
    this._pendingPing = null;
  }

  _scheduleReconnect() {
    if (this._closed || this._retryTimer) return;
    const delayMs = backoffDelay(this._attempt++, { ...this.options.backoff, random: this.options.random });
    this._setState('reconnecting', { delayMs, attempt: this._attempt });
    this._retryTimer = this._timers.setTimeout(() => {
      this._retryTimer = null;
      if (!this._closed) this._open();
    }, delayMs);
  }

  _setState(state, info = {}) {
    if (this.state === state && !info.delayMs) return;
    this.state = state;
    this._emit('state', state, info);
  }
}

function absoluteWsUrl(url) {
  if (/^wss?:\/\//i.test(url)) return url;
  if (/^https?:\/\//i.test(url)) return url.replace(/^http/i, 'ws');
  const loc = globalThis.location;
  if (loc && loc.host) return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}${url}`;
  return url;
}

// ---------------------------------------------------------------------------------------
// Voice channels

const VOICE_FLAGS = [
  ['self_mute', 'selfMute'], ['self_deaf', 'selfDeaf'], ['mute', 'mute'], ['deaf', 'deaf'],
  ['self_stream', 'selfStream'], ['self_video', 'selfVideo'], ['suppress', 'suppress'],
];

function memberFrom(state, now, previous) {
  const m = {
    userId: String(state.user_id),
    sessionId: state.session_id ?? null,
    username: state.member?.user?.global_name || state.member?.nick || state.member?.user?.username || null,
    joinedAt: previous ? previous.joinedAt : now,
    updatedAt: now,
    stale: false,
  };
  for (const [wire, key] of VOICE_FLAGS) m[key] = Boolean(state[wire]);
  return m;
}

/**
 * The live member list of one voice channel, from VOICE_STATE_UPDATE events.
 *
 * `source`: a client from connect() subscribed to `voice:<guildId>` (or wider), or a
 * legacySource(). Emits `join`, `leave`, `update`, `dropout`, `stale`, and `change` (after
 * any of them, with a snapshot). See README "Voice channels" for what a dropout is.
 *
 * options: rejoinWindowMs (15000), maxEvents (50), maxDropouts (50), now (Date.now).
 */
export function voiceChannel(source, guildId, channelId, options = {}) {
  return new VoiceChannel(source, guildId, channelId, options);
}

export class VoiceChannel extends Emitter {
  constructor(source, guildId, channelId, options = {}) {
    super();
    if (!source || typeof source.on !== 'function') throw new TypeError('source must have on(type, fn)');
    this.source = source;
    this.guildId = String(guildId);
    this.channelId = String(channelId);
    this.rejoinWindowMs = options.rejoinWindowMs ?? 15000;
    this.maxEvents = options.maxEvents ?? 50;
    this.maxDropouts = options.maxDropouts ?? 50;
    this._now = options.now || Date.now;
    this._members = new Map();
    this._departed = new Map(); // userId -> { at, member }: disconnected, may come back
    this.events = [];
    this.dropouts = [];
    checkTopics(source, this.guildId);
    this._offs = [
      source.on('VOICE_STATE_UPDATE', (env) => this._onState(env)),
      source.on('reset', (body) => this._onReset(body)),
    ];
    if (typeof source.join === 'function') source.join(this.guildId);
    this._closed = false;
  }

  /** The members now in the channel, in join order. */
  get members() { return [...this._members.values()]; }

  /** The source's connection state (connecting, open, reconnecting, closed). */
  get state() { return this.source.state || 'open'; }

  /** Stop listening (and leave the guild on a legacy source). */
  close() {
    if (this._closed) return;
    this._closed = true;
    for (const off of this._offs) if (typeof off === 'function') off();
    if (typeof this.source.leave === 'function') this.source.leave(this.guildId);
  }

  /**
   * Replace the member list with states fetched elsewhere (e.g. after a reset): listed
   * members become fresh, members not listed leave (reason `resync`).
   */
  seed(states) {
    const listed = new Set();
    for (const s of states) {
      if (String(s.channel_id) !== this.channelId) continue;
      listed.add(String(s.user_id));
      this._apply(s, null);
    }
    for (const userId of [...this._members.keys()]) {
      if (!listed.has(userId)) this._leave(userId, null, 'resync');
    }
    this._changed();
  }

  _onState(env) {
    const s = env && env.data;
    if (!s || typeof s !== 'object' || s.user_id == null) return;
    if (String(s.guild_id ?? env.guildId) !== this.guildId) return;
    this._apply(s, env);
    this._changed();
  }

  _apply(s, env) {
    const userId = String(s.user_id);
    const now = this._now();
    const here = s.channel_id != null && String(s.channel_id) === this.channelId;
    const previous = this._members.get(userId);
    if (!here) {
      if (previous) this._leave(userId, env, s.channel_id == null ? 'disconnected' : 'moved', s.channel_id);
      return;
    }
    const member = memberFrom(s, now, previous);
    this._members.set(userId, member);
    if (!previous) {
      const gone = this._departed.get(userId);
      this._departed.delete(userId);
      const gapMs = gone ? now - gone.at : null;
      const rejoin = gone != null && gapMs <= this.rejoinWindowMs;
      this._record('join', { userId, member, rejoin, gapMs: rejoin ? gapMs : null, traceId: env?.traceId ?? null });
      if (rejoin) {
        const dropout = { type: 'dropout', userId, member, gapMs, leftAt: gone.at, returnedAt: now, at: now };
        this.dropouts = [...this.dropouts, dropout].slice(-this.maxDropouts);
        this._record('dropout', dropout);
      }
      return;
    }
    const changed = {};
    for (const [, key] of VOICE_FLAGS) {
      if (previous[key] !== member[key]) changed[key] = { from: previous[key], to: member[key] };
    }
    if (Object.keys(changed).length) this._record('update', { userId, member, changed, traceId: env?.traceId ?? null });
  }

  _leave(userId, env, reason, toChannelId = null) {
    const member = this._members.get(userId);
    this._members.delete(userId);
    const now = this._now();
    // Only a disconnect can be a dropout; a move to another channel is deliberate.
    if (reason === 'disconnected') this._departed.set(userId, { at: now, member });
    this._pruneDeparted(now);
    this._record('leave', { userId, member, reason, toChannelId: toChannelId ?? null, traceId: env?.traceId ?? null });
  }

  _pruneDeparted(now) {
    for (const [userId, d] of this._departed) {
      if (now - d.at > this.rejoinWindowMs) this._departed.delete(userId);
    }
  }

  _onReset(body) {
    const stale = [];
    for (const [userId, m] of this._members) {
      if (!m.stale) this._members.set(userId, { ...m, stale: true });
      stale.push(userId);
    }
    // A missed rejoin cannot be matched to its leave any more.
    this._departed.clear();
    this._record('stale', { userIds: stale, reason: body && body.reason ? body.reason : 'reset' });
    this._changed();
  }

  _record(type, event) {
    const entry = { type, at: this._now(), ...event };
    this.events = [...this.events, entry].slice(-this.maxEvents);
    this._emit(type, entry);
  }

  _changed() {
    this._emit('change', { members: this.members, events: this.events, dropouts: this.dropouts });
  }
}

// A client subscribed to topics that cannot carry voice:<guild> would never see a state.
function checkTopics(source, guildId) {
  const topics = source.topics;
  if (!Array.isArray(topics) || topics.length === 0) return;
  const wanted = [`voice:${guildId}`, `guild:${guildId}`];
  if (!topics.some((p) => wanted.some((t) => topicMatches(p, t)))) {
    throw new Error(`the client's topics (${topics.join(',')}) do not include voice:${guildId}`);
  }
}
