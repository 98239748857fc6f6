// Page load of an execution with a long journal: `node bench/page-load.mjs`
// with REPRISE_BIN and REPRISE_GUESTS set (as for the tests). Starts a
// host on a temporary embedded store, runs `steps` with n entries
// (default 10,000; N=...), then loads the execution's page in headless
// Chromium R times (default 5), each in a fresh tab, and reports, per
// load: first contentful paint, and the time until the first page of the
// timeline is on screen. Also the journal API's first page, timed from
// Node, as the floor the page builds on.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const N = Number(process.env.N || 10000);
const R = Number(process.env.R || 5);
const dir = mkdtempSync(path.join(tmpdir(), 'reprise-ui-bench-'));
const config = path.join(dir, 'reprise.toml');
writeFileSync(config, `listen = "127.0.0.1:0"\ndata_dir = "${path.join(dir, 'data')}"\n`);
const host = spawn(process.env.REPRISE_BIN, ['serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
const url = await new Promise((resolve) => host.stderr.on('data', (c) => {
  log += c;
  const m = log.match(/listening on (\S+)\s/);
  if (m) resolve(m[1]);
}));
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return `median ${s[Math.floor(s.length / 2)].toFixed(0)} ms (min ${s[0].toFixed(0)}, max ${s[s.length - 1].toFixed(0)})`;
};
try {
  await fetch(`${url}/v1/workflows/steps`, {
    method: 'PUT', headers: { 'content-type': 'application/wasm' },
    body: readFileSync(path.join(process.env.REPRISE_GUESTS, 'steps.wasm')),
  });
  const started = await fetch(`${url}/v1/workflows/steps/executions?wait=120s`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'long', input: { n: N } }),
  }).then((r) => r.json());
  console.log(`execution: ${started.status}, ${started.steps} journal entries`);
  const api = [];
  for (let i = 0; i < R; i++) {
    const t = performance.now();
    await fetch(`${url}/v1/executions/long/journal?after=0&limit=200`).then((r) => r.json());
    api.push(performance.now() - t);
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const fcp = [];
  const timeline = [];
  for (let i = 0; i < R; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const t = performance.now();
    await page.goto(`${url}/ui/#/executions/long`);
    await page.waitForFunction(() => document.querySelectorAll('tr.entry').length === 200);
    timeline.push(performance.now() - t);
    fcp.push(await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN));
    await context.close();
  }
  await browser.close();
  console.log(`journal API, first page of 200: ${stats(api)}`);
  console.log(`first contentful paint: ${stats(fcp)}`);
  console.log(`navigation to the first 200 entries on screen (of ${started.steps}): ${stats(timeline)}`);
} finally {
  host.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
