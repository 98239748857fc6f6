// The client against a real `reprise serve` (REPRISE_BIN), with the Rust
// `producer` guest (REPRISE_GUESTS/producer.wasm): run by
// cli/tests/js_client.rs, or by hand with both variables set.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { Client, RepriseError } from '../src/index.js';

const BIN = process.env.REPRISE_BIN;
const GUESTS = process.env.REPRISE_GUESTS;
if (!BIN || !GUESTS) throw new Error('set REPRISE_BIN and REPRISE_GUESTS');

const dir = mkdtempSync(path.join(tmpdir(), 'reprise-js-client-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `reprise serve` on `port` with the data directory `data`. */
async function serve(port, data) {
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', data], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REPRISE_'))),
  });
  let log = '';
  await new Promise((resolve, reject) => {
    child.stderr.on('data', (chunk) => {
      log += chunk;
      if (log.includes('listening on')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`reprise serve exited (${code}): ${log}`)));
  });
  return child;
}

function kill(child) {
  return new Promise((resolve) => {
    child.on('exit', resolve);
    child.kill('SIGKILL');
  });
}

async function host() {
  const port = await freePort();
  const data = mkdtempSync(path.join(dir, 'data-'));
  const child = await serve(port, data);
  const client = new Client(`http://127.0.0.1:${port}`);
  for (const guest of ['producer', 'signals']) {
    const reply = await fetch(`${client.base}/v1/workflows/${guest}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/wasm' },
      body: readFileSync(path.join(GUESTS, `${guest}.wasm`)),
    });
    assert.equal(reply.status, 201, await reply.text());
  }
  return { port, data, child, client };
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('a paced stream read with for await: the producer waits for a slow consumer', async () => {
  const { child, client } = await host();
  try {
    const exec = await client.start('producer', { n: 60, size: 4 }, { window: 10 });
    const seen = [];
    let paused = false;
    for await (const item of client.stream(exec.id, { batch: 4 })) {
      seen.push(item.i);
      if (!paused && seen.length === 8) {
        // Stop reading: the producer fills its window and then waits
        // for its consumers, holding nothing.
        paused = true;
        let status;
        for (let i = 0; i < 100; i++) {
          status = await client.status(exec.id);
          if (status.wait?.kind === 'consumers') break;
          await pause(50);
        }
        assert.equal(status.wait?.kind, 'consumers', JSON.stringify(status));
      }
    }
    assert.deepEqual(seen, Array.from({ length: 60 }, (_, i) => i));
    const done = await client.wait(exec.id);
    assert.equal(done.status, 'completed');
    assert.equal(done.result, 60);
  } finally {
    await kill(child);
  }
});

test('an early break closes the session and cancels the producer', async () => {
  const { child, client } = await host();
  try {
    const exec = await client.start('producer', { n: 1000 }, { window: 5, onAbandon: 'cancel' });
    const seen = [];
    for await (const item of client.stream(exec.id, { batch: 2 })) {
      seen.push(item.i);
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, [0, 1, 2]);
    const done = await client.wait(exec.id, { timeout: 30_000 });
    assert.equal(done.status, 'cancelled', JSON.stringify(done));
  } finally {
    await kill(child);
  }
});

test('a host restart mid-stream: every item once, in order', async () => {
  let { port, data, child, client } = await host();
  try {
    const exec = await client.start('producer', { n: 200, size: 8 }, { window: 50 });
    const seen = [];
    const stream = client.stream(exec.id, { batch: 10, retryDelay: 50 });
    for await (const item of stream) {
      seen.push(item.i);
      if (seen.length === 35) {
        await kill(child);
        // Back on the same port and data: the loop's next request fails
        // until then and is retried after the last offset it read.
        setTimeout(async () => {
          child = await serve(port, data);
        }, 300);
      }
    }
    assert.deepEqual(seen, Array.from({ length: 200 }, (_, i) => i));
    assert.equal(stream.lastOffset, 199);
    assert.equal((await client.wait(exec.id)).status, 'completed');
  } finally {
    await kill(child);
  }
});

test('signal, wait, cancel, a failed execution and a refused request', async () => {
  const { child, client } = await host();
  try {
    const exec = await client.start('producer', { n: 3, fail: true });
    const items = [];
    await assert.rejects(
      (async () => {
        for await (const item of client.stream(exec.id)) items.push(item.i);
      })(),
      (e) => e instanceof RepriseError && e.kind === 'workflow-error',
    );
    assert.deepEqual(items, [0, 1, 2]);

    const waiting = await client.start('signals', { sleep_ms: 10 });
    const parked = await client.wait(waiting.id);
    assert.equal(parked.status, 'suspended', JSON.stringify(parked));
    await client.signal(waiting.id, 'approve', { by: 'ada' });
    const done = await client.wait(waiting.id);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.result.approved_by, 'ada');

    const cancelled = await client.start('signals', { sleep_ms: 60_000 });
    assert.equal((await client.cancel(cancelled.id)).status, 'cancelled');

    const counts = await client.counts();
    assert.equal(counts.cancelled, 1, JSON.stringify(counts));
    assert.equal(counts.completed, 1, JSON.stringify(counts));
    const replay = await client.replay(waiting.id, 1000);
    assert.equal(replay.stop, 'completed', JSON.stringify(replay));
    assert.deepEqual(replay.result, done.result);
    assert.equal(replay.replayed, replay.total);

    await assert.rejects(client.status('no-such-execution'), (e) => e.status === 404);
    await assert.rejects(client.signal('no-such-execution', 'go', 1), (e) => e.status === 404);
  } finally {
    await kill(child);
  }
});
