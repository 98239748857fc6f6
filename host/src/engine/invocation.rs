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
use std::time::{Duration, Instant, SystemTime};

use wasmtime::UpdateDeadline;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, ChildError, Completion, Level, RetryPolicy, ToolError};
use super::determinism::{self, JournalClock};
use super::writer::JournalWriter;
use super::{CompiledWorkflow, WorkflowEngine};
use crate::config::{Budget, Limits, StreamConfig};
use crate::execution::{Failure, FailureKind, Lease, Outcome, SignalRecord, Snapshot, Wait};
use crate::ids::{Digest, ExecutionId};
use crate::journal::{Call, Entry, EntryKind, RecordedTool, ToolFailure};
use crate::metrics::{CategoryLabel, Metrics};
use crate::store::{Store, StoreError, now_ms};
use crate::stream::pacer::{Blocked, Pacer};
use crate::telemetry::InvocationSpan;
use crate::tools::attempts::{Attempts, RetryBoard};
use crate::tools::{IdempotencyKey, ToolCall, ToolRegistry};
use guard::{LogLimit, Progress, Watch};
use join::Join;
use limits::{LimitHit, Limiter, classify_error};
use opentelemetry::KeyValue;

mod fast;
mod guard;
mod imports;
mod join;
mod limits;
mod versions;

pub(crate) use versions::add_to_linker;

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

/// Why an invocation ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The execution ended.
    Finished(Outcome),
    /// The execution waits; `consumed` counts signals of the awaited name
    /// already consumed (see [`Store::suspend`]).
    Suspend { wait: Wait, consumed: u64 },
    /// The budget is spent by a step whose value the guest has not seen:
    /// its entry, journal entry `index`, is not written yet. The execution
    /// is ready to run again, and the driver writes the entry with the
    /// next invocation's acquire where it can (one durable write for
    /// both; see `runtime/after.rs`). Lost in a crash, it is a step that
    /// never finished: the next invocation runs it again.
    ///
    /// `journal`: the journal before the entry (entries `0..index`), when
    /// the invocation kept it ([`Invocation::keep_journal`]), for a
    /// continuation on this host to start from instead of loading it.
    Spent {
        index: u64,
        entry: Box<Entry>,
        journal: Option<Vec<Entry>>,
    },
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
    /// The guest's log lines, replayed ones included, when the invocation
    /// was a sandboxed replay ([`Invocation::sandbox`]).
    pub log: Vec<LogLine>,
    /// Its span, for the driver to end with how it ended.
    pub trace: Option<InvocationSpan>,
}

/// Most log lines a capturing invocation keeps: a sandboxed replay's
/// answer stays bounded whatever the guest logs.
pub(crate) const MAX_CAPTURED_LINES: usize = 2000;

/// A guest log line kept by a capturing invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// How many journal entries had been replayed when it was logged.
    pub after: u64,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The line, cut to the line limit, control characters escaped.
    pub message: String,
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
    /// Tool calls started without waiting that may run at once on this
    /// host (shared by every invocation).
    pub calls: Arc<tokio::sync::Semaphore>,
    /// Has a new child execution run (here, or through the queue).
    pub start_child: Arc<dyn Fn(ExecutionId) + Send + Sync>,
    /// Where tool calls report failed attempts they retry.
    pub retrying: Arc<RetryBoard>,
    /// The invocation's span, when its execution is traced and traces are
    /// exported (see [`crate::telemetry`]).
    pub trace: Option<InvocationSpan>,
    /// A sandboxed replay (see `runtime::sandbox`): the guest's log lines,
    /// replayed ones too, go to the report instead of the host's log, a
    /// replayed tool start whose completion is not in the journal is not
    /// run again, and no child is created.
    pub sandbox: bool,
    /// Keep the journal whole for a continuation on this host: replayed
    /// values are shared out of their entries rather than taken, and new
    /// entries are kept as they are written, so [`End::Spent`] hands back
    /// the whole journal and the next invocation need not load it again
    /// (on Redis, an `LRANGE` that grows with the journal; on the file
    /// store, a read of every row).
    pub keep_journal: bool,
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

/// The journal cursor and everything the journaled imports need.
struct Steps {
    id: ExecutionId,
    store: Arc<dyn Store>,
    tools: Arc<ToolRegistry>,
    /// The journal as loaded; entries are taken out as they are replayed,
    /// unless it is kept ([`Invocation::keep_journal`]).
    journal: Vec<Entry>,
    /// Whether the journal is kept: then `written` holds a copy of each
    /// new entry, in order, and `written_bytes` counts what they hold.
    keep: bool,
    written: Vec<Entry>,
    written_bytes: usize,
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
    /// Paces emits by the stream's consumers (see [`crate::stream::pacer`]).
    pacer: Pacer,
    replay_done: Option<Instant>,
    started: Instant,
    new_steps: u32,
    /// How often the guest has returned from one of the host's imports
    /// (see [`guard`]), and the epoch callback's view of it.
    progress: Arc<Progress>,
    watch: Watch,
    time_limit: Duration,
    log: LogLimit,
    /// The log lines kept when the invocation captures them.
    captured: Option<Vec<LogLine>>,
    /// A sandboxed replay ([`Invocation::sandbox`]).
    sandbox: bool,
    /// Where new steps' spans go ([`Invocation::trace`]), and when the
    /// invocation began by the wall clock (the start of its replay span).
    trace: Option<InvocationSpan>,
    began: SystemTime,
    /// Work started without waiting (see [`join`]).
    join: Join,
    start_child: Arc<dyn Fn(ExecutionId) + Send + Sync>,
    retrying: Arc<RetryBoard>,
}

/// The largest value of a new entry a kept journal holds
/// ([`Invocation::keep_journal`]), and the most its new entries hold in
/// all (their values, and a fixed size each): past either, the journal is
/// not kept and the continuation loads it again. The journal as loaded is
/// in memory anyway; new entries' values would otherwise be dropped once
/// the guest has them, and on Redis a load leaves a large one in the store
/// until the guest reaches it.
const KEPT_VALUE_MAX: usize = 64 << 10;
const KEPT_NEW_MAX: usize = 1 << 20;

/// The bytes of the value an entry holds (a tool's result, a signal's
/// payload).
fn kept_value_len(kind: &EntryKind) -> usize {
    match kind {
        EntryKind::Tool { result: Ok(v), .. } => v.len(),
        EntryKind::Signal { payload, .. } => payload.len(),
        EntryKind::Completed { value, .. } => kept_value_len(value),
        _ => 0,
    }
}

/// The time an entry moves the guest's clock to.
fn entry_time(entry: &Entry) -> u64 {
    match &entry.kind {
        EntryKind::Sleep { wake_at_ms, .. } => entry.at_ms.max(*wake_at_ms),
        EntryKind::Completed { value, .. } => match **value {
            EntryKind::Sleep { wake_at_ms, .. } => entry.at_ms.max(wake_at_ms),
            _ => entry.at_ms,
        },
        _ => entry.at_ms,
    }
}

impl Steps {
    /// The tool call recorded at `index`: its key, and its handle on the
    /// host's board of retrying calls.
    fn tool_call(&self, category: String, name: String, input: Vec<u8>, index: u64) -> ToolCall {
        let idempotency_key = IdempotencyKey {
            execution: self.id.clone(),
            index,
        };
        let attempts = Attempts::tracked(
            self.retrying.clone(),
            idempotency_key.clone(),
            &category,
            &name,
        );
        ToolCall {
            category,
            name,
            input,
            idempotency_key,
            attempts,
            traceparent: None,
        }
    }

    fn replaying(&self) -> bool {
        self.cursor < self.journal.len()
    }

    /// Whether the next entry to replay records `call-tool` of
    /// `category/name` with this input.
    fn replays_tool(&self, category: &str, name: &str, input: &[u8]) -> bool {
        self.journal
            .get(self.cursor)
            .is_some_and(|e| e.kind.records_tool(category, name, input))
    }

    /// Replays the next entry, which [`Steps::replays_tool`] matched: its
    /// result, taken out of the entry. `None` if it is no tool call.
    fn take_matched_tool(&mut self) -> Option<RecordedTool> {
        let entry = self.journal.get_mut(self.cursor)?;
        let time = entry_time(entry);
        let recorded = if self.keep {
            entry.kind.recorded_tool_shared()?
        } else {
            entry.kind.take_recorded_tool()?
        };
        self.clock.advance_to(time);
        self.replayed();
        Some(recorded)
    }

    /// The entry at the cursor was replayed.
    fn replayed(&mut self) {
        self.cursor += 1;
        if self.cursor == self.journal.len() {
            self.replay_done = Some(Instant::now());
        }
    }

    /// Ends the invocation for `end`: the returned error traps the guest,
    /// and [`run`] reads `end` back from it.
    fn stop(&mut self, end: End) -> wasmtime::Error {
        wasmtime::Error::new(Stopped(end))
    }

    fn fail(&mut self, kind: FailureKind, message: String) -> wasmtime::Error {
        self.stop(End::Finished(Outcome::Failed(Failure::new(kind, message))))
    }

    /// Replays the next entry if the guest is behind the journal: `answer`
    /// (one of the `EntryKind::replay_*` functions) gives the recorded value
    /// if the entry records the guest's call, or the call it does record,
    /// which is nondeterminism; only then is `call` made, to name the
    /// guest's call in the failure (a replayed entry allocates nothing for
    /// the comparison). Past the journal, checks the budget and returns
    /// `None`: the caller does the work and [`Steps::record`]s it.
    fn replay<T>(
        &mut self,
        call: impl FnOnce() -> Call,
        answer: impl FnOnce(EntryKind) -> Result<T, Call>,
    ) -> wasmtime::Result<Option<T>> {
        if self.replaying() {
            let index = self.cursor;
            self.clock.advance_to(entry_time(&self.journal[index]));
            let kind = if self.keep {
                self.journal[index].kind.clone()
            } else {
                std::mem::replace(&mut self.journal[index].kind, EntryKind::Checkpoint)
            };
            return match answer(kind) {
                Ok(value) => {
                    self.replayed();
                    Ok(Some(value))
                }
                Err(recorded) => Err(self.fail(
                    FailureKind::Nondeterminism,
                    format!(
                        "nondeterminism detected at journal entry {index}: the journal \
                             recorded `{recorded}` but the workflow now calls `{}`",
                        call()
                    ),
                )),
            };
        }
        if self.spent(0) {
            return Err(self.stop(End::Suspend {
                wait: Wait::Ready,
                consumed: 0,
            }));
        }
        Ok(None)
    }

    /// Whether the budget is spent once `more` new entries are added to
    /// those written (or a drain asks the invocation to end).
    fn spent(&self, more: u32) -> bool {
        let over_steps = self
            .budget
            .max_steps
            .is_some_and(|max| self.new_steps.saturating_add(more) >= max);
        let over_time = self
            .budget
            .max_time
            .is_some_and(|max| self.started.elapsed() >= max);
        over_steps || over_time || self.drain.load(Ordering::Relaxed)
    }

    /// Ends the invocation with `entry` unwritten and unseen by the guest,
    /// if it spends the budget ([`End::Spent`]): the step's value would
    /// otherwise cost a durable write of its own, only for the guest to
    /// stop at its next step. Otherwise the entry's kind comes back, to be
    /// recorded.
    fn spend(&mut self, kind: EntryKind, duration_us: u64) -> Result<EntryKind, wasmtime::Error> {
        if !self.spent(1) {
            return Ok(kind);
        }
        let entry = Entry {
            at_ms: now_ms(),
            duration_us,
            kind,
        };
        let index = self.next_index;
        // The invocation ends here, past its journal: what it kept is the
        // whole journal before this entry.
        let journal = std::mem::take(&mut self.keep).then(|| {
            let mut journal = std::mem::take(&mut self.journal);
            journal.append(&mut self.written);
            journal
        });
        let journal = journal
            .filter(|j| j.len() as u64 == index && kept_value_len(&entry.kind) <= KEPT_VALUE_MAX);
        self.counted(&entry);
        Err(self.stop(End::Spent {
            index,
            entry: Box::new(entry),
            journal,
        }))
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
        // The write's future is boxed: inline, it made every journaled
        // import's future larger than the allocator's per-thread cache
        // serves (~1 KiB), a slow allocation each replayed call paid for;
        // a new entry, which waits for a store write, pays one small one.
        match Box::pin(self.writer.record(entry)).await {
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
        // Boxed, as in `record`.
        match Box::pin(self.writer.push(entry)).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.stop(End::Store(e))),
        }
    }

    /// Counts a new entry in (and traces it: a tool call's span is its
    /// import's, begun before the call).
    fn counted(&mut self, entry: &Entry) {
        self.clock.advance_to(entry_time(entry));
        if self.keep {
            // As the store keeps it: an emitted item's digest, not the item.
            let (kept, _) = entry.split_item();
            let value = kept_value_len(&kept.kind);
            self.written_bytes += value + std::mem::size_of::<Entry>();
            if value > KEPT_VALUE_MAX || self.written_bytes > KEPT_NEW_MAX {
                self.keep = false;
                self.written = Vec::new();
            } else {
                self.written.push(kept.into_owned());
            }
        }
        if let Some(trace) = &self.trace
            && !matches!(entry.kind, EntryKind::Tool { .. })
        {
            let label = entry.kind.label();
            let end = SystemTime::now();
            trace.done(
                "step",
                end - Duration::from_micros(entry.duration_us),
                end,
                [
                    KeyValue::new("reprise.step.kind", label),
                    KeyValue::new("reprise.entry.index", self.next_index as i64),
                    KeyValue::new("reprise.replayed", false),
                    KeyValue::new("reprise.step.duration_us", entry.duration_us as i64),
                ],
            );
        }
        self.next_index += 1;
        self.new_steps += 1;
    }

    /// The guest entered one of the host's imports: the time until it
    /// returns is the host's.
    fn enter(&self) {
        self.progress.enter();
    }

    /// The guest returned from one of the host's imports.
    fn progress(&mut self) {
        self.progress.made();
    }
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
        calls,
        start_child,
        retrying,
        sandbox,
        trace,
        keep_journal,
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
    let progress = Arc::new(Progress::new());
    let time_limit = limits.time_without_progress;
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
            join: Join::new(&snapshot.journal, calls, limits.max_handles),
            start_child,
            retrying,
            journal: snapshot.journal,
            keep: keep_journal && !sandbox,
            written: Vec::new(),
            written_bytes: 0,
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
            pacer: Pacer::new(record.stream, stream, reads),
            replay_done: None,
            started: now,
            new_steps: 0,
            progress: progress.clone(),
            watch: Watch::new(),
            time_limit: limits.time_without_progress,
            log: LogLimit::new(
                limits.log_burst,
                limits.log_per_second,
                limits.log_line_bytes,
            ),
            captured: sandbox.then(Vec::new),
            sandbox,
            trace,
            began: SystemTime::now(),
        },
    };
    let mut wstore = wasmtime::Store::new(engine.engine(), state);
    wstore.limiter(|s| &mut s.limiter);
    wstore.set_epoch_deadline(1);
    wstore.epoch_deadline_callback(|mut ctx| {
        let steps = &mut ctx.data_mut().steps;
        if steps.watch.idle(&steps.progress) > steps.time_limit {
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
            return report(&mut wstore, end);
        }
    };
    // The epoch callback stops a guest running wasm too long; this stops
    // one blocked in a WASI call (a sleep) just as long, and frees its
    // instance slot: the call is dropped, which unwinds the guest.
    let result = tokio::select! {
        result = instance.call_run(&mut wstore, &record.input) => result,
        () = progress.overdue(time_limit) => Err(wasmtime::Error::new(LimitHit::Time(time_limit))),
    };
    let dropped = wstore.data().steps.log.dropped;
    if dropped > 0 {
        wstore
            .data()
            .steps
            .metrics
            .guest_log_dropped
            .inc_by(dropped);
        tracing::warn!(
            execution = %record.id,
            dropped,
            "guest log lines dropped by the rate limit (limits.log_burst, log_per_second)"
        );
    }
    let end = match result {
        Ok(returned) => {
            let steps = &wstore.data().steps;
            if steps.replaying() {
                End::Finished(Outcome::Failed(Failure::new(
                    FailureKind::Nondeterminism,
                    format!(
                        "nondeterminism detected: the workflow returned after replaying {} of \
                         the {} journal entries",
                        steps.cursor,
                        steps.journal.len()
                    ),
                )))
            } else {
                End::Finished(match returned {
                    Ok(out) => Outcome::Completed(out),
                    Err(e) => Outcome::Failed(Failure::workflow(e.code, e.message, e.details)),
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
    report(&mut wstore, end)
}

fn report(wstore: &mut wasmtime::Store<InvocationState>, end: End) -> Report {
    let steps = &mut wstore.data_mut().steps;
    if let (Some(trace), Some(done)) = (&steps.trace, steps.replay_done) {
        let replayed = steps.cursor as i64;
        trace.done(
            "replay",
            steps.began,
            steps.began + (done - steps.started),
            [
                KeyValue::new("reprise.replayed", true),
                KeyValue::new("reprise.replay.entries", replayed),
            ],
        );
    }
    Report {
        end,
        replayed: steps.cursor,
        new_steps: steps.new_steps,
        replay_time: steps.replay_done.map(|t| t - steps.started),
        log: steps.captured.take().unwrap_or_default(),
        trace: steps.trace.take(),
    }
}
