// The client in a real browser: headless Chromium (`chromium` on PATH, or
// CHROMIUM) loads a page from one origin that imports src/index.js and
// reads a paced stream from a `reprise serve` on another origin, allowed
// by its `cors_origins`. The page reports what it read back to the page
// server. Needs REPRISE_BIN and REPRISE_GUESTS, like client.test.mjs.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = process.env.REPRISE_BIN;
const GUESTS = process.env.REPRISE_GUESTS;
const CHROMIUM = process.env.CHROMIUM || 'chromium';
if (!BIN || !GUESTS) throw new Error('set REPRISE_BIN and REPRISE_GUESTS');
const here = path.dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'reprise-browser-'));
after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 10 }));

const PAGE = `<!doctype html>
<script type="module">
  import { Client } from '/client.js';
  const report = (body) => fetch('/report', { method: 'POST', body: JSON.stringify(body) });
  try {
    const client = new Client(new URLSearchParams(location.search).get('host'));
    const exec = await client.start('producer', { n: 30 }, { window: 5 });
    const items = [];
    for await (const item of client.stream(exec.id, { batch: 4 })) items.push(item.i);
    const done = await client.wait(exec.id);
    const early = await client.start('producer', { n: 1000 }, { window: 3 });
    for await (const item of client.stream(early.id, { batch: 2 })) if (item.i === 1) break;
    const cancelled = await client.wait(early.id, { timeout: 30000 });
    report({ items, status: done.status, early: cancelled.status });
  } catch (e) {
    report({ error: String(e && e.stack || e) });
  }
</script>`;

/** Listens on a free loopback port; returns the server and its origin. */
async function listen(handler) {
  const server = createServer(handler);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

test('in headless Chromium, across origins: a paced stream and an early break', async () => {
  let reported;
  const got = new Promise((resolve) => (reported = resolve));
  const page = await listen((req, res) => {
    if (req.url.startsWith('/client.js')) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(path.join(here, '../src/index.js')));
    } else if (req.url === '/report') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        res.end();
        reported(JSON.parse(body));
      });
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(PAGE);
    }
  });

  // The host, allowing the page's origin.
  const config = path.join(dir, 'reprise.toml');
  writeFileSync(
    config,
    `listen = "127.0.0.1:0"\ndata_dir = "${path.join(dir, 'data')}"\ncors_origins = ["${page.origin}"]\n`,
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REPRISE_')));
  const host = spawn(BIN, ['serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    host.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on (\S+)\s/);
      if (m) resolve(m[1]);
    });
    host.on('exit', (code) => reject(new Error(`reprise serve exited (${code}): ${log}`)));
  });
  let chromium;
  try {
    const deployed = await fetch(`${url}/v1/workflows/producer`, {
      method: 'PUT',
      headers: { 'content-type': 'application/wasm' },
      body: readFileSync(path.join(GUESTS, 'producer.wasm')),
    });
    assert.equal(deployed.status, 201, await deployed.text());

    chromium = spawn(
      CHROMIUM,
      [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        `--user-data-dir=${path.join(dir, 'profile')}`,
        `${page.origin}/?host=${encodeURIComponent(url)}`,
      ],
      // Its own process group, so the whole browser (renderers, the crash
      // handler) can be killed at once: a helper left running keeps
      // writing to the profile the `after` hook removes.
      { stdio: 'ignore', detached: true },
    );
    chromium.on('error', (e) => reported({ error: `starting ${CHROMIUM}: ${e.message}` }));
    const timeout = setTimeout(() => reported({ error: 'no report from the page within 60 s' }), 60_000);
    const result = await got;
    clearTimeout(timeout);
    assert.equal(result.error, undefined, result.error);
    assert.deepEqual(result.items, Array.from({ length: 30 }, (_, i) => i));
    assert.equal(result.status, 'completed');
    assert.equal(result.early, 'cancelled');
  } finally {
    for (const child of [chromium, host]) {
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      await new Promise((resolve) => {
        child.on('exit', resolve);
        if (child === chromium) {
          try {
            process.kill(-child.pid, 'SIGKILL');
            return;
          } catch {
            // Not started as a group leader after all: kill it alone.
          }
        }
        child.kill('SIGKILL');
      });
    }
    page.server.close();
  }
});
