// Browser test of the demo: start `gateway-host demo` on free ports, open the page in
// Debian's chromium, and check what a person would: the live feed fills through the client
// module (/client.js), a message sent from the form is delivered and comes back in the feed,
// the component table shows the four slots; the voice panel shows a member join, drop out
// and leave (driven through the simulator); a dropped stream resumes with no duplicate; a
// burst of sends shows the rate-limit hint; after a host restart the page shows the reset
// and carries on.
// Usage: node demo.mjs <path to gateway-host> [screenshot directory].
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { freePort, launchChromium, waitReady } from './support.mjs';

const bin = process.argv[2];
assert.ok(bin, 'usage: node demo.mjs <gateway-host binary>');

const [http, admin] = [await freePort(), await freePort()];
// A fixed secret, so the page's cookie token stays valid across the host restart below.
const secret = [...crypto.getRandomValues(new Uint8Array(32))].map(b => b.toString(16).padStart(2, '0')).join('');
const startHost = () => spawn(bin, ['demo'], {
  env: { ...process.env, GATEWAY_HTTP_ADDR: `127.0.0.1:${http}`, GATEWAY_ADMIN_ADDR: `127.0.0.1:${admin}`,
    GATEWAY_JWT_SECRET: secret, GATEWAY_LEGACY_WS: '1', RUST_LOG: 'warn' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
let host = startHost();
const exited = (child) => new Promise(resolve => child.once('exit', resolve));
const noDuplicates = (ids) => { const seen = new Set(); for (const id of ids) { assert.ok(!seen.has(id), `id ${id} delivered twice`); seen.add(id); } };
const base = `http://127.0.0.1:${http}`;
let browser;
let failed = 0;
try {
  await waitReady(`${base}/readyz`, 60_000);
  browser = await launchChromium({ width: 1280, height: 720 });
  const page = await browser.newPage();
  await page.goto(base + '/');
  await page.waitForFunction(() => document.querySelectorAll('#feed li').length >= 2, null, { timeout: 20_000 });
  assert.equal(await page.textContent('#conn'), 'connected');

  const text = `browser test ${Date.now()}`;
  await page.fill('#content', text);
  await page.click('#send button');
  await page.waitForFunction(() => document.getElementById('send-status').textContent.length > 0, null, { timeout: 20_000 });
  assert.match(await page.textContent('#send-status'), /^delivered/);
  await page.waitForFunction(t => [...document.querySelectorAll('#feed .text')].some(e => e.textContent === t), text, { timeout: 20_000 });

  await page.waitForFunction(() => document.querySelectorAll('#components tr').length === 5, null, { timeout: 10_000 });
  const table = await page.textContent('#components');
  for (const slot of ['event-router', 'rate-limiter', 'command-validator', 'voice-filter']) assert.ok(table.includes(slot), slot);
  assert.ok(table.includes('link: connected'));

  // Voice panel: a member joins, drops out (the simulator rejoins them), then leaves.
  await page.waitForSelector('#voice-sim:not([hidden])', { timeout: 10_000 });
  await page.click('[data-voice=join]');
  await page.waitForFunction(() => window.lastVoice && window.lastVoice.channelId, null, { timeout: 10_000 });
  const { channelId, userId } = await page.evaluate(() => window.lastVoice);
  const memberSel = `#voice .channel[data-channel="${channelId}"] .member[data-user="${userId}"]`;
  await page.waitForSelector(memberSel, { timeout: 20_000 });
  await page.click('[data-voice=dropout]');
  await page.waitForSelector('#voice-log li[data-kind=dropout]', { timeout: 30_000 });
  await page.waitForSelector(`${memberSel}.dropped`, { timeout: 10_000 });
  const leavesBefore = await page.locator('#voice-log li[data-kind=leave]').count();
  await page.click('[data-voice=leave]');
  await page.waitForFunction(([sel, n]) => !document.querySelector(sel)
    && document.querySelectorAll('#voice-log li[data-kind=leave]').length > n, [memberSel, leavesBefore], { timeout: 20_000 });

  // The same voice helper over the legacy /api/ws bridge (the migration path) sees the same
  // story: join, dropout, leave.
  await page.evaluate(async ([guildId, channelId]) => {
    const { legacySource, voiceChannel } = await import('/client.js');
    const vc = voiceChannel(legacySource({ url: '/api/ws' }), guildId, channelId);
    window.legacyKinds = [];
    for (const kind of ['join', 'dropout', 'leave']) vc.on(kind, () => window.legacyKinds.push(kind));
    await new Promise(r => { const off = vc.source.on('joined', () => { off(); r(); }); });
  }, [await page.evaluate(() => window.lastVoice.guildId), channelId]);
  await page.click('[data-voice=join]');
  await page.waitForFunction(() => window.legacyKinds.includes('join'), null, { timeout: 20_000 });
  await page.click('[data-voice=dropout]');
  await page.waitForFunction(() => window.legacyKinds.includes('dropout'), null, { timeout: 30_000 });
  await page.click('[data-voice=leave]');
  await page.waitForFunction(() => window.legacyKinds.filter(k => k === 'leave').length >= 2, null, { timeout: 20_000 });

  // A dropped stream resumes from its last id: nothing missed twice, events keep coming.
  const before = await page.evaluate(() => window.seenIds.length);
  await page.click('#drop-streams');
  await page.waitForFunction(n => window.seenIds.length >= n + 3, before, { timeout: 30_000 });
  noDuplicates(await page.evaluate(() => window.seenIds));

  // A burst of sends meets the rate limiter: the page shows when to retry.
  for (let i = 0; i < 20; i++) {
    await page.evaluate(() => { document.getElementById('send-status').textContent = ''; });
    await page.click('#send button');
    await page.waitForFunction(() => document.getElementById('send-status').textContent.length > 0, null, { timeout: 20_000 });
    if (/rate limited: retry in \d+ s/.test(await page.textContent('#send-status'))) break;
  }
  assert.match(await page.textContent('#send-status'), /rate limited: retry in \d+ s/);

  // The host restarts: the page's client gets a reset (new host epoch), shows it, carries on.
  host.kill('SIGTERM');
  await exited(host);
  host = startHost();
  await waitReady(`${base}/readyz`, 60_000);
  await page.waitForSelector('#feed li.reset', { timeout: 60_000 });
  const afterRestart = await page.evaluate(() => window.seenIds.length);
  await page.waitForFunction(n => window.seenIds.length >= n + 2, afterRestart, { timeout: 30_000 });
  noDuplicates(await page.evaluate(() => window.seenIds));

  const out = process.argv[3] || tmpdir();
  mkdirSync(out, { recursive: true });
  await page.screenshot({ path: join(out, 'demo.png') });
} catch (e) {
  failed = 1;
  console.error(e);
} finally {
  if (browser) await browser.close();
  host.kill('SIGTERM');
}
console.log(`${1 - failed} passed, ${failed} failed`);
process.exit(failed);
