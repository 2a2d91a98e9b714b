// Browser test of the operator console: start `gateway-host demo` with an admin token on free
// ports, open /admin/console on the admin listener in Debian's chromium, and check what an
// operator would: a wrong token is refused with a clear message; with the right one the
// charts fill (events/s, latency percentiles, link state) and the SSE client count follows a
// stream this test opens and closes; a component uploaded from the page swaps the slot (its
// sha and swap count change on the page), the rollback button restores it, a bad upload shows
// the server's refusal (status, code, step, message), and an upload with a config is sent as
// multipart `component` + `config`.
// Usage: node console.mjs <gateway-host binary> <component dir> [screenshot directory]
// (<component dir> holds voice_typing.wasm, a voice-filter built by `just e2e`).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { freePort, launchChromium, waitReady } from './support.mjs';

const [bin, componentDir] = process.argv.slice(2, 4);
assert.ok(bin && componentDir, 'usage: node console.mjs <gateway-host binary> <component dir> [out dir]');
const replacement = join(componentDir, 'voice_typing.wasm');
assert.ok(existsSync(replacement), `missing ${replacement} (built by \`just e2e\`)`);

const hex = (n) => [...crypto.getRandomValues(new Uint8Array(n))].map(b => b.toString(16).padStart(2, '0')).join('');
const [http, admin] = [await freePort(), await freePort()];
const secret = hex(32);
const adminToken = hex(16);
const env = { ...process.env, GATEWAY_HTTP_ADDR: `127.0.0.1:${http}`, GATEWAY_ADMIN_ADDR: `127.0.0.1:${admin}`,
  GATEWAY_JWT_SECRET: secret, GATEWAY_ADMIN_TOKEN: adminToken, RUST_LOG: 'warn' };
const host = spawn(bin, ['demo'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
const base = `http://127.0.0.1:${http}`;
const adminBase = `http://127.0.0.1:${admin}`;
const slot = '.slot[data-slot="voice-filter"]';
let browser;
let stream;
let failed = 0;
try {
  await waitReady(`${base}/readyz`, 60_000);
  browser = await launchChromium({ width: 1280, height: 1400 });
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', e => pageErrors.push(e));
  // Refused API calls (the wrong token, the bad upload) log 'Failed to load resource': expected.
  page.on('console', m => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(new Error(m.text())); });
  await page.goto(`${adminBase}/admin/console`);

  // A wrong token: refused, said so, the dashboard stays hidden and the token is not kept.
  await page.fill('#token', 'not-the-token');
  await page.click('#login button');
  await page.waitForFunction(() => /refused \(403 forbidden\)/.test(document.getElementById('auth-status').textContent), null, { timeout: 10_000 });
  assert.ok(await page.isHidden('#dashboard'));
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  // The right one.
  await page.fill('#token', adminToken);
  await page.click('#login button');
  await page.waitForFunction(() => document.getElementById('auth-status').textContent === 'Connected.', null, { timeout: 10_000 });

  // The charts fill: events/s above zero, latency percentiles present, the link connected,
  // and no SSE client yet (this test has not opened one, the demo page is not open).
  await page.waitForFunction(() => {
    const ev = document.getElementById('chart-events').dataset;
    const lat = document.getElementById('chart-latency').dataset;
    return Number(ev.points) >= 3 && Number(ev.max) > 0 && Number(lat.points) >= 2;
  }, null, { timeout: 30_000 });
  assert.equal(await page.getAttribute('#chart-link', 'data-last'), 'connected');
  assert.equal(await page.getAttribute('#chart-link', 'data-down'), '0');
  assert.ok(await page.locator('#chart-latency polyline.p99').count() >= 1, 'a p99 line is drawn');
  assert.equal(await page.getAttribute('#chart-clients', 'data-last'), '0');
  assert.match(await page.textContent('#now-latency'), /^[\d.]+ \/ [\d.]+ \/ [\d.]+ ms$/);

  // An SSE client opens: the count shows it; it closes: back to zero.
  const minted = spawnSync(bin, ['token', '--sub', '100000000000000042', '--topics', '*'], { env, encoding: 'utf8' });
  assert.equal(minted.status, 0, minted.stderr);
  stream = new AbortController();
  const response = await fetch(`${base}/api/stream?topics=*`, {
    headers: { Authorization: `Bearer ${minted.stdout.trim()}` }, signal: stream.signal });
  assert.equal(response.status, 200);
  const reader = response.body.getReader();
  const reading = (async () => { try { while (!(await reader.read()).done); } catch (_) {} })();
  await page.waitForFunction(() => document.getElementById('chart-clients').dataset.last === '1', null, { timeout: 15_000 });
  assert.equal(await page.textContent('#now-clients'), '1');
  stream.abort();
  await reading;
  await page.waitForFunction(() => document.getElementById('chart-clients').dataset.last === '0', null, { timeout: 15_000 });
  const pointsBefore = Number(await page.getAttribute('#chart-events', 'data-points'));

  // The slots: four of them, each with its version, breaker, failure policy and config cell.
  await page.waitForFunction(() => document.querySelectorAll('#slots .slot').length === 4, null, { timeout: 10_000 });
  for (const s of ['event-router', 'rate-limiter', 'command-validator', 'voice-filter']) {
    const text = await page.textContent(`.slot[data-slot="${s}"]`);
    assert.match(text, /closed \(0 in a row/, `${s} breaker shown`);
    assert.match(await page.textContent(`.slot[data-slot="${s}"] .sha`), /^[0-9a-f]{12}$/);
  }
  const originalSha = await page.getAttribute(slot, 'data-sha');
  const swaps0 = Number(await page.getAttribute(slot, 'data-swaps'));
  assert.equal(await page.textContent(`${slot} .source`), 'default');
  assert.ok(await page.isDisabled(`${slot} .rollback`), 'no previous version: rollback disabled');

  // Swap from the page: a real component, raw upload (no config).
  await page.setInputFiles(`${slot} .file`, replacement);
  await page.click(`${slot} .upload-button`);
  await page.waitForFunction(s => /^Loaded [0-9a-f]{12}/.test(document.querySelector(`${s} .result`).textContent), slot, { timeout: 30_000 });
  await page.waitForFunction(([s, sha, n]) => {
    const a = document.querySelector(s);
    return a.dataset.sha !== sha && Number(a.dataset.swaps) === n + 1;
  }, [slot, originalSha, swaps0], { timeout: 10_000 });
  const swappedSha = await page.getAttribute(slot, 'data-sha');
  assert.equal(await page.textContent(`${slot} .source`), 'admin');
  assert.equal(await page.textContent(`${slot} .previous`), `${originalSha.slice(0, 12)} (default)`);
  // Same as what the admin API says.
  const apiView = await (await fetch(`${adminBase}/admin/components/voice-filter`, { headers: { Authorization: `Bearer ${adminToken}` } })).json();
  assert.equal(apiView.current.sha256, swappedSha);

  // Roll back from the page.
  await page.click(`${slot} .rollback`);
  await page.waitForFunction(([s, sha]) => document.querySelector(`${s} .result`).textContent === `Rolled back to ${sha.slice(0, 12)}.`,
    [slot, originalSha], { timeout: 10_000 });
  await page.waitForFunction(([s, sha, n]) => {
    const a = document.querySelector(s);
    return a.dataset.sha === sha && Number(a.dataset.swaps) === n + 2;
  }, [slot, originalSha, swaps0], { timeout: 10_000 });

  // A bad upload: the server's refusal is shown, the slot keeps its version.
  await page.setInputFiles(`${slot} .file`, { name: 'broken.wasm', mimeType: 'application/wasm', buffer: Buffer.from('not a component') });
  await page.click(`${slot} .upload-button`);
  await page.waitForFunction(s => document.querySelector(`${s} .result`).textContent.startsWith('Refused:'), slot, { timeout: 30_000 });
  assert.match(await page.textContent(`${slot} .result`), /^Refused: 422 component_rejected at step "compile": .+/);
  assert.ok(await page.locator(`${slot} .result.error`).count() === 1, 'shown as an error');
  assert.equal(await page.getAttribute(slot, 'data-sha'), originalSha);
  await page.waitForFunction(s => document.querySelector(`${s} .rejection`).textContent.includes('from admin'), slot, { timeout: 10_000 });

  // With a config, the page sends multipart `component` (the wasm) + `config` (the TOML).
  let seen;
  await page.route('**/admin/components/voice-filter', async (route) => {
    const req = route.request();
    seen = { method: req.method(), type: req.headers()['content-type'] || '', body: req.postDataBuffer() };
    await route.continue();
  });
  await page.setInputFiles(`${slot} .file`, replacement);
  await page.fill(`${slot} .config-text`, 'mode = "console-test"');
  const answered = page.waitForResponse(r => r.url().endsWith('/admin/components/voice-filter') && r.request().method() === 'PUT');
  await page.click(`${slot} .upload-button`);
  const answer = await answered;
  assert.equal(seen.method, 'PUT');
  const boundary = /^multipart\/form-data; boundary=(.+)$/.exec(seen.type);
  assert.ok(boundary, `multipart content type, got ${seen.type}`);
  const body = seen.body.toString('latin1');
  assert.match(body, /Content-Disposition: form-data; name="component"; filename="voice_typing.wasm"/);
  assert.match(body, /Content-Disposition: form-data; name="config"\r\n\r\nmode = "console-test"\r\n/);
  // The host loads it with that config, and the page shows the config it answered with.
  assert.equal(answer.status(), 200, `multipart upload answered ${answer.status()}`);
  await page.waitForFunction(s => /^Loaded /.test(document.querySelector(`${s} .result`).textContent), slot, { timeout: 10_000 });
  await page.waitForFunction(s => document.querySelector(`${s} .config`).textContent.includes('mode = "console-test"'), slot, { timeout: 10_000 });
  const configured = await (await fetch(`${adminBase}/admin/components/voice-filter`, { headers: { Authorization: `Bearer ${adminToken}` } })).json();
  assert.deepEqual(configured.current.config, { mode: 'console-test' });
  assert.equal(configured.current.configSource, 'admin');
  await page.unroute('**/admin/components/voice-filter');

  // The charts kept moving while all this happened.
  await page.waitForFunction(n => Number(document.getElementById('chart-events').dataset.points) > n, pointsBefore, { timeout: 10_000 });

  const out = process.argv[4] || tmpdir();
  mkdirSync(out, { recursive: true });
  await page.screenshot({ path: join(out, 'console.png'), fullPage: true });

  // Forgetting the token stops the console.
  await page.click('#logout');
  assert.ok(await page.isHidden('#dashboard'));
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.deepEqual(pageErrors, [], 'no script errors');

} catch (e) {
  failed = 1;
  console.error(e);
} finally {
  if (stream) stream.abort();
  if (browser) await browser.close();
  host.kill('SIGTERM');
}
console.log(`console: ${1 - failed} passed, ${failed} failed`);
process.exit(failed);
