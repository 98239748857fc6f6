// The dashboard (`/ui/`) in headless Chromium, driven by playwright-core,
// against a real `reprise serve` with bearer tokens and the Rust guests of
// this checkout. Needs REPRISE_BIN and REPRISE_GUESTS; screenshots of a
// failed test go to REPRISE_UI_ARTIFACTS (default: a temp directory, named
// in the failure).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.REPRISE_BIN;
const GUESTS = process.env.REPRISE_GUESTS;
if (!BIN || !GUESTS) throw new Error('set REPRISE_BIN and REPRISE_GUESTS');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ADMIN = 'dashboard-admin-token-0001';
const dir = mkdtempSync(path.join(tmpdir(), 'reprise-ui-'));
const ARTIFACTS = process.env.REPRISE_UI_ARTIFACTS || path.join(dir, 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

let host;
let url;
let browser;

/** The API, as the test's own client (not through the page). */
async function call(method, route, body, token = ADMIN) {
  const res = await fetch(`${url}${route}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function deploy(name) {
  const res = await fetch(`${url}/v1/workflows/${name}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/wasm' },
    body: readFileSync(path.join(GUESTS, `${name}.wasm`)),
  });
  assert.ok(res.ok, `deploying ${name}: ${res.status} ${await res.text()}`);
}

const start = (workflow, id, input, extra = {}) =>
  call('POST', `/v1/workflows/${workflow}/executions?wait=20s`, { id, input, ...extra });

before(async () => {
  const config = path.join(dir, 'reprise.toml');
  writeFileSync(
    config,
    `listen = "127.0.0.1:0"
data_dir = "${path.join(dir, 'data')}"

[[auth.tokens]]
name = "admin"
token = "${ADMIN}"
scopes = ["deploy", "invoke"]
`,
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REPRISE_')));
  host = spawn(BIN, ['serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let log = '';
  url = await new Promise((resolve, reject) => {
    host.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on (\S+)\s/);
      if (m) resolve(m[1]);
    });
    host.on('exit', (code) => reject(new Error(`reprise serve exited (${code}): ${log}`)));
  });
  for (const name of ['sequential', 'approval', 'steps', 'producer']) await deploy(name);
  for (const i of [1, 2, 3]) await start('sequential', `seq-${i}`, { user_id: i });
  for (const i of [1, 2]) await start('approval', `approval-${i}`, { deadline_ms: 3_600_000 });
  await start('steps', 'steps-25', { n: 25 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  if (host && host.exitCode === null) {
    await new Promise((resolve) => {
      host.on('exit', resolve);
      host.kill('SIGKILL');
    });
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 10 });
});

/** A fresh tab (its own session storage) with the admin token given
 * through the page's token form, on `hash`. A failure keeps a
 * screenshot. */
async function withPage(t, hash, fn, { token = ADMIN } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  try {
    await page.goto(`${url}/ui/${hash}`);
    if (token) {
      await page.locator('#token-form').waitFor({ state: 'visible' });
      await page.fill('#token-input', token);
      await page.click('#token-form button[type=submit]');
    }
    await fn(page);
    assert.deepEqual(errors, [], 'no script errors on the page');
  } catch (e) {
    const shot = path.join(ARTIFACTS, `${t.name.replace(/[^a-z0-9]+/gi, '-')}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    e.message += `\n(screenshot: ${shot}; page errors: ${errors.join('; ') || 'none'})`;
    throw e;
  } finally {
    await context.close();
  }
}

const rows = (page, sel) => page.locator(sel).count();

test('without a token the page asks for one; a wrong one is refused', async (t) => {
  await withPage(t, '#/executions', async (page) => {
    await page.locator('#token-form').waitFor({ state: 'visible' });
    await page.locator('#banner').waitFor({ state: 'visible' });
    assert.match(await page.textContent('#banner'), /bearer token/);
    await page.fill('#token-input', 'not-the-token-0000000000');
    await page.click('#token-form button[type=submit]');
    await page.waitForFunction(() => /not valid/.test(document.querySelector('#banner')?.textContent ?? ''));
    assert.equal(await rows(page, 'tr.exec-row'), 0);
  }, { token: null });
});

test('the list: every execution, filters, and live counts', async (t) => {
  await withPage(t, '#/executions', async (page) => {
    await page.waitForFunction(() => document.querySelectorAll('tr.exec-row').length === 6);
    await page.selectOption('#filter-status', 'suspended');
    await page.waitForFunction(() => location.hash.includes('status=suspended') &&
      document.querySelectorAll('tr.exec-row').length === 2);
    const statuses = await page.locator('tr.exec-row .status').allTextContents();
    assert.deepEqual(statuses, ['suspended', 'suspended']);
    await page.selectOption('#filter-status', '');
    await page.selectOption('#filter-workflow', 'sequential');
    await page.waitForFunction(() => location.hash.includes('workflow=sequential') &&
      document.querySelectorAll('tr.exec-row').length === 3);
    const ids = (await page.locator('tr.exec-row').evaluateAll((r) => r.map((x) => x.dataset.id))).sort();
    assert.deepEqual(ids, ['seq-1', 'seq-2', 'seq-3']);
    const counts = await call('GET', '/v1/counts');
    await page.waitForFunction((n) => document.querySelector('[data-count=completed]')?.textContent.trim().endsWith(` ${n}`)
      || document.querySelector('[data-count=completed]')?.textContent.trim() === `completed ${n}`, counts.completed);
    assert.equal(counts.completed, 4);
    assert.equal(counts.suspended, 2);
    // The counts are live: a new execution shows without reloading.
    await start('sequential', 'seq-4', { user_id: 4 });
    await page.waitForFunction(() => /completed\s*5$/.test(document.querySelector('[data-count=completed]')?.textContent ?? ''.trim()));
  });
});

test('an execution: input, result, and a timeline with one bar per step', async (t) => {
  const journal = await call('GET', '/v1/executions/steps-25/journal?limit=1000');
  assert.ok(journal.total >= 25, `${journal.total}`);
  await withPage(t, '#/executions/steps-25', async (page) => {
    await page.waitForFunction((n) => document.querySelectorAll('tr.entry').length === n, journal.total);
    const kinds = await page.locator('tr.entry').evaluateAll((r) => r.map((x) => x.dataset.kind));
    assert.deepEqual(kinds, journal.entries.map((e) => e.kind));
    assert.equal(await rows(page, 'tr.entry .bar span'), journal.total);
    assert.deepEqual(JSON.parse(await page.textContent('#input')), { n: 25 });
    assert.equal(JSON.parse(await page.textContent('#result')).steps, 25);
    assert.match(await page.textContent('#status'), /completed/);
  });
});

test('time travel: replayed in a sandbox to entry k, with the log up to there', async (t) => {
  await withPage(t, '#/executions/seq-1', async (page) => {
    await page.waitForFunction(() => document.querySelectorAll('tr.entry').length === 3);
    await page.click('tr.entry[data-index="0"] .travel-here');
    await page.waitForSelector('#travel-summary');
    assert.match(await page.textContent('#travel-summary'), /Replayed 1 of 3 entries: the workflow then asks for entry 1/);
    assert.deepEqual(await page.locator('tr.log-line td.mono').allTextContents(), ['user 1 is User 1']);
    assert.equal(await rows(page, 'tr.entry.replayed'), 1);
    await page.fill('#travel-to', '3');
    await page.click('#travel-form button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('tr.log-line').length === 3);
    const lines = await page.locator('tr.log-line td.mono').allTextContents();
    assert.equal(lines[0], 'user 1 is User 1');
    assert.match(lines[1], /^\d+ posts$/);
    assert.match(lines[2], /^\d+ comments$/);
    assert.match(await page.textContent('#travel-summary'), /Replayed 3 of 3 entries: the workflow completed/);
    assert.equal(await rows(page, 'tr.entry.replayed'), 3);
  });
  // Replays ran nothing: the journal is as it was.
  assert.equal((await call('GET', '/v1/executions/seq-1')).steps, 3);
});

test('a live output stream receives items as they are emitted', async (t) => {
  await call('POST', '/v1/workflows/producer/executions', {
    id: 'producer-1', input: { n: 30, sleep_ms: 150 }, stream: { window: 100 },
  });
  await withPage(t, '#/executions/producer-1', async (page) => {
    await page.waitForSelector('#stream-count');
    // Seen while the producer still runs, then through to its end.
    await page.waitForFunction(() => {
      const n = Number(document.querySelector('#stream-count')?.textContent ?? '');
      return n > 0 && n < 30;
    });
    await page.waitForFunction(() => /ended: completed/.test(document.querySelector('#stream-state')?.textContent ?? ''),
      null, { timeout: 30_000 });
    assert.equal(await page.textContent('#stream-count'), '30');
    const offsets = await page.locator('#stream-items li').evaluateAll((l) => l.map((x) => Number(x.dataset.offset)));
    assert.deepEqual(offsets, Array.from({ length: 30 }, (_, i) => i));
  });
  // Watching is not consuming: the dashboard opened no session.
  assert.deepEqual((await call('GET', '/v1/executions/producer-1/sessions')).sessions, []);
});

test('a signal sent from the page completes the execution', async (t) => {
  await withPage(t, '#/executions/approval-1', async (page) => {
    await page.waitForFunction(() => /suspended/.test(document.querySelector('#status')?.textContent ?? ''));
    assert.match(await page.textContent('#wait'), /signals "approve", or a timer due/);
    assert.equal(await page.inputValue('#signal-name'), 'approve');
    await page.fill('#signal-payload', '{"by": "dashboard"}');
    await page.click('#signal-send');
    await page.waitForFunction(() => /completed/.test(document.querySelector('#status')?.textContent ?? ''));
    assert.deepEqual(JSON.parse(await page.textContent('#result')), { approved: { by: 'dashboard' } });
    // The signal is listed as received, with the entry that recorded it.
    await page.waitForSelector('tr.signal-row');
    assert.match(await page.textContent('#signals'), /approve/);
  });
  assert.equal((await call('GET', '/v1/executions/approval-1')).status, 'completed');
});

test('with a token the host no longer takes, cancel is refused and nothing changes', async (t) => {
  await withPage(t, '#/executions/approval-2', async (page) => {
    await page.waitForFunction(() => /suspended/.test(document.querySelector('#status')?.textContent ?? ''));
    await page.evaluate(() => sessionStorage.setItem('reprise-token', 'revoked-token-000000000'));
    page.once('dialog', (d) => d.accept());
    await page.click('#cancel');
    await page.waitForSelector('#action-result .notice.err');
    assert.match(await page.textContent('#action-result'), /Not cancelled: .*not valid/);
  });
  assert.equal((await call('GET', '/v1/executions/approval-2')).status, 'suspended');
});

test('cancel from the page', async (t) => {
  await withPage(t, '#/executions/approval-2', async (page) => {
    await page.waitForFunction(() => /suspended/.test(document.querySelector('#status')?.textContent ?? ''));
    page.once('dialog', (d) => d.accept());
    await page.click('#cancel');
    await page.waitForFunction(() => /cancelled/.test(document.querySelector('#status')?.textContent ?? ''));
  });
  assert.equal((await call('GET', '/v1/executions/approval-2')).status, 'cancelled');
});

test('workflows and their versions', async (t) => {
  await deploy('sequential');
  await withPage(t, '#/workflows', async (page) => {
    await page.waitForFunction(() => document.querySelectorAll('tr.workflow-row').length === 4);
    await page.click('tr.workflow-row a:text-is("sequential")');
    await page.waitForSelector('#versions tr');
    assert.equal(await rows(page, '#versions tr'), 1, 'the same bytes again are the same version');
    assert.match(await page.textContent('#versions'), /\(current\)/);
  });
});

test('the files carry a strict content security policy', async () => {
  const res = await fetch(`${url}/ui/`);
  assert.equal(res.status, 200);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  const again = await fetch(`${url}/ui/app.js`, { headers: { 'if-none-match': (await fetch(`${url}/ui/app.js`)).headers.get('etag') } });
  assert.equal(again.status, 304);
});
