//! One invocation: a fresh instance that replays the journal, does new work
//! until it must stop, and is dropped.
//!
//! Every journaled import goes through [`Steps::replay`]: while the guest is
//! behind the journal, the call must match the recorded entry (else the
//! execution fails with nondeterminism) and the recorded value is returned,
//! typed for that call (the `EntryKind::replay_*` functions). Past the end
//! of the journal the invocation budget is checked, the work is done, and
//! the entry is appended durably before the guest sees its value.
//!
//! An import that must end the invocation (suspend, fail, store error)
//! traps with a typed error, [`Stopped`], carrying the reason; a limit the
//! guest hit traps with [`LimitHit`]. [`run`] downcasts the trap to read the
//! reason back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, Level, ToolError};
use super::determinism::{self, JournalClock};
use super::writer::JournalWriter;
use super::{CompiledWorkflow, WorkflowEngine};
use crate::config::{Budget, Limits, StreamConfig};
use crate::execution::{
    Failure, FailureKind, Lease, Outcome, SignalRecord, Snapshot, StreamPolicy, Wait,
};
use crate::ids::{Digest, ExecutionId};
use crate::journal::{Call, Entry, EntryKind, RecordedTool, ToolFailure};
use crate::metrics::{CategoryLabel, Metrics};
use crate::store::{Store, StoreError, now_ms};
use crate::stream::{self, Window};
use crate::tools::{IdempotencyKey, ToolCall, ToolRegistry};

/// How much of the guest's stderr is kept to explain a trap (a Rust panic
/// message is printed there just before the trap).
const STDERR_CAPTURE: usize = 16 * 1024;

/// The trap an import raises to end the invocation for a reason of the
/// host's (not the guest's fault): [`run`] downcasts it back.
#[derive(Debug)]
struct Stopped(End);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invocation stopped by the host")
    }
}

impl std::error::Error for Stopped {}

/// The trap raised when the guest exceeds a limit.
#[derive(Debug)]
enum LimitHit {
    /// Its memory or a table grew past the limit; the message says which.
    Memory(String),
    /// It ran this long without calling the host.
    Time(Duration),
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Memory(message) => f.write_str(message),
            LimitHit::Time(limit) => write!(
                f,
                "the guest ran for more than {limit:?} without calling the host (an infinite \
                 loop?)"
            ),
        }
    }
}

impl std::error::Error for LimitHit {}

/// Why an invocation ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The execution ended.
    Finished(Outcome),
    /// The execution waits; `consumed` counts signals of the awaited name
    /// already consumed (see [`Store::suspend`]).
    Suspend { wait: Wait, consumed: u64 },
    /// A store operation failed; the driver decides whether to retry.
    Store(StoreError),
    /// No instance slot was free; retry shortly.
    Busy(String),
}

/// What an invocation did.
#[derive(Debug)]
pub(crate) struct Report {
    pub end: End,
    pub replayed: usize,
    pub new_steps: u32,
    /// Time from the start of the invocation to the end of its replay, if
    /// it replayed anything and got to the end of the journal.
    pub replay_time: Option<Duration>,
}

/// What an invocation needs besides the engine.
pub(crate) struct Invocation {
    pub snapshot: Snapshot,
    pub lease: Lease,
    pub store: Arc<dyn Store>,
    pub tools: Arc<ToolRegistry>,
    pub limits: Limits,
    pub budget: Budget,
    pub inline_sleep_max: Duration,
    pub metrics: Arc<Metrics>,
    /// Set when the host drains: the invocation suspends before its next
    /// new step, as if its budget had run out.
    pub drain: Arc<AtomicBool>,
    /// Called after each new item is recorded, so readers of the output
    /// stream hear of it at once.
    pub on_emit: Arc<dyn Fn() + Send + Sync>,
    /// Stream pacing settings.
    pub stream: StreamConfig,
    /// Notified when a consumer reads, so an `emit` waiting for room in the
    /// window looks again.
    pub reads: Arc<tokio::sync::Notify>,
}

/// The data of a wasmtime `Store` during one invocation.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    steps: Steps,
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Enforces [`Limits`]: growing past one traps with [`LimitHit::Memory`].
struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let msg = format!(
                "memory limit exceeded: the guest tried to grow its memory from {current} to \
                 {desired} bytes; the limit is {} bytes",
                self.memory_bytes
            );
            return Err(wasmtime::Error::new(LimitHit::Memory(msg)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let msg = format!(
                "table limit exceeded: the guest tried to grow a table from {current} to \
                 {desired} elements; the limit is {}",
                self.table_elements
            );
            return Err(wasmtime::Error::new(LimitHit::Memory(msg)));
        }
        Ok(true)
    }
}

/// The journal cursor and everything the journaled imports need.
struct Steps {
    id: ExecutionId,
    store: Arc<dyn Store>,
    tools: Arc<ToolRegistry>,
    /// The journal as loaded; entries are taken out as they are replayed.
    journal: Vec<Entry>,
    /// Entries replayed so far.
    cursor: usize,
    /// Index the next new entry is appended at.
    next_index: u64,
    signals: Vec<SignalRecord>,
    /// Signals consumed so far, by name.
    consumed: HashMap<String, u64>,
    clock: Arc<JournalClock>,
    budget: Budget,
    inline_sleep_max: Duration,
    metrics: Arc<Metrics>,
    drain: Arc<AtomicBool>,
    /// Writes new entries (see [`super::writer`]).
    writer: JournalWriter,
    /// The execution's stream policy, if it was started as a stream.
    policy: Option<StreamPolicy>,
    stream: StreamConfig,
    reads: Arc<tokio::sync::Notify>,
    /// Items emitted so far (replayed and new): the next item's offset.
    emitted: u64,
    /// Offsets below this fit the window as last seen.
    window_until: u64,
    /// When the consumer sessions were last read, ms since the Unix epoch.
    window_seen_ms: u64,
    /// For a byte window: sizes of the items from offset `unread_base` on
    /// (those not known to be read by every consumer), and their sum.
    unread: std::collections::VecDeque<u64>,
    unread_base: u64,
    unread_bytes: u64,
    replay_done: Option<Instant>,
    started: Instant,
    new_steps: u32,
    last_progress: Instant,
    time_limit: Duration,
}

/// The time an entry moves the guest's clock to.
fn entry_time(entry: &Entry) -> u64 {
    match entry.kind {
        EntryKind::Sleep { wake_at_ms, .. } => entry.at_ms.max(wake_at_ms),
        _ => entry.at_ms,
    }
}

impl Steps {
    fn replaying(&self) -> bool {
        self.cursor < self.journal.len()
    }

    /// Ends the invocation for `end`: the returned error traps the guest,
    /// and [`run`] reads `end` back from it.
    fn stop(&mut self, end: End) -> wasmtime::Error {
        wasmtime::Error::new(Stopped(end))
    }

    fn fail(&mut self, kind: FailureKind, message: String) -> wasmtime::Error {
        self.stop(End::Finished(Outcome::Failed(Failure { kind, message })))
    }

    /// Replays the next entry if the guest is behind the journal: `answer`
    /// (one of the `EntryKind::replay_*` functions) gives the recorded value
    /// if the entry records `call`, or the call it does record, which is
    /// nondeterminism. Past the journal, checks the budget and returns
    /// `None`: the caller does the work and [`Steps::record`]s it.
    fn replay<T>(
        &mut self,
        call: &Call,
        answer: impl FnOnce(EntryKind) -> Result<T, Call>,
    ) -> wasmtime::Result<Option<T>> {
        if self.replaying() {
            let index = self.cursor;
            self.clock.advance_to(entry_time(&self.journal[index]));
            let kind = std::mem::replace(&mut self.journal[index].kind, EntryKind::Checkpoint);
            return match answer(kind) {
                Ok(value) => {
                    self.cursor += 1;
                    if self.cursor == self.journal.len() {
                        self.replay_done = Some(Instant::now());
                    }
                    Ok(Some(value))
                }
                Err(recorded) => Err(self.fail(
                    FailureKind::Nondeterminism,
                    format!(
                        "nondeterminism detected at journal entry {index}: the journal \
                             recorded `{recorded}` but the workflow now calls `{call}`"
                    ),
                )),
            };
        }
        let over_steps = self
            .budget
            .max_steps
            .is_some_and(|max| self.new_steps >= max);
        let over_time = self
            .budget
            .max_time
            .is_some_and(|max| self.started.elapsed() >= max);
        if over_steps || over_time || self.drain.load(Ordering::Relaxed) {
            return Err(self.stop(End::Suspend {
                wait: Wait::Ready,
                consumed: 0,
            }));
        }
        Ok(None)
    }

    /// Appends a new entry; returns once it (and every entry before it) is
    /// durable, handing the entry's kind back so its value can go to the
    /// guest.
    async fn record(&mut self, kind: EntryKind, duration_us: u64) -> wasmtime::Result<EntryKind> {
        let entry = Entry {
            at_ms: now_ms(),
            duration_us,
            kind,
        };
        match self.writer.record(entry).await {
            Ok(entry) => {
                self.counted(&entry);
                Ok(entry.kind)
            }
            Err(e) => Err(self.stop(End::Store(e))),
        }
    }

    /// Queues a new entry for the writer without waiting for it to be
    /// durable (see [`super::writer`]).
    async fn queue(&mut self, entry: Entry) -> wasmtime::Result<()> {
        self.counted(&entry);
        match self.writer.push(entry).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.stop(End::Store(e))),
        }
    }

    /// Counts a new entry in.
    fn counted(&mut self, entry: &Entry) {
        self.clock.advance_to(entry_time(entry));
        self.next_index += 1;
        self.new_steps += 1;
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Before a new item of a streaming execution is recorded: returns once
    /// it fits the window; stops the invocation (suspended waiting for the
    /// consumers, or cancelled if they all left) otherwise. The sessions
    /// are read again when the item would not fit as last seen, and every
    /// quarter of the session TTL, so consumers that leave are noticed.
    async fn make_room(&mut self, policy: StreamPolicy, len: u64) -> wasmtime::Result<()> {
        let ttl_ms = self.stream.session_ttl.as_millis() as u64;
        let hold_until = Instant::now() + self.stream.hold;
        loop {
            let now = now_ms();
            if self.emitted < self.window_until
                && stream::fits_bytes(&policy, self.unread_bytes, len)
                && now < self.window_seen_ms + ttl_ms / 4
            {
                return Ok(());
            }
            let sessions = match self.store.sessions(&self.id).await {
                Ok(s) => s,
                Err(e) => return Err(self.stop(End::Store(e))),
            };
            self.window_seen_ms = now;
            let look = stream::window(
                &policy,
                &sessions,
                (self.emitted, len),
                |low| self.unread_from(low),
                ttl_ms,
                now,
            );
            match look {
                Window::Open { until, low } => {
                    self.window_until = until;
                    self.forget_read(low);
                    return Ok(());
                }
                Window::Abandoned => {
                    tracing::info!(
                        execution = %self.id,
                        "every consumer of the stream left: cancelling the execution"
                    );
                    return Err(self.stop(End::Finished(Outcome::Cancelled)));
                }
                Window::Full { wake_at_ms } => {
                    self.window_until = 0;
                    let left = hold_until.saturating_duration_since(Instant::now());
                    if left.is_zero() || self.drain.load(Ordering::Relaxed) {
                        return Err(self.stop(End::Suspend {
                            wait: Wait::Consumers {
                                wake_at_ms,
                                item_len: len,
                            },
                            consumed: 0,
                        }));
                    }
                    let _ = tokio::time::timeout(left, self.reads.notified()).await;
                }
            }
        }
    }
}

impl Steps {
    /// Notes an item of `len` bytes at the end of the stream (for a byte
    /// window).
    fn note_item(&mut self, len: u64) {
        if self.policy.is_some_and(|p| p.window_bytes.is_some()) {
            self.unread.push_back(len);
            self.unread_bytes += len;
        }
    }

    /// Bytes of the items from offset `low` on.
    fn unread_from(&self, low: u64) -> u64 {
        let skip = low.saturating_sub(self.unread_base) as usize;
        let read: u64 = self.unread.iter().take(skip).sum();
        self.unread_bytes - read
    }

    /// Every consumer has read the items below `low`.
    fn forget_read(&mut self, low: u64) {
        while self.unread_base < low {
            let Some(len) = self.unread.pop_front() else {
                break;
            };
            self.unread_bytes -= len;
            self.unread_base += 1;
        }
    }
}

impl bindings::TypesHost for InvocationState {}

impl bindings::Host for InvocationState {
    async fn call_tool(
        &mut self,
        category: String,
        name: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, ToolError>> {
        let s = &mut self.steps;
        let input_digest = Digest::of(&input);
        let call = Call::Tool {
            category: category.clone(),
            name: name.clone(),
            input_digest,
        };
        let replayed = s.replay(&call, |k| k.replay_tool(&category, &name, &input_digest))?;
        let result = match replayed {
            Some(RecordedTool::Inline(result)) => result,
            Some(RecordedTool::Stored { digest, len }) => {
                match s.store.get_blob(&digest, len).await {
                    Ok(bytes) => Ok(bytes),
                    Err(e) => return Err(s.stop(End::Store(e))),
                }
            }
            None => {
                let Some(tool) = s.tools.get(&category, &name) else {
                    let offered: Vec<String> = s
                        .tools
                        .addresses()
                        .into_iter()
                        .map(|(c, n)| format!("{c}/{n}"))
                        .collect();
                    return Err(s.fail(
                        FailureKind::MissingTool,
                        format!(
                            "the workflow called tool {category}/{name}, which this host does \
                             not offer (offered: {})",
                            offered.join(", ")
                        ),
                    ));
                };
                let input_len = input.len() as u64;
                let started = Instant::now();
                let result = tool
                    .call(ToolCall {
                        category: category.clone(),
                        name: name.clone(),
                        input,
                        idempotency_key: IdempotencyKey {
                            execution: s.id.clone(),
                            index: s.next_index,
                        },
                    })
                    .await;
                let elapsed = started.elapsed();
                s.metrics
                    .tool_seconds
                    .get_or_create(&CategoryLabel {
                        category: category.clone(),
                    })
                    .observe(elapsed.as_secs_f64());
                let duration_us = elapsed.as_micros() as u64;
                // The entry owns the result while it is written, and gives
                // it back: a large result is never copied on the host.
                let recorded = s
                    .record(
                        EntryKind::Tool {
                            category,
                            name,
                            input_digest,
                            input_len,
                            result,
                        },
                        duration_us,
                    )
                    .await?;
                let EntryKind::Tool { result, .. } = recorded else {
                    unreachable!("the journal writer hands back the entry it was given")
                };
                result
            }
        };
        s.progress();
        Ok(result.map_err(|e: ToolFailure| ToolError {
            code: e.code,
            message: e.message,
            details: e.details,
        }))
    }

    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
        let s = &mut self.steps;
        let replayed = s.replay(&Call::Sleep { duration_ms }, |k| {
            k.replay_sleep(duration_ms)
        })?;
        let wake_at_ms = match replayed {
            Some(wake_at_ms) => wake_at_ms,
            None => {
                let wake_at_ms = now_ms().saturating_add(duration_ms);
                s.record(
                    EntryKind::Sleep {
                        duration_ms,
                        wake_at_ms,
                    },
                    0,
                )
                .await?;
                if Duration::from_millis(duration_ms) <= s.inline_sleep_max {
                    tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                }
                wake_at_ms
            }
        };
        if now_ms() < wake_at_ms {
            return Err(s.stop(End::Suspend {
                wait: Wait::Timer { wake_at_ms },
                consumed: 0,
            }));
        }
        s.progress();
        Ok(())
    }

    async fn await_signal(&mut self, name: String) -> wasmtime::Result<Vec<u8>> {
        let s = &mut self.steps;
        let consumed = s.consumed.get(&name).copied().unwrap_or(0);
        let replayed = s.replay(&Call::Signal { name: name.clone() }, |k| {
            k.replay_signal(&name)
        })?;
        let payload = match replayed {
            Some(payload) => payload,
            None => {
                let buffered = s
                    .signals
                    .iter()
                    .filter(|sig| sig.name == name)
                    .nth(consumed as usize)
                    .cloned();
                let found = match buffered {
                    Some(sig) => Some(sig),
                    None => match s.store.next_signal(&s.id, &name, consumed).await {
                        Ok(found) => found,
                        Err(e) => return Err(s.stop(End::Store(e))),
                    },
                };
                let Some(sig) = found else {
                    return Err(s.stop(End::Suspend {
                        wait: Wait::Signal { name },
                        consumed,
                    }));
                };
                s.record(
                    EntryKind::Signal {
                        name: name.clone(),
                        seq: sig.seq,
                        payload: sig.payload.clone(),
                    },
                    0,
                )
                .await?;
                sig.payload
            }
        };
        s.consumed.insert(name, consumed + 1);
        s.progress();
        Ok(payload)
    }

    async fn emit(&mut self, item: Vec<u8>) -> wasmtime::Result<()> {
        let s = &mut self.steps;
        let item_digest = Digest::of(&item);
        let call = Call::Emit { item_digest };
        let len = item.len() as u64;
        if s.replay(&call, |k| k.replay_emit(&item_digest))?.is_none() {
            if s.writer.failed() {
                let e = s.writer.flush().await.err();
                let e = e.unwrap_or_else(|| StoreError::Unavailable("journal write failed".into()));
                return Err(s.stop(End::Store(e)));
            }
            if let Some(policy) = s.policy {
                s.make_room(policy, len).await?;
            }
            // Durable soon, not yet: the guest goes on while the writer
            // writes it, with whatever else it emits meanwhile.
            let entry = Entry {
                at_ms: now_ms(),
                duration_us: 0,
                kind: EntryKind::Emit { item },
            };
            s.queue(entry).await?;
        }
        s.emitted += 1;
        s.note_item(len);
        s.progress();
        Ok(())
    }

    async fn checkpoint(&mut self) -> wasmtime::Result<()> {
        let s = &mut self.steps;
        if s.replay(&Call::Checkpoint, EntryKind::replay_checkpoint)?
            .is_none()
        {
            s.record(EntryKind::Checkpoint, 0).await?;
        }
        s.progress();
        Ok(())
    }

    async fn now(&mut self) -> wasmtime::Result<u64> {
        let s = &mut self.steps;
        let value = match s.replay(&Call::Now, EntryKind::replay_now)? {
            Some(value) => value,
            None => {
                let value = now_ms();
                s.record(EntryKind::Now { value }, 0).await?;
                value
            }
        };
        s.progress();
        Ok(value)
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        let s = &mut self.steps;
        let value = match s.replay(&Call::Random, EntryKind::replay_random)? {
            Some(value) => value,
            None => {
                let value = rand::random();
                s.record(EntryKind::Random { value }, 0).await?;
                value
            }
        };
        s.progress();
        Ok(value)
    }

    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let s = &mut self.steps;
        if !s.replaying() {
            let id = s.id.as_str();
            match level {
                Level::Trace => tracing::trace!(execution = id, "{message}"),
                Level::Debug => tracing::debug!(execution = id, "{message}"),
                Level::Info => tracing::info!(execution = id, "{message}"),
                Level::Warn => tracing::warn!(execution = id, "{message}"),
                Level::Error => tracing::error!(execution = id, "{message}"),
            }
        }
        s.progress();
        Ok(())
    }
}

/// Adds the `reprise:workflow/host` imports to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    bindings::Workflow::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

/// Runs one invocation to its end.
pub(crate) async fn run(
    engine: &WorkflowEngine,
    compiled: &CompiledWorkflow,
    inv: Invocation,
) -> Report {
    let Invocation {
        snapshot,
        lease,
        store,
        tools,
        limits,
        budget,
        inline_sleep_max,
        metrics,
        drain,
        on_emit,
        stream,
        reads,
    } = inv;
    let record = snapshot.record;
    let store_for_writer = store.clone();
    let journal_len = snapshot.journal.len() as u64;
    let clock = JournalClock::new(record.created_at_ms);
    let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
    let mut wasi = WasiCtxBuilder::new();
    determinism::install(&mut wasi, &clock, record.seed);
    wasi.stderr(stderr.clone());
    let now = Instant::now();
    let state = InvocationState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limiter: Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
        },
        steps: Steps {
            id: record.id.clone(),
            store,
            tools,
            next_index: journal_len,
            journal: snapshot.journal,
            cursor: 0,
            signals: snapshot.signals,
            consumed: HashMap::new(),
            clock,
            budget,
            inline_sleep_max,
            metrics,
            drain,
            writer: JournalWriter::new(
                store_for_writer,
                record.id.clone(),
                lease,
                journal_len,
                on_emit,
            ),
            policy: record.stream,
            stream,
            reads,
            emitted: 0,
            window_until: 0,
            window_seen_ms: 0,
            unread: Default::default(),
            unread_base: 0,
            unread_bytes: 0,
            replay_done: None,
            started: now,
            new_steps: 0,
            last_progress: now,
            time_limit: limits.time_without_progress,
        },
    };
    let mut wstore = wasmtime::Store::new(engine.engine(), state);
    wstore.limiter(|s| &mut s.limiter);
    wstore.set_epoch_deadline(1);
    wstore.epoch_deadline_callback(|mut ctx| {
        let steps = &mut ctx.data_mut().steps;
        if steps.last_progress.elapsed() > steps.time_limit {
            return Err(wasmtime::Error::new(LimitHit::Time(steps.time_limit)));
        }
        Ok(UpdateDeadline::Yield(1))
    });

    let instance = match compiled.pre.instantiate_async(&mut wstore).await {
        Ok(instance) => instance,
        Err(e) => {
            let end = if e
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
            {
                End::Busy(format!("{e}"))
            } else {
                classify_error(e, &stderr, "instantiating the component")
            };
            return report(&wstore, end);
        }
    };
    let result = instance.call_run(&mut wstore, &record.input).await;
    let end = match result {
        Ok(returned) => {
            let steps = &wstore.data().steps;
            if steps.replaying() {
                End::Finished(Outcome::Failed(Failure {
                    kind: FailureKind::Nondeterminism,
                    message: format!(
                        "nondeterminism detected: the workflow returned after replaying {} of \
                         the {} journal entries",
                        steps.cursor,
                        steps.journal.len()
                    ),
                }))
            } else {
                End::Finished(match returned {
                    Ok(out) => Outcome::Completed(out),
                    Err(message) => Outcome::Failed(Failure {
                        kind: FailureKind::Workflow,
                        message,
                    }),
                })
            }
        }
        Err(e) => classify_error(e, &stderr, "running the workflow"),
    };
    // How it ended is recorded only once every entry before is durable.
    let end = match (wstore.data().steps.writer.flush().await, end) {
        (_, End::Store(e)) | (Err(e), _) => End::Store(e),
        (Ok(()), end) => end,
    };
    report(&wstore, end)
}

fn report(wstore: &wasmtime::Store<InvocationState>, end: End) -> Report {
    let steps = &wstore.data().steps;
    Report {
        end,
        replayed: steps.cursor,
        new_steps: steps.new_steps,
        replay_time: steps.replay_done.map(|t| t - steps.started),
    }
}

/// Turns a trap into the reason the invocation ended: the host's own
/// [`Stopped`], a [`LimitHit`], or the guest's trap (with its stderr and
/// backtrace).
fn classify_error(error: wasmtime::Error, stderr: &MemoryOutputPipe, doing: &str) -> End {
    let error = match error.downcast::<Stopped>() {
        Ok(Stopped(end)) => return end,
        Err(error) => error,
    };
    let failure = match error.downcast_ref::<LimitHit>() {
        Some(hit @ LimitHit::Memory(_)) => Failure {
            kind: FailureKind::MemoryLimit,
            message: hit.to_string(),
        },
        Some(hit @ LimitHit::Time(_)) => Failure {
            kind: FailureKind::TimeLimit,
            message: hit.to_string(),
        },
        None => {
            let trap = match error.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => trap.to_string(),
                None => error.root_cause().to_string(),
            };
            let mut message = format!("the guest trapped while {doing}: {trap}");
            let captured = stderr.contents();
            if !captured.is_empty() {
                message.push_str("\nguest stderr:\n");
                message.push_str(String::from_utf8_lossy(&captured).trim_end());
            }
            if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
                message.push_str(&format!("\n{backtrace}"));
            }
            Failure {
                kind: FailureKind::Trap,
                message,
            }
        }
    };
    End::Finished(Outcome::Failed(failure))
}
