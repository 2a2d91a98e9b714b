// Test doubles injected through options: EventSource, WebSocket, timers, fetch, a source.
// No browser, no network, no real time: every delay is a recorded timer the test fires.

/** A fresh EventSource class per test, recording its instances. */
export function fakeEventSourceClass() {
  return class FakeEventSource {
    static instances = [];
    constructor(url, init) {
      this.url = url;
      this.init = init;
      this.readyState = 0;
      this.listeners = new Map();
      this.closed = false;
      FakeEventSource.instances.push(this);
    }
    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, []);
      this.listeners.get(type).push(fn);
    }
    close() { this.readyState = 2; this.closed = true; }
    // ---- test side
    open() { this.readyState = 1; this.onopen?.({ type: 'open' }); }
    emit(type, data, id = '') {
      const e = { type, data: typeof data === 'string' ? data : JSON.stringify(data), lastEventId: id };
      if (type === 'message') this.onmessage?.(e);
      for (const fn of this.listeners.get(type) || []) fn(e);
    }
    /** The server closed (2: the EventSource gave up) or the browser retries (0). */
    fail(readyState) { this.readyState = readyState; this.onerror?.({ type: 'error' }); }
    static get last() { return this.instances[this.instances.length - 1]; }
  };
}

/** A fresh WebSocket class per test. */
export function fakeWebSocketClass() {
  return class FakeWebSocket {
    static instances = [];
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      FakeWebSocket.instances.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code, reason) { this.closedWith = { code, reason }; this.readyState = 3; }
    // ---- test side
    open() { this.readyState = 1; this.onopen?.({}); }
    frame(obj) { this.onmessage?.({ data: JSON.stringify(obj) }); }
    drop(code = 1006) { this.readyState = 3; this.onclose?.({ code }); }
    ops(op) { return this.sent.filter((f) => f.op === op); }
    static get last() { return this.instances[this.instances.length - 1]; }
  };
}

/** setTimeout/clearTimeout that only fire when the test says so. */
export function manualTimers() {
  let next = 1;
  const pending = new Map();
  return {
    setTimeout: (fn, ms) => { const id = next++; pending.set(id, { fn, ms }); return id; },
    clearTimeout: (id) => { pending.delete(id); },
    get pending() { return [...pending.values()]; },
    delays() { return [...pending.values()].map((t) => t.ms); },
    /** Fire every pending timer once (in creation order). */
    fireAll() {
      const now = [...pending.entries()];
      for (const [id, t] of now) { pending.delete(id); t.fn(); }
    },
  };
}

/** A fetch that answers from a queue of { status, body, headers } and records requests. */
export function fakeFetch(answers) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, ...init, body: init.body === undefined ? undefined : JSON.parse(init.body) });
    const a = answers.shift();
    if (!a) throw new Error('fakeFetch: no answer left');
    if (a instanceof Error) throw a;
    return new Response(a.body === undefined ? '' : JSON.stringify(a.body), {
      status: a.status,
      headers: { 'content-type': 'application/json', ...(a.headers || {}) },
    });
  };
  fn.calls = calls;
  return fn;
}

/** The smallest event source a voice channel accepts, with join/leave bookkeeping. */
export function fakeSource(extra = {}) {
  const handlers = new Map();
  const src = {
    state: 'open',
    joins: [],
    leaves: [],
    on(type, fn) {
      if (!handlers.has(type)) handlers.set(type, new Set());
      handlers.get(type).add(fn);
      return () => handlers.get(type).delete(fn);
    },
    emit(type, ...args) { for (const fn of [...(handlers.get(type) || [])]) fn(...args); },
    count(type) { return handlers.get(type)?.size || 0; },
    join(g) { src.joins.push(g); },
    leave(g) { src.leaves.push(g); },
    ...extra,
  };
  return src;
}

let seq = 0;
/** A VOICE_STATE_UPDATE envelope, Discord v10 shape. */
export function voiceState(guildId, channelId, userId, flags = {}) {
  seq += 1;
  return {
    version: '1.0', id: `1-${seq}`, type: 'VOICE_STATE_UPDATE', traceId: `t${seq}`, guildId, channelId,
    timestamp: 0,
    data: {
      guild_id: guildId, channel_id: channelId, user_id: userId, session_id: `s${userId}`,
      self_mute: false, self_deaf: false, mute: false, deaf: false, self_stream: false,
      self_video: false, suppress: false, member: { user: { id: userId, username: `user${userId}` } },
      ...flags,
    },
  };
}

/** A clock the test moves. */
export function clock(start = 1_000_000) {
  let t = start;
  const now = () => t;
  now.advance = (ms) => { t += ms; };
  return now;
}
