// Types of @reprise/client (src/index.js).

/** An execution as the host reports it (`GET /v1/executions/{id}`). */
export interface Execution<Result = unknown> {
  id: string;
  workflow: string;
  status: 'running' | 'suspended' | 'completed' | 'failed' | 'cancelled';
  /** What a suspended execution waits for (`kind`: `timer`, `signal`, `consumers`, ...). */
  wait?: { kind: string; [key: string]: unknown } | null;
  result?: Result;
  error?: { kind: string; message: string; code?: string; details?: unknown } | null;
  [key: string]: unknown;
}

export interface StartOptions {
  /** Starting one id twice starts once. */
  id?: string;
  /** Start as a stream paced by its consumers: at most this many unread items. */
  window?: number;
  /** ... and at most this many bytes of unread items. */
  windowBytes?: number;
  /** What happens once every consumer has left (default `cancel`). */
  onAbandon?: 'cancel' | 'continue';
  /** Milliseconds to wait for the execution to settle before replying. */
  wait?: number;
}

export interface StreamOptions {
  /** Items per request (default 256). */
  batch?: number;
  /** Start after this offset (default: from the first item). */
  after?: number;
  /** Milliseconds one request waits for new items (default 20,000). */
  wait?: number;
  /** Consecutive failed requests before giving up (default 10). */
  retries?: number;
  /** First delay between retries in ms, doubling up to 5 s (default 100). */
  retryDelay?: number;
}

export interface ItemStream<Item> extends AsyncGenerator<Item, void, undefined> {
  /** The offset of the last item returned. */
  lastOffset: number | undefined;
}

export class RepriseError extends Error {
  /** HTTP status of a refused request. */
  status?: number;
  /** The problem type of a refused request. */
  type?: string;
  /** How an execution ended badly: `workflow-error`, `trap`, ..., or `cancelled`. */
  kind?: string;
  code?: string;
  details?: unknown;
  /** Whether trying again later may succeed. */
  readonly transient: boolean;
}

export interface StatusCounts {
  running: number;
  suspended: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** When they were counted, ms since the Unix epoch. */
  at_ms: number;
}

/** An execution replayed in a sandbox up to an entry. */
export interface Replay<Result = unknown> {
  replayed: number;
  total: number;
  /** `reached`: it asked for the entry after the last one replayed. */
  stop: 'reached' | 'completed' | 'failed';
  result?: Result;
  error?: { kind: string; message: string; code?: string; details?: unknown };
  /** What it logged; `after` is the number of entries replayed before. */
  log: { after: number; level: string; message: string }[];
}

export class Client {
  constructor(base: string, options?: { token?: string; fetch?: typeof fetch });
  readonly base: string;
  start<Input = unknown>(workflow: string, input: Input, options?: StartOptions): Promise<Execution>;
  status<Result = unknown>(id: string): Promise<Execution<Result>>;
  wait<Result = unknown>(id: string, options?: { timeout?: number }): Promise<Execution<Result>>;
  signal(id: string, name: string, payload?: unknown): Promise<unknown>;
  cancel(id: string, options?: { keepChildren?: boolean }): Promise<Execution>;
  counts(): Promise<StatusCounts>;
  replay<Result = unknown>(id: string, to: number): Promise<Replay<Result>>;
  stream<Item = unknown>(id: string, options?: StreamOptions): ItemStream<Item>;
}
