// Browser test of the demo: start `gateway-host demo` on free ports, open the page in
// Debian's chromium, and check what a person would: the live feed fills through
// EventSource, a message sent from the form is delivered and comes back in the feed, the
// component table shows the four slots.
// Usage: node demo.mjs <path to gateway-host> [screenshot directory].
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const bin = process.argv[2];
assert.ok(bin, 'usage: node demo.mjs <gateway-host binary>');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

async function waitReady(url, deadlineMs) {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    try { if ((await fetch(url)).status === 200) return; } catch (_) {}
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error(`not ready: ${url}`);
}

const [http, admin] = [await freePort(), await freePort()];
const host = spawn(bin, ['demo'], {
  env: { ...process.env, GATEWAY_HTTP_ADDR: `127.0.0.1:${http}`, GATEWAY_ADMIN_ADDR: `127.0.0.1:${admin}`, RUST_LOG: 'warn' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const base = `http://127.0.0.1:${http}`;
let browser;
let failed = 0;
try {
  await waitReady(`${base}/readyz`, 60_000);
  // A fresh profile directory each run (Playwright's way of passing --user-data-dir).
  browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'gw-chromium-')), {
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 720 },
  });
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
