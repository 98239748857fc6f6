// The Reprise dashboard: one page, plain modules, no build step. It reads
// and acts through the same `/v1` API as any client, with the bearer token
// the user gives it (kept in this tab's sessionStorage), so it can do
// nothing that token cannot. Every value from the API goes into the page
// as text (`textContent`), never as HTML.

const TOKEN_KEY = 'reprise-token';
const PAGE = 200; // journal entries per page
const MAX_ITEMS_SHOWN = 500; // newest stream items kept on the page

const $ = (sel) => document.querySelector(sel);

/** An element: `h('td', {class: 'num'}, 'text', child, ...)`. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    // Through the CSSOM: the content security policy refuses style attributes.
    else if (k === 'style') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  fill(el, children, false);
  return el;
}

/** Sets (or, with `append`, adds to) `el`'s children: nodes, text, and
 * arrays of them; empty strings and nulls are skipped. */
function fill(el, children, replace = true) {
  const nodes = [];
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false || c === '') continue;
    nodes.push(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  if (replace) el.replaceChildren(...nodes);
  else el.append(...nodes);
  return el;
}

// ---- the API ----

class ApiError extends Error {
  constructor(status, problem, text) {
    super(problem?.detail || problem?.title || text || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** A call to the API; by default it belongs to the page shown, and is
 * aborted when the user moves on (so a late answer cannot overwrite the
 * next page). */
async function api(path, { method = 'GET', body, signal = pageLife.signal } = {}) {
  const sent = sessionStorage.getItem(TOKEN_KEY);
  const headers = { accept: 'application/json', ...authHeaders() };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    doc = null;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, doc, text);
    // Ask again only if the token refused is still the one in use (an
    // answer to a request sent before the user gave one is old news).
    if ((res.status === 401 || res.status === 403) && sent === sessionStorage.getItem(TOKEN_KEY)) {
      askToken(err.message);
    }
    throw err;
  }
  return doc;
}

/** Reads server-sent events from `path` with the token; calls `onEvent`
 * with `{event, data, id}` until the stream ends or `signal` aborts.
 * (EventSource cannot send an Authorization header.) */
async function readEvents(path, onEvent, signal) {
  const res = await fetch(path, { headers: { accept: 'text/event-stream', ...authHeaders() }, signal });
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n/g, '\n');
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const ev = { event: 'message', data: '', id: null };
      let any = false;
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        any = true;
        if (field === 'event') ev.event = v;
        else if (field === 'data') ev.data += (ev.data ? '\n' : '') + v;
        else if (field === 'id') ev.id = v;
      }
      if (any) onEvent(ev);
    }
  }
}

// ---- token, banner, formatting ----

function askToken(message) {
  const form = $('#token-form');
  form.hidden = false;
  if (message) banner(`${message} — enter a token with the rights this needs.`);
  $('#token-input').focus();
}

function banner(message) {
  const b = $('#banner');
  b.textContent = message || '';
  b.hidden = !message;
}

function fmtTime(ms) {
  return ms ? new Date(ms).toISOString().replace('T', ' ').replace('Z', '') : '';
}

function fmtAgo(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function fmtDuration(us) {
  if (us < 1000) return `${us} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

const json = (v) => JSON.stringify(v, null, 2);
const statusBadge = (s) => h('span', { class: `status ${s}`, 'data-status': s }, s);

function waitText(w) {
  if (!w) return '';
  switch (w.kind) {
    case 'timer':
      return `a timer, due ${fmtTime(w.wake_at_ms)}`;
    case 'signal':
      return `the signal "${w.signal}"`;
    case 'any':
      return `any of the signals ${w.signals.map((s) => `"${s}"`).join(', ')}` +
        (w.wake_at_ms ? `, or a timer due ${fmtTime(w.wake_at_ms)}` : '');
    case 'consumers':
      return 'its consumers to read (the stream window is full)';
    case 'ready':
      return 'a host to run it';
    default:
      return w.kind;
  }
}

function hashQuery() {
  const q = location.hash.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : location.hash.slice(q + 1));
}

// ---- pages ----

/** Work a page started (timers, streams): stopped when the page changes. */
let pageLife = new AbortController();

function every(ms, fn) {
  const id = setInterval(fn, ms);
  pageLife.signal.addEventListener('abort', () => clearInterval(id));
}

async function refreshCounts() {
  try {
    const c = await api('/v1/counts', { signal: null }); // the header outlives pages
    const el = $('#counts');
    el.replaceChildren(
      ...['running', 'suspended', 'completed', 'failed', 'cancelled'].map((s) =>
        h('a', { href: `#/executions?status=${s}`, 'data-count': s, title: `${s} executions` },
          statusBadge(s), ` ${c[s]}`)),
    );
  } catch {
    // The banner already says what is wrong when it is the token.
  }
}

async function executionsPage() {
  const q = hashQuery();
  const main = $('#main');
  const workflows = await api('/v1/workflows').then((w) => w.workflows).catch(() => []);
  const wf = h('select', { id: 'filter-workflow', name: 'workflow' },
    h('option', { value: '' }, 'all workflows'),
    workflows.map((w) => h('option', { value: w.name, selected: q.get('workflow') === w.name }, w.name)));
  const st = h('select', { id: 'filter-status', name: 'status' },
    h('option', { value: '' }, 'any status'),
    ['running', 'suspended', 'completed', 'failed', 'cancelled'].map((s) =>
      h('option', { value: s, selected: q.get('status') === s }, s)));
  const go = () => {
    const p = new URLSearchParams();
    if (wf.value) p.set('workflow', wf.value);
    if (st.value) p.set('status', st.value);
    location.hash = `#/executions?${p}`;
  };
  wf.addEventListener('change', go);
  st.addEventListener('change', go);
  const body = h('tbody', { id: 'executions' });
  const pager = h('div', { class: 'pager' });
  main.replaceChildren(
    h('h1', {}, 'Executions'),
    h('div', { class: 'filters' }, h('label', {}, 'Workflow', wf), h('label', {}, 'Status', st)),
    h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Id'), h('th', {}, 'Workflow'), h('th', {}, 'Status'),
        h('th', {}, 'Waits for'), h('th', { class: 'num' }, 'Steps'), h('th', {}, 'Changed'))),
      body),
    pager,
  );
  const params = new URLSearchParams({ limit: '50' });
  for (const k of ['workflow', 'status', 'cursor']) if (q.get(k)) params.set(k, q.get(k));
  const load = async () => {
    const list = await api(`/v1/executions?${params}`);
    body.replaceChildren(...list.executions.map((e) =>
      h('tr', { class: 'exec-row', 'data-id': e.id },
        h('td', { class: 'mono' }, h('a', { href: `#/executions/${encodeURIComponent(e.id)}` }, e.id)),
        h('td', {}, h('a', { href: `#/workflows/${encodeURIComponent(e.workflow)}` }, e.workflow)),
        h('td', {}, statusBadge(e.status)),
        h('td', {}, waitText(e.wait)),
        h('td', { class: 'num' }, e.steps),
        h('td', { title: fmtTime(e.updated_at_ms) }, fmtAgo(e.updated_at_ms)))));
    if (!list.executions.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No executions match.')));
    const next = new URLSearchParams(q);
    pager.replaceChildren(
      q.get('cursor') ? h('a', { href: `#/executions?${withoutCursor(q)}` }, '« First page') : '',
      list.next_cursor ? h('a', { id: 'next-page', href: `#/executions?${(next.set('cursor', list.next_cursor), next)}` }, 'Next page »') : '',
    );
  };
  await load();
  every(3000, () => load().catch(() => {}));
}

function withoutCursor(q) {
  const p = new URLSearchParams(q);
  p.delete('cursor');
  return p;
}

async function executionPage(id) {
  const main = $('#main');
  const path = `/v1/executions/${encodeURIComponent(id)}`;
  let view = await api(path);
  const summary = h('dl', { class: 'summary', id: 'summary' });
  const io = h('div', { class: 'grid2', id: 'io' });
  const children = h('div', { id: 'children' });
  const notice = h('div', { id: 'action-result' });
  const actions = actionsPanel(id, () => view, notice, () => refresh());
  const journal = journalPanel(id);
  const stream = h('section', { id: 'stream' });
  main.replaceChildren(
    h('h1', {}, 'Execution ', h('span', { class: 'mono' }, id)),
    summary, actions, notice, io, children, journal.el, stream,
  );
  const render = () => {
    const v = view;
    fill(summary, [
      h('dt', {}, 'Status'), h('dd', { id: 'status' }, statusBadge(v.status)),
      h('dt', {}, 'Workflow'), h('dd', {}, h('a', { href: `#/workflows/${encodeURIComponent(v.workflow)}` }, v.workflow),
        ' ', h('span', { class: 'muted mono', title: v.digest }, v.digest.slice(0, 12))),
      v.wait ? [h('dt', {}, 'Waits for'), h('dd', { id: 'wait' }, waitText(v.wait))] : '',
      h('dt', {}, 'Steps'), h('dd', { id: 'steps' }, `${v.steps} journal entries, ${v.invocations} invocations`),
      h('dt', {}, 'Created'), h('dd', {}, fmtTime(v.created_at_ms)),
      h('dt', {}, 'Changed'), h('dd', {}, `${fmtTime(v.updated_at_ms)} (${fmtAgo(v.updated_at_ms)})`),
      v.parent ? [h('dt', {}, 'Parent'), h('dd', {}, h('a', { href: `#/executions/${encodeURIComponent(v.parent)}` }, v.parent))] : '',
      v.stream ? [h('dt', {}, 'Stream'), h('dd', {}, `window ${v.stream.window ?? 'default'} items` +
        (v.stream.window_bytes ? `, ${fmtBytes(v.stream.window_bytes)}` : '') +
        (v.stream.on_abandon ? `, on abandon: ${v.stream.on_abandon}` : ''))] : '',
    ]);
    fill(io, [
      h('div', {}, h('h2', {}, 'Input'), h('pre', { id: 'input' }, json(v.input ?? null))),
      h('div', {},
        v.error ? [h('h2', {}, 'Error'), h('pre', { id: 'error' },
          `${v.error.kind}${v.error.code ? ` (${v.error.code})` : ''}: ${v.error.message}` +
          (v.error.details !== undefined ? `\n${json(v.error.details)}` : ''))]
          : [h('h2', {}, 'Result'), h('pre', { id: 'result' }, v.status === 'completed' ? json(v.result) : '—')]),
    ]);
    fill(children, [
      v.retrying?.length ? [h('h2', {}, 'Retrying calls'), h('table', {}, v.retrying.map((r) =>
        h('tr', {}, h('td', {}, r.tool), h('td', {}, `entry ${r.index}`), h('td', {}, `${r.attempts} attempts`),
          h('td', {}, `${r.last_error.code}: ${r.last_error.message}`), h('td', {}, `next ${fmtTime(r.next_attempt_at_ms)}`))))] : '',
      v.children?.length ? [h('h2', {}, 'Children'), h('table', {}, v.children.map((c) =>
        h('tr', {}, h('td', { class: 'mono' }, h('a', { href: `#/executions/${encodeURIComponent(c.id)}` }, c.id)),
          h('td', {}, c.workflow), h('td', {}, statusBadge(c.status)))))] : '',
    ]);
    actions.update(v);
  };
  let lastSteps = -1;
  let streaming = false;
  const showStream = () => {
    if (!streaming && (view.stream || journal.hasEmits())) {
      streaming = true;
      streamPanel(stream, id, view);
    }
  };
  const refresh = async () => {
    view = await api(path);
    render();
    if (view.steps !== lastSteps) {
      lastSteps = view.steps;
      await journal.reload(view);
    }
    showStream();
  };
  render();
  lastSteps = view.steps;
  await journal.reload(view);
  showStream();
  every(1500, () => {
    if (['completed', 'failed', 'cancelled'].includes(view.status) && lastSteps === view.steps) return;
    refresh().catch(() => {});
  });
}

function actionsPanel(id, current, notice, refresh) {
  const path = `/v1/executions/${encodeURIComponent(id)}`;
  const say = (ok, text) => notice.replaceChildren(h('div', { class: `notice ${ok ? 'ok' : 'err'}` }, text));
  const name = h('input', { id: 'signal-name', name: 'name', placeholder: 'signal name', required: true });
  const payload = h('textarea', { id: 'signal-payload', name: 'payload', placeholder: 'payload (JSON)' }, 'null');
  const signalForm = h('form', { id: 'signal-form' },
    h('label', {}, 'Signal', name), h('label', {}, 'Payload (JSON)', payload),
    h('button', { type: 'submit', id: 'signal-send' }, 'Send signal'));
  signalForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let body;
    try {
      body = { payload: JSON.parse(payload.value || 'null') };
    } catch (e) {
      say(false, `The payload is not JSON: ${e.message}`);
      return;
    }
    try {
      await api(`${path}/signals/${encodeURIComponent(name.value)}`, { method: 'POST', body });
      say(true, `Signal "${name.value}" delivered.`);
      await refresh();
    } catch (e) {
      say(false, `Signal not sent: ${e.message}`);
    }
  });
  const keep = h('input', { type: 'checkbox', id: 'keep-children' });
  const cancel = h('button', { type: 'button', id: 'cancel', class: 'danger' }, 'Cancel execution');
  cancel.addEventListener('click', async () => {
    if (!window.confirm(`Cancel execution ${id}?`)) return;
    try {
      await api(`${path}${keep.checked ? '?keep_children=true' : ''}`, { method: 'DELETE' });
      say(true, 'Cancelled.');
      await refresh();
    } catch (e) {
      say(false, `Not cancelled: ${e.message}`);
    }
  });
  const el = h('section', { class: 'actions' }, signalForm,
    h('form', { id: 'cancel-form' }, cancel, h('label', {}, 'Keep children', keep)));
  el.update = (v) => {
    const ended = ['completed', 'failed', 'cancelled'].includes(v.status);
    el.hidden = ended;
    const waiting = v.wait?.signal || v.wait?.signals?.[0];
    if (waiting && !name.value && document.activeElement !== name) name.value = waiting;
  };
  return el;
}

/** The journal as a timeline, a page at a time, and the time-travel
 * replay that marks the entries it replayed. */
function journalPanel(id) {
  const path = `/v1/executions/${encodeURIComponent(id)}`;
  let from = 0;
  let total = 0;
  let cut = null; // entries replayed by the last time-travel replay
  let entries = [];
  let created = 0;
  const body = h('tbody', { id: 'journal' });
  const pager = h('div', { class: 'pager', id: 'journal-pager' });
  const travelTo = h('input', { id: 'travel-to', type: 'number', min: 0, value: 0 });
  const travelOut = h('div', { id: 'travel' });
  const travelForm = h('form', { id: 'travel-form' },
    h('label', {}, 'Replay the first entries, up to (not including) entry', travelTo),
    h('button', { type: 'submit' }, 'Replay in sandbox'));
  travelForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    travel(Number(travelTo.value));
  });
  const signals = h('div', { id: 'signals' });
  const totalText = h('span', { class: 'muted', id: 'journal-total' });
  const el = h('section', {},
    signals,
    h('h2', {}, 'Journal ', totalText),
    h('table', { class: 'timeline' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Kind'), h('th', {}, 'Detail'),
        h('th', { class: 'num' }, 'At'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Duration'), h('th', {}))),
      body),
    pager,
    h('h2', {}, 'Time travel'),
    h('p', { class: 'hint' }, 'Runs this execution\'s own component again over the first entries of its journal, ' +
      'with no tools and no writes, and shows what the workflow logged up to there.'),
    travelForm, travelOut);

  async function travel(to) {
    travelOut.replaceChildren(h('p', { class: 'muted' }, `Replaying ${to} entries…`));
    try {
      const r = await api(`${path}/replay?to=${to}`);
      cut = r.replayed;
      travelTo.value = String(r.replayed);
      travelOut.replaceChildren(
        h('p', { id: 'travel-summary' }, `Replayed ${r.replayed} of ${r.total} entries: ` +
          (r.stop === 'reached' ? `the workflow then asks for entry ${r.replayed}.`
            : r.stop === 'completed' ? 'the workflow completed.' : `the workflow ${r.stop}.`)),
        r.error ? h('pre', { class: 'notice err' }, `${r.error.kind}: ${r.error.message}`) : '',
        r.result !== undefined ? h('pre', {}, json(r.result)) : '',
        h('table', { class: 'log', id: 'travel-log' },
          h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'After entry'), h('th', {}, 'Level'), h('th', {}, 'Message'))),
          h('tbody', {}, r.log.length ? r.log.map((l) => h('tr', { class: 'log-line' },
            h('td', { class: 'num' }, l.after === 0 ? '—' : l.after - 1),
            h('td', { class: `level ${l.level}` }, l.level), h('td', { class: 'mono' }, l.message)))
            : h('tr', {}, h('td', { colspan: 3, class: 'muted' }, 'The workflow logged nothing up to here.')))),
      );
      renderRows();
    } catch (e) {
      travelOut.replaceChildren(h('div', { class: 'notice err' }, `Replay failed: ${e.message}`));
    }
  }

  /** The signals the workflow received, from the entries shown. */
  function renderSignals() {
    const got = entries.filter((e) => e.kind === 'signal' || (e.kind === 'completion' && /^#\d+: signal /.test(e.detail)));
    fill(signals, got.length ? [
      h('h2', {}, 'Signals received', total > entries.length ? h('span', { class: 'muted' }, ' (in the journal page shown)') : ''),
      h('table', {}, h('tbody', {}, got.map((e) => h('tr', { class: 'signal-row' },
        h('td', { class: 'num' }, `entry ${e.index}`),
        h('td', { class: 'mono' }, e.kind === 'signal' ? e.detail : e.detail.replace(/^#\d+: signal /, '')),
        h('td', {}, fmtTime(e.at_ms)))))),
    ] : []);
  }

  function renderRows() {
    const max = Math.max(1, ...entries.map((e) => e.duration_us));
    body.replaceChildren(...entries.map((e) => h('tr', {
      class: `entry${cut !== null && e.index < cut ? ' replayed' : ''}${cut !== null && e.index === cut ? ' cut' : ''}`,
      'data-index': e.index, 'data-kind': e.kind,
    },
    h('td', { class: 'num' }, e.index),
    h('td', {}, h('span', { class: `kind ${e.kind}` }, e.kind)),
    h('td', { class: 'detail mono', title: e.detail }, e.detail),
    h('td', { class: 'num', title: fmtTime(e.at_ms) }, `+${((e.at_ms - created) / 1000).toFixed(3)} s`),
    h('td', { class: 'num' }, fmtBytes(e.size)),
    h('td', { class: 'bar', title: fmtDuration(e.duration_us) },
      fmtDuration(e.duration_us), h('span', { style: { width: `${Math.max(0.5, (100 * e.duration_us) / max)}%` } })),
    h('td', {}, h('button', { type: 'button', class: 'travel-here', title: 'Replay up to and including this entry', onclick: () => travel(e.index + 1) }, 'replay to here')))));
  }

  async function load() {
    const page = await api(`${path}/journal?after=${from}&limit=${PAGE}`);
    total = page.total;
    entries = page.entries;
    totalText.textContent = `(${total} entries)`;
    travelTo.max = String(total);
    renderRows();
    renderSignals();
    const last = Math.max(0, Math.floor((total - 1) / PAGE) * PAGE);
    const to = (n) => () => {
      from = n;
      load().catch((e) => banner(e.message));
    };
    pager.replaceChildren(
      h('span', { class: 'muted' }, total ? `Entries ${from}–${from + entries.length - 1} of ${total}` : 'No entries yet.'),
      from > 0 ? h('button', { type: 'button', onclick: to(0) }, '« First') : '',
      from > 0 ? h('button', { type: 'button', onclick: to(Math.max(0, from - PAGE)) }, '‹ Previous') : '',
      page.next_after !== undefined ? h('button', { type: 'button', id: 'journal-next', onclick: to(page.next_after) }, 'Next ›') : '',
      from < last ? h('button', { type: 'button', onclick: to(last) }, 'Last »') : '',
    );
  }

  return {
    el,
    hasEmits: () => entries.some((e) => e.kind === 'emit'),
    async reload(view) {
      created = view.created_at_ms;
      // Stay on the page shown; a new entry shows when that page is the last.
      await load();
    },
  };
}

/** The output stream, live, read as an observer (no consumer session, so
 * watching neither paces the workflow nor keeps it from being abandoned),
 * and the consumer sessions that do pace it. */
function streamPanel(section, id, view) {
  const path = `/v1/executions/${encodeURIComponent(id)}`;
  const list = h('ul', { id: 'stream-items' });
  const count = h('span', { id: 'stream-count' }, '0');
  const state = h('span', { id: 'stream-state', class: 'muted' }, 'connecting…');
  const sessions = h('tbody', { id: 'sessions' });
  section.replaceChildren(
    h('h2', {}, 'Output stream'),
    h('p', {}, 'Items received: ', count, ' — ', state,
      view.stream ? ` — window ${view.stream.window ?? 'default'} items ahead of the slowest consumer` : ''),
    list,
    h('h2', {}, 'Consumer sessions'),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Session'), h('th', { class: 'num' }, 'Read up to'),
      h('th', {}, 'Last read'), h('th', {}, 'State'))), sessions),
  );
  let n = 0;
  const signal = pageLife.signal;
  const follow = async () => {
    let after = -1;
    for (let attempt = 0; !signal.aborted && attempt < 20; attempt++) {
      try {
        const q = after >= 0 ? `&after=${after}` : '';
        await readEvents(`${path}/items?observe=true&max=100${q}`, (ev) => {
          if (ev.event === 'item') {
            after = Number(ev.id);
            n += 1;
            count.textContent = String(n);
            list.append(h('li', { class: 'mono', 'data-offset': ev.id }, `${ev.id}: ${ev.data}`));
            while (list.childElementCount > MAX_ITEMS_SHOWN) list.firstElementChild.remove();
            list.scrollTop = list.scrollHeight;
            state.textContent = 'live';
          } else if (ev.event === 'end' || ev.event === 'error') {
            const end = JSON.parse(ev.data);
            state.textContent = `ended: ${end.status}${end.error ? ` (${end.error.message})` : ''}`;
            attempt = Infinity;
          }
        }, signal);
        if (attempt === Infinity) return;
      } catch (e) {
        if (signal.aborted) return;
        state.textContent = `reconnecting (${e.message})`;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  };
  follow();
  const loadSessions = async () => {
    const s = await api(`${path}/sessions`);
    sessions.replaceChildren(...s.sessions.map((x) => h('tr', { class: 'session' },
      h('td', { class: 'mono' }, x.session), h('td', { class: 'num' }, x.acked ?? '—'),
      h('td', {}, fmtAgo(x.last_access_ms)), h('td', {}, x.closed ? 'closed' : x.live ? 'live' : 'expired'))));
    if (!s.sessions.length) sessions.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No consumer has read this stream.')));
  };
  loadSessions().catch(() => {});
  every(2000, () => loadSessions().catch(() => {}));
}

async function workflowsPage() {
  const list = await api('/v1/workflows');
  $('#main').replaceChildren(
    h('h1', {}, 'Workflows'),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', { class: 'num' }, 'Version'),
      h('th', {}, 'Digest'), h('th', {}, 'Deployed'), h('th', {}))),
    h('tbody', { id: 'workflows' }, list.workflows.map((w) => h('tr', { class: 'workflow-row' },
      h('td', {}, h('a', { href: `#/workflows/${encodeURIComponent(w.name)}` }, w.name)),
      h('td', { class: 'num' }, w.version), h('td', { class: 'mono', title: w.digest }, w.digest.slice(0, 16)),
      h('td', {}, fmtTime(w.deployed_at_ms)),
      h('td', {}, h('a', { href: `#/executions?workflow=${encodeURIComponent(w.name)}` }, 'executions')))))),
  );
}

async function workflowPage(name) {
  const w = await api(`/v1/workflows/${encodeURIComponent(name)}`);
  $('#main').replaceChildren(
    h('h1', {}, 'Workflow ', w.name),
    h('p', {}, h('a', { href: `#/executions?workflow=${encodeURIComponent(w.name)}` }, 'Its executions »')),
    h('h2', {}, 'Versions'),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Version'), h('th', {}, 'Digest'),
      h('th', {}, 'Deployed'), h('th', {}, 'Imports'))),
    h('tbody', { id: 'versions' }, w.versions.map((v) => h('tr', { class: v.version === w.current.version ? 'current' : '' },
      h('td', { class: 'num' }, v.version, v.version === w.current.version ? ' (current)' : ''),
      h('td', { class: 'mono' }, v.digest), h('td', {}, fmtTime(v.deployed_at_ms)),
      h('td', { class: 'mono' }, v.imports.join(', ')))))),
  );
}

// ---- routing ----

async function route() {
  pageLife.abort();
  pageLife = new AbortController();
  banner('');
  const hash = location.hash.split('?')[0];
  const parts = hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const life = pageLife;
  try {
    if (parts[0] === 'executions' && parts[1]) await executionPage(parts.slice(1).join('/'));
    else if (parts[0] === 'workflows' && parts[1]) await workflowPage(parts[1]);
    else if (parts[0] === 'workflows') await workflowsPage();
    else await executionsPage();
  } catch (e) {
    // A page the user has left says nothing.
    if (!life.signal.aborted) {
      $('#main').replaceChildren(h('div', { class: 'notice err', id: 'page-error' }, e.message));
    }
  }
}

$('#token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('#token-input').value.trim();
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  $('#token-input').value = '';
  $('#token-form').hidden = true;
  refreshCounts();
  route();
});
$('#token-clear').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  $('#token-form').hidden = true;
  route();
});
$('#token-button').addEventListener('click', () => {
  const form = $('#token-form');
  form.hidden = !form.hidden;
});
window.addEventListener('hashchange', route);
refreshCounts();
setInterval(refreshCounts, 2000);
route();
