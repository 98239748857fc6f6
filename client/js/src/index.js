// A client of a Reprise host's HTTP API, in plain JavaScript with `fetch`
// only, so the same module works in Node (18+) and in a browser.
//
//   const client = new Client('http://127.0.0.1:8080', { token });
//   const exec = await client.start('producer', { n: 100 }, { window: 20 });
//   for await (const item of client.stream(exec.id)) { ... }
//
// Inputs, results, signal payloads and items travel as JSON; the host
// converts them to and from the MessagePack workflows see.

/** A request the host refused, or a workflow that failed or was cancelled. */
export class RepriseError extends Error {
  constructor(message, fields = {}) {
    super(message);
    this.name = 'RepriseError';
    // `status` (HTTP), `type` (the problem type), or for an execution that
    // ended badly `kind` (`workflow-error`, `trap`, ... or `cancelled`),
    // `code` and `details`.
    Object.assign(this, fields);
  }

  /** Whether trying again later may succeed (unreachable host, 5xx, 429). */
  get transient() {
    return this.status === undefined ? this.kind === undefined : this.status >= 500 || this.status === 429;
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

export class Client {
  /**
   * @param {string} base the host's URL, e.g. `http://127.0.0.1:8080`
   * @param {{token?: string, fetch?: typeof fetch}} [options]
   */
  constructor(base, options = {}) {
    this.base = base.replace(/\/+$/, '');
    this.token = options.token;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  async request(method, path, { query, body, signal } = {}) {
    const url = new URL(this.base + path);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    const headers = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let reply;
    try {
      reply = await this.fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new RepriseError(`${method} ${url.pathname}: the host is unreachable: ${e.cause?.message ?? e.message}`);
    }
    const text = await reply.text();
    let json;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!reply.ok) {
      const detail = json?.detail ?? json?.title ?? text;
      throw new RepriseError(`${method} ${url.pathname}: ${reply.status}: ${detail}`, {
        status: reply.status,
        type: json?.type,
      });
    }
    return json;
  }

  /**
   * Starts `workflow` on `input`. Options: `id` (starting one id twice
   * starts once), `window` / `windowBytes` (a stream paced by its
   * consumers), `onAbandon` (`'cancel'`, the host's default for a paced
   * stream, or `'continue'`: what happens once every consumer has left),
   * `wait` (milliseconds to wait for it to settle).
   */
  start(workflow, input, { id, window, windowBytes, onAbandon, wait } = {}) {
    const body = { input: input ?? null };
    if (id !== undefined) body.id = id;
    if (window !== undefined || windowBytes !== undefined) {
      body.stream = {};
      if (window !== undefined) body.stream.window = window;
      if (windowBytes !== undefined) body.stream.window_bytes = windowBytes;
      if (onAbandon !== undefined) body.stream.on_abandon = onAbandon;
    }
    return this.request('POST', `/v1/workflows/${encodeURIComponent(workflow)}/executions`, {
      query: { wait: wait ? `${wait}ms` : undefined },
      body,
    });
  }

  /** An execution's state. */
  status(id) {
    return this.request('GET', `/v1/executions/${encodeURIComponent(id)}`);
  }

  /**
   * Waits up to `timeout` ms (default 60 s) for the execution to settle
   * (end, or wait for a signal or its consumers) and returns its state.
   * The host holds each request open, so this is not a poll loop.
   */
  async wait(id, { timeout = 60_000 } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const left = Math.max(0, deadline - Date.now());
      const exec = await this.request('GET', `/v1/executions/${encodeURIComponent(id)}`, {
        query: { wait: left > 0 ? `${left}ms` : undefined },
      });
      const settled = ['completed', 'failed', 'cancelled'].includes(exec.status) || exec.wait;
      if (settled || Date.now() >= deadline) return exec;
    }
  }

  /** Sends the signal `name` with `payload` (JSON). */
  signal(id, name, payload) {
    return this.request(
      'POST',
      `/v1/executions/${encodeURIComponent(id)}/signals/${encodeURIComponent(name)}`,
      { body: { payload: payload ?? null } },
    );
  }

  /** Executions in the host's store by status (`running`, `suspended`, ...). */
  counts() {
    return this.request('GET', '/v1/counts');
  }

  /**
   * The execution replayed in a sandbox over its first `to` journal
   * entries: `{replayed, total, stop, result?, error?, log}`, `log` being
   * what the workflow logged on the way (no tool runs, nothing is written).
   */
  replay(id, to) {
    return this.request('GET', `/v1/executions/${encodeURIComponent(id)}/replay`, { query: { to } });
  }

  /** Cancels the execution (and its unfinished children unless `keepChildren`). */
  cancel(id, { keepChildren = false } = {}) {
    return this.request('DELETE', `/v1/executions/${encodeURIComponent(id)}`, {
      query: { keep_children: keepChildren ? 'true' : undefined },
    });
  }

  /**
   * The execution's output stream, for `for await (const item of ...)`.
   *
   * Batches of `batch` items are fetched one ahead of the batch being
   * consumed; fetching the next one tells the host the previous one was
   * read, so a slow consumer holds a paced producer back. A failed request
   * (host unreachable, 5xx) is retried `retries` times, resuming after the
   * last offset read: no item is lost or repeated. Ending the loop early
   * (`break`, `return`, an exception) closes the consumer session, which
   * lets the host cancel a producer nobody reads any more. The loop ends
   * after the last item; it throws a `RepriseError` if the workflow failed
   * (`kind`, `code`) or was cancelled (`kind: 'cancelled'`).
   * `iterator.lastOffset` is the offset of the last item it returned.
   */
  stream(id, { batch = 256, after, wait = 20_000, retries = 10, retryDelay = 100 } = {}) {
    const client = this;
    const path = `/v1/executions/${encodeURIComponent(id)}`;
    const abort = new AbortController();
    let session;
    let ended = false;
    let next = after;
    async function fetchBatch() {
      let failures = 0;
      let delay = retryDelay;
      for (;;) {
        try {
          const b = await client.request('GET', `${path}/items`, {
            query: { after: next, max: batch, wait: `${wait}ms`, session },
            signal: abort.signal,
          });
          if (b.session) session = b.session;
          if (b.next_after !== undefined && b.next_after !== null) next = b.next_after;
          return b;
        } catch (e) {
          if (abort.signal.aborted || !(e instanceof RepriseError) || !e.transient || failures >= retries) throw e;
          failures += 1;
          await sleep(delay, abort.signal);
          delay = Math.min(delay * 2, 5000);
        }
      }
    }
    const iterator = (async function* items() {
      let pending = fetchBatch();
      try {
        for (;;) {
          const b = await pending;
          const end = b.end;
          // The prefetch: the next batch is asked for while this one is
          // consumed, which acknowledges this one.
          pending = end ? null : fetchBatch();
          pending?.catch(() => {});
          for (const item of b.items) {
            iterator.lastOffset = item.offset;
            yield item.item;
          }
          if (end) {
            ended = true;
            if (end.status === 'completed') return;
            if (end.status === 'cancelled') {
              throw new RepriseError(`execution ${id} was cancelled`, { kind: 'cancelled' });
            }
            const e = end.error ?? {};
            throw new RepriseError(`execution ${id} failed (${e.kind}): ${e.message}`, {
              kind: e.kind,
              code: e.code,
              details: e.details,
            });
          }
        }
      } finally {
        abort.abort();
        if (!ended && session) {
          // Left early: close the session (best effort; it expires anyway).
          await client
            .request('DELETE', `${path}/sessions/${encodeURIComponent(session)}`)
            .catch(() => {});
        }
      }
    })();
    iterator.lastOffset = undefined;
    return iterator;
  }
}
