// The operator console's script (served as a file: the page's CSP allows no inline script).
// It keeps the admin token in sessionStorage and sends it as `Authorization: Bearer` on every
// call; it polls GET /admin/series (with ?since= the last sample it has) once a second and
// GET /admin/components every two seconds, draws the charts as SVG, and uploads (raw wasm
// bytes, or multipart `component` + `config` when a config is given) and rolls back slots.
'use strict';

const TOKEN_KEY = 'gateway-admin-token';
const SVG = 'http://www.w3.org/2000/svg';
const SERIES_EVERY_MS = 1000;
const COMPONENTS_EVERY_MS = 2000;
// The charts' shortest time axis (they widen with the history, up to the series' window).
const MIN_SPAN_MS = 60_000;

const $ = (id) => document.getElementById(id);
let samples = [];
let windowMs = 600_000;
let capacity = 600;
// Bumped on every (dis)connect, so the polling loops of an old token stop.
let generation = 0;

class AuthError extends Error {}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function setAuthStatus(text, isError) {
  const el = $('auth-status');
  el.textContent = text;
  el.classList.toggle('error', Boolean(isError));
}

// One admin API call; a refused token stops the console and says why.
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set('Authorization', `Bearer ${token()}`);
  const response = await fetch(path, { ...options, headers, cache: 'no-store' });
  if (response.status === 401 || response.status === 403 || response.status === 503) {
    const body = await response.json().catch(() => null);
    const why = body && body.error ? body.error.message : response.statusText;
    const code = body && body.error ? body.error.code : String(response.status);
    if (code === 'unauthorized' || code === 'forbidden' || code === 'admin_disabled') {
      throw new AuthError(`The admin token was refused (${response.status} ${code}): ${why}`);
    }
  }
  return response;
}

function disconnect(message) {
  generation++;
  sessionStorage.removeItem(TOKEN_KEY);
  $('dashboard').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  setAuthStatus(message, true);
}

function connect() {
  const gen = ++generation;
  samples = [];
  $('login').hidden = true;
  $('logout').hidden = false;
  $('dashboard').hidden = false;
  setAuthStatus('Connecting…', false);
  loop(gen, SERIES_EVERY_MS, pollSeries);
  loop(gen, COMPONENTS_EVERY_MS, pollComponents);
}

// Runs `step` every `every` ms while `gen` is current; one step at a time.
async function loop(gen, every, step) {
  while (gen === generation) {
    try {
      await step();
      if (gen === generation) setAuthStatus('Connected.', false);
    } catch (e) {
      if (gen !== generation) return;
      if (e instanceof AuthError) { disconnect(e.message); return; }
      setAuthStatus(`The host did not answer: ${e.message}`, true);
    }
    await new Promise(r => setTimeout(r, every));
  }
}

// ---- time series ----------------------------------------------------------------------

async function pollSeries() {
  const last = samples.length ? samples[samples.length - 1].tMs : null;
  const response = await api('/admin/series' + (last === null ? '' : `?since=${last}`));
  if (!response.ok) throw new Error(`GET /admin/series: ${response.status}`);
  const body = await response.json();
  capacity = body.capacity;
  windowMs = body.capacity * body.intervalMs;
  samples = samples.concat(body.samples);
  if (samples.length > capacity) samples = samples.slice(samples.length - capacity);
  render(body.nowMs);
}

function fmt(v, digits = 1) {
  if (v === null || v === undefined) return '—';
  if (v >= 100) return Math.round(v).toString();
  return v.toFixed(digits);
}

function render(nowMs) {
  const last = samples[samples.length - 1];
  if (last) {
    $('now-link').textContent = last.link;
    $('now-events').textContent = fmt(last.eventsPerSec);
    $('now-latency').textContent = last.p50Ms === null ? '—'
      : `${fmt(last.p50Ms, 2)} / ${fmt(last.p90Ms, 2)} / ${fmt(last.p99Ms, 2)} ms`;
    $('now-clients').textContent = String(last.sseClients);
    $('now-updated').textContent = new Date(last.tMs).toLocaleTimeString();
  }
  // The x axis spans the history held, from one minute up to the whole window.
  const first = samples.length ? samples[0].tMs : nowMs;
  const span = Math.min(windowMs, Math.max(MIN_SPAN_MS, nowMs - first + 1000));
  const start = nowMs - span;
  const x = (t) => Math.max(0, Math.min(600, ((t - start) / span) * 600));
  $('window-seconds').textContent = String(Math.round(span / 1000));
  drawLink($('chart-link'), x, span);
  drawLines($('chart-events'), x, [['line', s => s.eventsPerSec]], 'events/s');
  drawLines($('chart-latency'), x,
    [['line p50', s => s.p50Ms], ['line p90', s => s.p90Ms], ['line p99', s => s.p99Ms]], 'ms');
  drawLines($('chart-clients'), x, [['line', s => s.sseClients]], 'clients');
}

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function setMax(svg, text) {
  const max = svg.closest('figure').querySelector('.max');
  if (max) max.textContent = text;
}

// Runs of the same state as green (connected) or red (anything else) bands.
function drawLink(svg, x, span) {
  svg.replaceChildren();
  const step = windowMs / capacity;
  const width = Math.max(600 / (span / step), 0.5);
  let i = 0;
  let down = 0;
  while (i < samples.length) {
    const up = samples[i].link === 'connected';
    let j = i;
    while (j + 1 < samples.length && (samples[j + 1].link === 'connected') === up) j++;
    const x0 = x(samples[i].tMs) - width;
    const x1 = x(samples[j].tMs);
    svg.append(el('rect', { class: up ? 'up' : 'down', x: Math.max(0, x0), y: 0, width: Math.max(x1 - x0, width), height: 60 }));
    if (!up) down += j - i + 1;
    i = j + 1;
  }
  svg.dataset.points = String(samples.length);
  svg.dataset.down = String(down);
  svg.dataset.last = samples.length ? samples[samples.length - 1].link : '';
  setMax(svg, samples.length ? `(down ${down} s of ${samples.length} s)` : '');
}

// One polyline per series; gaps (null values) split the line.
function drawLines(svg, x, series, unit) {
  svg.replaceChildren();
  let max = 0;
  for (const s of samples) for (const [, get] of series) { const v = get(s); if (v !== null && v > max) max = v; }
  const top = niceCeil(max);
  const height = 120;
  const y = (v) => height - 2 - (v / top) * (height - 8);
  let points = 0;
  for (const [cls, get] of series) {
    let run = [];
    const flush = () => {
      if (run.length === 1) run.push(`${Math.min(600, Number(run[0].split(',')[0]) + 1)},${run[0].split(',')[1]}`);
      if (run.length) svg.append(el('polyline', { class: cls, points: run.join(' ') }));
      run = [];
    };
    let n = 0;
    for (const s of samples) {
      const v = get(s);
      if (v === null || v === undefined) { flush(); continue; }
      run.push(`${x(s.tMs).toFixed(1)},${y(v).toFixed(1)}`);
      n++;
    }
    flush();
    points = Math.max(points, n);
  }
  const last = samples.length ? series[series.length - 1][1](samples[samples.length - 1]) : null;
  svg.dataset.points = String(points);
  svg.dataset.max = String(max);
  svg.dataset.last = last === null || last === undefined ? '' : String(last);
  setMax(svg, `(scale 0–${fmt(top)} ${unit})`);
}

function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ---- slots ------------------------------------------------------------------------------

async function pollComponents() {
  const response = await api('/admin/components');
  if (!response.ok) throw new Error(`GET /admin/components: ${response.status}`);
  const body = await response.json();
  if (body.wit) $('wit').textContent = `(serving ${body.wit.package}@${body.wit.version})`;
  for (const info of body.slots) renderSlot(info);
}

function short(sha) { return sha ? sha.slice(0, 12) : '—'; }

function size(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function configText(version) {
  if (!version || version.config === undefined || version.config === null) return '—';
  const entries = Object.entries(version.config);
  const from = version.configSource ? ` (from ${version.configSource})` : '';
  if (!entries.length) return `(empty)${from}`;
  return entries.map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join('\n') + from;
}

function slotArticle(slot) {
  let article = document.querySelector(`#slots .slot[data-slot="${CSS.escape(slot)}"]`);
  if (article) return article;
  article = $('slot-template').content.firstElementChild.cloneNode(true);
  article.dataset.slot = slot;
  article.querySelector('.slot-name').textContent = slot;
  article.querySelector('.upload').addEventListener('submit', (e) => { e.preventDefault(); upload(article, slot); });
  article.querySelector('.rollback').addEventListener('click', () => rollback(article, slot));
  $('slots').append(article);
  return article;
}

function renderSlot(info) {
  const a = slotArticle(info.slot);
  const cur = info.current;
  const set = (cls, text) => { a.querySelector(cls).textContent = text; };
  set('.sha', short(cur.sha256));
  a.querySelector('.sha').title = cur.sha256;
  a.dataset.sha = cur.sha256;
  a.dataset.swaps = String(info.swaps);
  set('.size', size(cur.sizeBytes));
  set('.loaded', new Date(cur.loadedAtMs).toLocaleString());
  set('.source', cur.source);
  set('.calls', String(cur.calls));
  set('.failures', String(cur.failures));
  const breaker = a.querySelector('.breaker');
  breaker.textContent = `${info.breaker.state} (${info.breaker.consecutiveFailures} in a row, ${info.breaker.trips} trips)`;
  breaker.className = `breaker ${info.breaker.state}`;
  set('.failure-policy', info.failurePolicy);
  set('.config', configText(cur));
  set('.swaps', String(info.swaps));
  set('.previous', info.previous ? `${short(info.previous.sha256)} (${info.previous.source})` : '—');
  a.querySelector('.rollback').disabled = !info.previous;
  const r = info.lastRejection;
  set('.rejection', r ? `${short(r.sha256)} from ${r.source} at ${new Date(r.atMs).toLocaleTimeString()}: ${r.reason}` : '—');
}

function showResult(article, text, ok) {
  const p = article.querySelector('.result');
  p.textContent = text;
  p.className = `result ${ok ? 'ok' : 'error'}`;
}

// The error shape of every route: {"error": {"code", "message", "step"?}}.
async function describeError(response) {
  const body = await response.json().catch(() => null);
  const e = body && body.error;
  if (!e) return `${response.status} ${response.statusText}`;
  const step = e.step ? ` at step "${e.step}"` : '';
  return `${response.status} ${e.code}${step}: ${e.message}`;
}

async function upload(article, slot) {
  const file = article.querySelector('.file').files[0];
  if (!file) { showResult(article, 'Choose a .wasm file first.', false); return; }
  const config = article.querySelector('.config-text').value;
  // No config: the raw bytes (the component gets an empty config). A config: multipart
  // with the parts `component` and `config` (the admin API's contract).
  let options;
  if (config.trim() === '') {
    options = { method: 'PUT', headers: { 'Content-Type': 'application/wasm' }, body: file };
  } else {
    const form = new FormData();
    form.append('component', file, file.name);
    form.append('config', config);
    options = { method: 'PUT', body: form };
  }
  showResult(article, `Uploading ${file.name}…`, true);
  try {
    const response = await api(`/admin/components/${encodeURIComponent(slot)}`, options);
    if (response.ok) {
      const body = await response.json();
      showResult(article, `Loaded ${short(body.loaded.sha256)} (${size(body.loaded.sizeBytes)}) from ${file.name}.`, true);
    } else {
      showResult(article, `Refused: ${await describeError(response)}`, false);
    }
    await pollComponents();
  } catch (e) {
    if (e instanceof AuthError) { disconnect(e.message); return; }
    showResult(article, `Upload failed: ${e.message}`, false);
  }
}

async function rollback(article, slot) {
  try {
    const response = await api(`/admin/components/${encodeURIComponent(slot)}/rollback`, { method: 'POST' });
    if (response.ok) {
      const body = await response.json();
      showResult(article, `Rolled back to ${short(body.current.sha256)}.`, true);
    } else {
      showResult(article, `Rollback refused: ${await describeError(response)}`, false);
    }
    await pollComponents();
  } catch (e) {
    if (e instanceof AuthError) { disconnect(e.message); return; }
    showResult(article, `Rollback failed: ${e.message}`, false);
  }
}

// ---- start --------------------------------------------------------------------------------

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  const value = $('token').value.trim();
  if (!value) { setAuthStatus('Enter the admin token.', true); return; }
  sessionStorage.setItem(TOKEN_KEY, value);
  $('token').value = '';
  connect();
});
$('logout').addEventListener('click', () => disconnect('Token forgotten. Enter the admin token to connect.'));
if (token()) connect();
