// What the browser tests share: free loopback ports, waiting for a host to answer, and
// Debian's Chromium launched the one way this machine allows (headless, no sandbox, no
// network of its own, a fresh profile directory each run).

import { createServer } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

export async function waitReady(url, deadlineMs) {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    try { if ((await fetch(url)).status === 200) return; } catch (_) {}
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error(`not ready: ${url}`);
}

// A fresh profile directory each run (Playwright's way of passing --user-data-dir).
export function launchChromium(viewport) {
  return chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'gw-chromium-')), {
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport,
  });
}
