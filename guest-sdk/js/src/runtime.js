// The driver that turns a generator workflow into the `run` export of a
// Reprise component. `reprise build` bundles it with the user's file; it is
// not imported by workflows themselves.
//
// A workflow is `function* workflow(input, ctx)`. Every value it yields is
// a request to the host (see `ctx` below and README.md); the generator is
// resumed with the request's result. Each request is one journaled host
// call, so when the host replays an execution in a fresh instance the
// generator runs again through the same yields and gets the same values:
// its locals are rebuilt by replay, never stored.

import * as host from 'reprise:workflow/host@0.3.0';
import { Decoder, Encoder } from '@msgpack/msgpack';

// Integers are MessagePack integers at any size (the library's BigInt mode
// would write large numbers as floats): a safe-integer number as the
// smallest int that holds it, a BigInt as a 64-bit one. Integers past 2^53
// decode as numbers, as JSON would.
class Packer extends Encoder {
  doEncode(object, depth) {
    if (typeof object !== 'bigint') return super.doEncode(object, depth);
    if (object >= 2n ** 64n || object < -(2n ** 63n)) {
      throw new RangeError(`${object} does not fit in a 64-bit MessagePack integer`);
    }
    return this.encodeBigInt64(object);
  }
}
// One of each, reused: a fresh Decoder per payload costs more than the
// decoding (its setup dominates for the small payloads of most steps).
const packer = new Packer({ ignoreUndefined: true });
const unpacker = new Decoder();

/** MessagePack, as the Rust SDK and clients speak it. */
export function encode(value) {
  return packer.encode(value === undefined ? null : value);
}

/** Decodes a payload; an empty one (no input) is `null`. */
export function decode(bytes) {
  if (bytes.length === 0) return null;
  return unpacker.decode(bytes);
}

/** A workflow failure: `run` returns it as the component's `err`. */
export class WorkflowError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = 'WorkflowError';
    this.code = code;
    this.details = details;
  }
}

/** The idiomatic form: `yield ctx.call('api', 'user', { id })`. Each
 * method only builds the request the seed form writes by hand. */
export const ctx = Object.freeze({
  call: (category, name, input) => ({ __tool: [category, name, input] }),
  save: () => ({ __save: true }),
  sleep: (ms) => ({ __sleep: ms }),
  signal: (name) => ({ __signal: name }),
  emit: (item) => ({ __emit: item }),
  all: (calls) => calls,
  log: (level, message) => host.log(level, String(message)),
});

function describe(value) {
  let text;
  try {
    text = JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));
  } catch {
    text = undefined;
  }
  if (text === undefined) text = String(value);
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

function fail(code, message) {
  throw new WorkflowError(code, message);
}

function checkTool(request) {
  const t = request.__tool;
  if (!Array.isArray(t) || t.length < 2 || t.length > 3 || typeof t[0] !== 'string' || typeof t[1] !== 'string') {
    fail('bad-yield', `yield { __tool: [category, name, input] } needs two strings and an input; got ${describe(request)}`);
  }
  return t;
}

function toolErrorValue(e) {
  // What the seed documents: a tool error is a value, `{ __error: message }`,
  // with the code and details alongside for code that wants them.
  const err = e && e.payload;
  if (!err || typeof err.code !== 'string') throw e;
  const value = { __error: err.message, code: err.code };
  if (err.details !== undefined) value.details = decode(err.details);
  return value;
}

function duration(request, key) {
  const ms = request[key];
  if (typeof ms === 'bigint' && ms >= 0n) return ms;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    fail('bad-yield', `yield { ${key}: ms } needs a non-negative number of milliseconds; got ${describe(request)}`);
  }
  return BigInt(Math.ceil(ms));
}

function parallel(requests) {
  const tools = requests.map((request) => {
    if (request === null || typeof request !== 'object' || !('__tool' in request)) {
      fail('bad-yield', `a yielded array runs tool calls in parallel: every element must be { __tool: [...] }; got ${describe(request)}`);
    }
    return checkTool(request);
  });
  if (tools.length === 0) return [];
  const handles = tools.map(([category, name, input]) => host.startTool(category, name, encode(input), undefined));
  const position = new Map(handles.map((h, i) => [h, i]));
  const results = new Array(handles.length);
  for (const [handle, completion] of host.awaitAll(BigUint64Array.from(handles))) {
    const outcome = completion.val;
    results[position.get(handle)] =
      outcome.tag === 'ok' ? decode(outcome.val) : toolErrorValue({ payload: outcome.val });
  }
  return results;
}

/** Carries out one yielded request and returns what the generator gets. */
function serve(request) {
  if (Array.isArray(request)) return parallel(request);
  if (request === null || typeof request !== 'object') {
    fail('bad-yield', `a workflow yields a request such as { __tool: [category, name, input] }; got ${describe(request)}`);
  }
  if ('__tool' in request) {
    const [category, name, input] = checkTool(request);
    try {
      return decode(host.callTool(category, name, encode(input)));
    } catch (e) {
      return toolErrorValue(e);
    }
  }
  if ('__save' in request) {
    host.checkpoint();
    return undefined;
  }
  if ('__sleep' in request) {
    host.sleep(duration(request, '__sleep'));
    return undefined;
  }
  if ('__signal' in request) {
    if (typeof request.__signal !== 'string') {
      fail('bad-yield', `yield { __signal: name } needs a string; got ${describe(request)}`);
    }
    return decode(host.awaitSignal(request.__signal));
  }
  if ('__emit' in request) {
    host.emit(encode(request.__emit));
    return undefined;
  }
  return fail('bad-yield', `a workflow yielded an unknown request: ${describe(request)}`);
}

// Determinism: time and randomness come from the host, which journals them,
// so a replay sees the values the first run saw.
function installDeterminism() {
  Math.random = () => Number(host.random() >> 11n) / 2 ** 53;
  const RealDate = Date;
  const now = () => Number(host.now());
  function JournaledDate(...args) {
    if (!new.target) return new RealDate(now()).toString();
    return args.length === 0 ? new RealDate(now()) : new RealDate(...args);
  }
  JournaledDate.prototype = RealDate.prototype;
  JournaledDate.now = now;
  JournaledDate.parse = RealDate.parse;
  JournaledDate.UTC = RealDate.UTC;
  globalThis.Date = JournaledDate;
  const line = (level) => (...args) => host.log(level, args.map((a) => (typeof a === 'string' ? a : describe(a))).join(' '));
  globalThis.console = { log: line('info'), info: line('info'), debug: line('debug'), warn: line('warn'), error: line('error'), trace: line('trace') };
}

function asWorkflowError(e) {
  if (e instanceof WorkflowError) {
    return { code: e.code, message: e.message, details: e.details === undefined ? undefined : encode(e.details) };
  }
  const message = e instanceof Error ? `${e.name}: ${e.message}` : `uncaught: ${describe(e)}`;
  return { code: 'error', message, details: undefined };
}

/** Makes the component's `run` export from a generator function. */
export function makeRun(workflow) {
  if (typeof workflow !== 'function') {
    throw new TypeError('the module must export its workflow as `workflow` (export function* workflow(input) { ... })');
  }
  return function run(input) {
    installDeterminism();
    try {
      const gen = workflow(decode(input), ctx);
      if (gen && typeof gen.then === 'function') {
        fail('async-workflow', '`workflow` is an async function: only synchronous generators (function*) are supported');
      }
      if (!gen || typeof gen.next !== 'function') {
        // A plain function: its return value is the result.
        return encode(gen);
      }
      if (typeof gen[Symbol.asyncIterator] === 'function') {
        fail('async-workflow', '`workflow` is an async generator: only synchronous generators (function*) are supported');
      }
      let step = gen.next();
      while (!step.done) {
        step = gen.next(serve(step.value));
      }
      return encode(step.value);
    } catch (e) {
      // Thrown from `run`, this becomes the component's `err`.
      throw asWorkflowError(e);
    }
  };
}
