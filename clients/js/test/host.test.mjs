// Against a REAL host: `gateway-host demo` (embedded simulator) on random loopback ports.
// Fetches /client.js from it, imports that very module, and uses it from Node with an
// EventSource polyfill (fetch + SSE parsing) that carries the gateway_token cookie like a
// same-origin browser page does.
//
// GATEWAY_HOST_BIN: path of the gateway-host binary. `just js-test` builds it and sets it;
// a plain `npm test` without it skips this file (the unit tests still run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const bin = process.env.GATEWAY_HOST_BIN;
const USER = '100000000000000003';
const STEP_MS = 30_000; // every wait below is bounded by this

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

/** Resolve when `check()` returns a truthy value; reject after `ms`. */
async function until(what, check, ms = STEP_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A minimal EventSource for Node: fetch, then parse text/event-stream. No own retries. */
function eventSourceWithCookie(cookie) {
  return class NodeEventSource {
    constructor(url, init = {}) {
      this.url = url;
      this.readyState = 0;
      this.lastEventId = '';
      this._listeners = new Map();
      this._abort = new AbortController();
      this._run(init.headers || {}).catch(() => this._end());
    }
    addEventListener(type, fn) {
      if (!this._listeners.has(type)) this._listeners.set(type, []);
      this._listeners.get(type).push(fn);
    }
    close() { this.readyState = 2; this._abort.abort(); }
    _end() {
      if (this.readyState === 2) return;
      this.readyState = 2;
      this.onerror?.({ type: 'error' });
    }
    async _run(headers) {
      const res = await fetch(this.url, {
        headers: { Accept: 'text/event-stream', Cookie: cookie, ...headers },
        signal: this._abort.signal,
      });
      if (res.status !== 200 || !(res.headers.get('content-type') || '').startsWith('text/event-stream')) {
        this.httpStatus = res.status;
        return this._end();
      }
      this.readyState = 1;
      this.onopen?.({ type: 'open' });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let ev = { type: '', data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        const lines = buf.split(/\r\n|\r|\n/);
        buf = lines.pop();
        for (const line of lines) {
          if (line === '') {
            if (ev.data.length) this._dispatch(ev.type || 'message', ev.data.join('\n'));
            ev = { type: '', data: [] };
            continue;
          }
          if (line.startsWith(':')) continue;
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'event') ev.type = val;
          else if (field === 'data') ev.data.push(val);
          else if (field === 'id') this.lastEventId = val;
        }
      }
      this._end();
    }
    _dispatch(type, data) {
      if (this.readyState === 2) return;
      const e = { type, data, lastEventId: this.lastEventId };
      if (type === 'message') this.onmessage?.(e);
      for (const fn of this._listeners.get(type) || []) fn(e);
    }
  };
}

function seqOf(id) { return Number(id.split('-')[1]); }

test('the served /client.js against a live gateway-host demo', { skip: !bin && 'GATEWAY_HOST_BIN is not set (just js-test sets it)', timeout: 6 * STEP_MS }, async (t) => {
  const [http, admin] = [await freePort(), await freePort()];
  const env = {
    ...process.env,
    GATEWAY_HTTP_ADDR: `127.0.0.1:${http}`,
    GATEWAY_ADMIN_ADDR: `127.0.0.1:${admin}`,
    GATEWAY_JWT_SECRET: randomBytes(32).toString('hex'),
    RUST_LOG: 'warn',
  };
  let stderr = '';
  const hosts = [];
  const startHost = () => {
    const h = spawn(bin, ['demo'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    h.stderr.on('data', (d) => { stderr = (stderr + d).slice(-8000); });
    hosts.push(h);
    return h;
  };
  const host = startHost();
  const clients = [];
  t.after(() => {
    for (const c of clients) c.close();
    for (const h of hosts) if (h.exitCode === null) h.kill('SIGKILL');
  });
  const base = `http://127.0.0.1:${http}`;

  try {
    await until('/readyz', async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200);
    const token = await new Promise((resolve, reject) => execFile(bin, ['token', '--sub', USER], { env, timeout: STEP_MS },
      (err, out) => (err ? reject(err) : resolve(out.trim()))));
    const cookie = `gateway_token=${token}`;

    // The module as the host serves it: the committed file, byte for byte.
    const res = await fetch(`${base}/client.js`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const source = await res.text();
    const committed = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'client.js'), 'utf8');
    assert.equal(source, committed);
    const again = await fetch(`${base}/client.js`, { headers: { 'If-None-Match': res.headers.get('etag') } });
    assert.equal(again.status, 304);
    const file = join(mkdtempSync(join(tmpdir(), 'gw-client-')), 'client.js');
    writeFileSync(file, source);
    const gw = await import(pathToFileURL(file).href);

    // Same-origin browser behaviour: the cookie rides along on the stream and the commands.
    const EventSource = eventSourceWithCookie(cookie);
    const cookieFetch = (url, init = {}) => fetch(url, { ...init, headers: { ...init.headers, Cookie: cookie } });
    const opts = { url: `${base}/api/stream`, baseUrl: base, EventSource, fetch: cookieFetch };

    // 1. A real event arrives, typed, with a host id.
    const all = gw.connect({ ...opts, backoff: { baseMs: 200, capMs: 2000 } });
    clients.push(all);
    const events = [];
    all.on('*', (e) => events.push(e));
    const first = await until('a MESSAGE_CREATE', () => events.find((e) => e.type === 'MESSAGE_CREATE'));
    assert.equal(all.state, 'open');
    assert.match(first.id, /^\d+-\d+$/);
    assert.ok(first.guildId && first.channelId && first.traceId);

    // 2. Topics: a client of one guild's topics hears only that guild.
    const gid = first.guildId;
    const one = gw.connect({ ...opts, topics: [`guild:${gid}`, `voice:${gid}`] });
    clients.push(one);
    const mine = [];
    one.on('*', (e) => mine.push(e));
    await until('two events of one guild', () => mine.length >= 2);
    assert.ok(mine.every((e) => e.guildId === gid), JSON.stringify(mine.map((e) => e.guildId)));

    // 3. A command: delivered (200) or pending (202); its follow-up event carries its traceId.
    const out = await all.sendMessage({ channelId: first.channelId, content: `js client test ${Date.now()}` });
    assert.ok(['delivered', 'pending'].includes(out.outcome), JSON.stringify(out));
    assert.match(out.requestId, /^[0-9a-f]{32}$/);
    const done = out.outcome === 'pending' ? await all.waitForOutcome(out.requestId, { timeoutMs: STEP_MS }) : out;
    assert.equal(done.outcome, 'delivered');
    await until('the follow-up MESSAGE_CREATE', () => events.find((e) => e.type === 'MESSAGE_CREATE' && e.traceId === out.traceId));
    // With the bearer token instead of the cookie, and a refused body: a typed error.
    const bad = await gw.commands({ baseUrl: base, token }).sendMessage({ channelId: 'nope', content: 'x' }).catch((e) => e);
    assert.ok(bad instanceof gw.GatewayError, String(bad));
    assert.equal(bad.status, 400);
    assert.ok(bad.fields.some((f) => f.field === 'channelId'), JSON.stringify(bad.fields));

    // 3b. The rate limiter (burst 10, 5 tokens / 5 s per user and channel): 30 at once must
    //     meet a 429, surfaced as GatewayError.retryAfterMs.
    const burst = await Promise.all(Array.from({ length: 30 }, () =>
      all.typingStart({ channelId: first.channelId }).then(() => null, (e) => e)));
    const limited = burst.filter((e) => e && e.status === 429);
    assert.ok(limited.length >= 1, JSON.stringify(burst.filter(Boolean).map((e) => e.code)));
    assert.ok(limited.every((e) => e instanceof gw.GatewayError && e.code === 'rate_limited' && e.retryAfterMs > 0),
      JSON.stringify(limited.map((e) => [e.code, e.retryAfterMs])));

    // 4. Resume: a new client from a known id gets exactly the next event first (replay ring).
    const from = events[events.length - 1].id;
    const resumed = gw.connect({ ...opts, lastEventId: from });
    clients.push(resumed);
    const after = [];
    resumed.on('*', (e) => after.push(e.id));
    await until('a replayed event', () => after.length >= 1);
    assert.equal(seqOf(after[0]), seqOf(from) + 1, `${from} then ${after[0]}`);

    // 5. An id the host cannot place: a reset, then live events.
    const lost = gw.connect({ ...opts, lastEventId: '1-1' });
    clients.push(lost);
    const resets = [];
    lost.on('reset', (r) => resets.push(r));
    await until('a reset', () => resets.length >= 1);
    assert.equal(resets[0].lastEventId, '1-1');
    assert.ok(resets[0].reason);

    // 6. SIGTERM: the stream says shutdown, the client schedules its own reconnect.
    let shutdowns = 0;
    all.on('shutdown', () => { shutdowns += 1; });
    host.kill('SIGTERM');
    await until('the shutdown event', () => shutdowns === 1 || all.state === 'reconnecting');
    assert.equal(shutdowns, 1);
    assert.equal(all.state, 'reconnecting');
    const { code } = await until('the host to exit', () => host.exitCode !== null && { code: host.exitCode });
    assert.equal(code, 0);

    // 7. The host comes back (same address, new epoch): the client reconnects by itself with
    //    the old id, gets a reset (the id is from another epoch), then live events; no id twice.
    const resetsAll = [];
    all.on('reset', (r) => resetsAll.push(r));
    const before = events.length;
    startHost();
    await until('the reset after the restart', () => resetsAll.length >= 1);
    assert.match(resetsAll[0].reason, /epoch|older|ahead|not an id/, resetsAll[0].reason);
    await until('a live event after the restart', () => events.length > before);
    assert.equal(all.state, 'open');
    const ids = events.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'no event delivered twice');
  } catch (e) {
    e.message += `\n--- host stderr (tail) ---\n${stderr}`;
    throw e;
  }
});
