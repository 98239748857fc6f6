//! Work a guest starts without waiting (`start-tool`, `start-timer`,
//! `start-signal`) and `await-any`, which hands back the first of several
//! completions (0.2.0 of the WIT).
//!
//! The journal records a start as an [`EntryKind::Started`] entry, whose
//! index is the handle, and a completion as an [`EntryKind::Completed`]
//! entry written when the guest observes it: so replay hands completions
//! back in exactly the order the guest saw them, whatever order the work
//! finished in. A start has no value to wait for, so, like an `emit`, its
//! entry is queued for the writer and the guest goes on; the completion
//! the guest awaits next makes it durable (the writer writes in order).
//!
//! Tool calls run as tasks of the invocation, bounded per execution
//! ([`Limits::max_handles`](crate::config::Limits)) and per host (a
//! semaphore every invocation shares). A call whose completion is in the
//! journal is never run again; a start replayed without one runs its call
//! again with the same idempotency key. Calls still running when the
//! invocation ends are dropped with it and run again on resume: at least
//! once, journaled once.

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};

use super::*;
use crate::execution::{ExecutionRecord, ParentLink, SignalWait, Status, child_signal};
use crate::journal::{InputKey, StartCall, Started};
use crate::store::Created;
use crate::tools::Tool;
pub(super) use retry::Retry;
use retry::call_with_retry;

mod retry;

/// While an `await-any` waits on running tool calls and a signal too, the
/// store is asked for the signal this often (another host may have taken
/// it in).
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The work an invocation has started and not yet handed to the guest.
pub(super) struct Join {
    /// Unspent handles and what each stands for.
    pending: BTreeMap<u64, Pending>,
    /// The tool calls running (with their retries), as tasks.
    running: JoinSet<(u64, ToolOutcome)>,
    /// Calls that ended and that the guest has not observed yet, in the
    /// order they ended.
    finished: Vec<(u64, ToolOutcome)>,
    /// Handles whose completion is in the journal: replay hands it back,
    /// and the work is never done again.
    journaled: HashSet<u64>,
    /// Tool calls running at once on this host, across invocations.
    calls: Arc<Semaphore>,
    max_handles: usize,
}

/// What an unspent handle stands for.
enum Pending {
    Tool {
        /// The running task, if it runs in this invocation.
        task: Option<AbortHandle>,
    },
    Timer {
        duration_ms: u64,
        wake_at_ms: u64,
    },
    Signal {
        name: String,
    },
}

/// How a tool call ended, after its last attempt.
struct ToolOutcome {
    result: Result<Vec<u8>, ToolFailure>,
    attempts: u32,
    duration_us: u64,
    category: String,
    name: String,
    input: InputKey,
    input_len: u64,
}

impl Join {
    pub(super) fn new(journal: &[Entry], calls: Arc<Semaphore>, max_handles: usize) -> Self {
        let journaled = journal
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::Completed { handle, .. } => Some(handle),
                _ => None,
            })
            .collect();
        Self {
            pending: BTreeMap::new(),
            running: JoinSet::new(),
            finished: Vec::new(),
            journaled,
            calls,
            max_handles,
        }
    }

    /// Drops a handle; a call still running is abandoned.
    pub(super) fn forget(&mut self, handle: u64) {
        if let Some(Pending::Tool { task: Some(task) }) = self.pending.remove(&handle) {
            task.abort();
        }
        self.finished.retain(|(h, _)| *h != handle);
    }
}

fn signal_value(name: &str, sig: SignalRecord) -> EntryKind {
    EntryKind::Signal {
        name: name.to_string(),
        seq: sig.seq,
        payload: sig.payload,
    }
}

/// What `await-any` hands the guest: the handle and its completion's
/// entry value (`Tool`, `ToolStored`, `Sleep` or `Signal`).
pub(super) struct Observed {
    pub handle: u64,
    pub value: EntryKind,
}

impl Steps {
    /// Index of the entry the guest's next journaled call is (or replays).
    pub(super) fn position(&self) -> u64 {
        if self.replaying() {
            self.cursor as u64
        } else {
            self.next_index
        }
    }

    /// Fails the execution for a misuse of the imports.
    pub(super) fn invalid(&mut self, message: String) -> wasmtime::Error {
        self.fail(FailureKind::InvalidCall, message)
    }

    /// Fails the execution if it holds as many handles as allowed.
    pub(super) fn check_room(&mut self) -> wasmtime::Result<()> {
        if self.join.pending.len() >= self.join.max_handles {
            return Err(self.invalid(format!(
                "the workflow holds {} handles, the most allowed (limits.max_handles): await \
                 or forget some before starting more",
                self.join.pending.len()
            )));
        }
        Ok(())
    }

    /// `start-*`: replays or queues the start entry and returns the handle.
    /// `run` starts the work once the handle is known, unless its
    /// completion is in the journal.
    pub(super) async fn start(
        &mut self,
        call: StartCall,
        live: impl FnOnce() -> Started,
    ) -> wasmtime::Result<(u64, Started, bool)> {
        self.check_room()?;
        let handle = self.position();
        let replayed = self.replay(|| Call::Start(call.clone()), |k| k.replay_start(&call))?;
        let started = match replayed {
            Some(started) => started,
            None => {
                let started = live();
                let entry = Entry {
                    at_ms: now_ms(),
                    duration_us: 0,
                    kind: EntryKind::Started(started.clone()),
                };
                // Boxed: a replayed start's future stays small (see
                // `Steps::record`).
                Box::pin(self.queue(entry)).await?;
                started
            }
        };
        let run = !self.join.journaled.contains(&handle);
        Ok((handle, started, run))
    }

    /// Starts tool call `handle` as a task of this invocation.
    pub(super) fn spawn_tool(
        &mut self,
        handle: u64,
        tool: Arc<dyn Tool>,
        call: ToolCall,
        input: InputKey,
        retry: Retry,
    ) {
        let calls = self.join.calls.clone();
        let metrics = self.metrics.clone();
        let task = self.join.running.spawn(async move {
            // The semaphore is never closed.
            let _permit = calls.acquire_owned().await;
            let started = Instant::now();
            let input_len = call.input.len() as u64;
            let (category, name) = (call.category.clone(), call.name.clone());
            // A tool that panics fails its call, instead of leaving the
            // handle without a completion.
            let attempt = AssertUnwindSafe(call_with_retry(tool, call, retry, metrics));
            let (result, attempts) = match attempt.catch_unwind().await {
                Ok(done) => done,
                Err(_) => (
                    Err(ToolFailure {
                        code: "panic".into(),
                        message: format!(
                            "tool {category}/{name} panicked (a bug in the host's tool)"
                        ),
                        details: None,
                    }),
                    1,
                ),
            };
            let outcome = ToolOutcome {
                result,
                attempts,
                duration_us: started.elapsed().as_micros() as u64,
                category,
                name,
                input,
                input_len,
            };
            (handle, outcome)
        });
        self.join
            .pending
            .insert(handle, Pending::Tool { task: Some(task) });
    }

    /// Notes a started operation that needs no task (a timer, a signal, or
    /// a tool call whose completion replay will hand back).
    pub(super) fn pend(&mut self, handle: u64, started: &Started) {
        let pending = match started {
            Started::Tool { .. } => Pending::Tool { task: None },
            Started::Timer {
                duration_ms,
                wake_at_ms,
            } => Pending::Timer {
                duration_ms: *duration_ms,
                wake_at_ms: *wake_at_ms,
            },
            Started::Signal { name } => Pending::Signal { name: name.clone() },
            // A child's end comes as a signal only the host sends.
            Started::Child { .. } => Pending::Signal {
                name: child_signal(handle),
            },
        };
        self.join.pending.insert(handle, pending);
    }

    /// Makes sure child `id` of handle `handle` exists, creating it (pinned
    /// to the workflow's current version) if not, and has it run when it
    /// is new or was left ready. A replay finds the child it started
    /// before, whatever version the workflow is at now.
    pub(super) async fn ensure_child(
        &mut self,
        handle: u64,
        workflow: &str,
        input: Vec<u8>,
        id: &ExecutionId,
    ) -> wasmtime::Result<()> {
        let digest = match self.store.get_deployment(workflow).await {
            Ok(Some(digest)) => digest,
            Ok(None) => {
                return Err(self.invalid(format!(
                    "start-child of workflow {workflow:?}, which is not deployed"
                )));
            }
            Err(e) => return Err(self.stop(End::Store(e))),
        };
        let mut record =
            ExecutionRecord::new(id.clone(), workflow.to_string(), digest, input, now_ms());
        record.parent = Some(ParentLink {
            id: self.id.clone(),
            handle,
        });
        // A traced parent's child is in its trace, under the invocation
        // that started it.
        record.trace = self.trace.as_ref().and_then(|t| t.traceparent());
        let run = match self.store.create_execution(&record).await {
            Ok(Created::New) => true,
            Ok(Created::Existing(existing)) => {
                if existing.workflow != record.workflow
                    || existing.input != record.input
                    || existing.parent != record.parent
                {
                    return Err(self.invalid(format!(
                        "start-child: the id {id} this child gets is taken by another execution"
                    )));
                }
                existing.status == Status::Suspended && existing.wait == Some(Wait::Ready)
            }
            Err(e) => return Err(self.stop(End::Store(e))),
        };
        if run {
            (self.start_child)(id.clone());
        }
        Ok(())
    }

    /// `await-any(handles)`: the completion replay hands back, or the first
    /// of `handles` to complete now, journaled before it is returned.
    pub(super) async fn await_any(&mut self, handles: &[u64]) -> wasmtime::Result<Observed> {
        if handles.is_empty() {
            return Err(self.invalid("await-any was given no handle".into()));
        }
        for handle in handles {
            if !self.join.pending.contains_key(handle) {
                return Err(self.invalid(format!(
                    "await-any on handle {handle}, which this execution never started or \
                     already spent (awaited or forgotten)"
                )));
            }
        }
        let call = || Call::Await {
            handles: handles.to_vec(),
        };
        if let Some((handle, _attempts, value)) =
            self.replay(call, |k| k.replay_completion(handles))?
        {
            self.join.pending.remove(&handle);
            self.observe(&value);
            return Ok(Observed { handle, value });
        }
        let (handle, attempts, duration_us, value) = self.next_completion(handles, false).await?;
        self.join.forget(handle);
        self.observe(&value);
        let recorded = self
            .record(
                EntryKind::Completed {
                    handle,
                    attempts,
                    value: Box::new(value),
                },
                duration_us,
            )
            .await?;
        let EntryKind::Completed { value, .. } = recorded else {
            unreachable!("the journal writer hands back the entry it was given")
        };
        Ok(Observed {
            handle,
            value: *value,
        })
    }

    /// Counts a signal the guest is handed as consumed (so the next wait
    /// for that name takes the next one).
    fn observe(&mut self, value: &EntryKind) {
        if let EntryKind::Signal { name, .. } = value {
            *self.consumed.entry(name.clone()).or_default() += 1;
        }
    }

    /// `await-all(handles)`: every completion, in the order journaled.
    /// Those replay finds come from the journal; the rest are queued for
    /// the writer as they come and made durable together (one flush), then
    /// returned. A suspension meanwhile (only timers and signals left)
    /// flushes what was gathered, and replay hands it back on resume.
    pub(super) async fn await_all(&mut self, handles: &[u64]) -> wasmtime::Result<Vec<Observed>> {
        let mut left: HashSet<u64> = HashSet::with_capacity(handles.len());
        for handle in handles {
            if !self.join.pending.contains_key(handle) || !left.insert(*handle) {
                return Err(self.invalid(format!(
                    "await-all on handle {handle}, which this execution never started, already \
                     spent (awaited or forgotten), or lists twice"
                )));
            }
        }
        let mut out = Vec::with_capacity(left.len());
        let call = |left: &HashSet<u64>| {
            let mut handles: Vec<u64> = left.iter().copied().collect();
            handles.sort_unstable();
            Call::Await { handles }
        };
        while !left.is_empty() {
            let answer = |k: EntryKind| match k {
                EntryKind::Completed { handle, value, .. } if left.contains(&handle) => {
                    Ok((handle, *value))
                }
                other => Err(other.call()),
            };
            let replayed = if self.replaying() {
                self.replay(|| call(&left), answer)?
            } else {
                None
            };
            let Some((handle, value)) = replayed else {
                break;
            };
            left.remove(&handle);
            self.join.pending.remove(&handle);
            self.observe(&value);
            out.push(Observed { handle, value });
        }
        if left.is_empty() {
            return Ok(out);
        }
        // Past the journal: one budget check for the whole batch.
        let waiting = call(&left);
        if self
            .replay(|| waiting, |k| Err::<(), _>(k.call()))?
            .is_some()
        {
            unreachable!("past the journal nothing is replayed");
        }
        let mut set: Vec<u64> = left.into_iter().collect();
        set.sort_unstable();
        while !set.is_empty() {
            let (handle, attempts, duration_us, value) = self.next_completion(&set, true).await?;
            self.join.forget(handle);
            self.observe(&value);
            if let Ok(i) = set.binary_search(&handle) {
                set.remove(i);
            }
            self.queue(Entry {
                at_ms: now_ms(),
                duration_us,
                kind: EntryKind::Completed {
                    handle,
                    attempts,
                    value: Box::new(value.clone()),
                },
            })
            .await?;
            out.push(Observed { handle, value });
        }
        if let Err(e) = self.writer.flush().await {
            return Err(self.stop(End::Store(e)));
        }
        Ok(out)
    }

    /// Waits for the first of `handles` to complete (past the journal):
    /// a call that ended, a timer due, a signal there; suspends if only
    /// timers and signals are left and none is due soon. With `flush`, the
    /// entries queued so far are made durable before it waits (so an
    /// `await-all` held up by a slow call loses none of those that came
    /// before it in a crash).
    async fn next_completion(
        &mut self,
        handles: &[u64],
        flush: bool,
    ) -> wasmtime::Result<(u64, u32, u64, EntryKind)> {
        let mut set: Vec<u64> = handles.to_vec();
        set.sort_unstable();
        set.dedup();
        let mut signals_checked: Option<Instant> = None;
        loop {
            while let Some(joined) = self.join.running.try_join_next() {
                self.joined(joined);
            }
            if let Some(i) = self
                .join
                .finished
                .iter()
                .position(|(h, _)| set.binary_search(h).is_ok())
            {
                let (handle, o) = self.join.finished.remove(i);
                let value = EntryKind::Tool {
                    category: o.category.into(),
                    name: o.name.into(),
                    input: o.input,
                    input_len: o.input_len,
                    result: o.result.map(Into::into),
                };
                return Ok((handle, o.attempts, o.duration_us, value));
            }
            let now = now_ms();
            // The earliest timer: (due, handle, duration).
            let mut next_timer: Option<(u64, u64, u64)> = None;
            let mut signals: Vec<(u64, String)> = Vec::new();
            let mut running = false;
            for handle in &set {
                match &self.join.pending[handle] {
                    Pending::Timer {
                        wake_at_ms,
                        duration_ms,
                    } => {
                        if next_timer.is_none_or(|(at, _, _)| *wake_at_ms < at) {
                            next_timer = Some((*wake_at_ms, *handle, *duration_ms));
                        }
                    }
                    Pending::Signal { name } => signals.push((*handle, name.clone())),
                    Pending::Tool { .. } => running = true,
                }
            }
            if let Some((wake_at_ms, handle, duration_ms)) = next_timer
                && wake_at_ms <= now
            {
                let value = EntryKind::Sleep {
                    duration_ms,
                    wake_at_ms,
                };
                return Ok((handle, 1, 0, value));
            }
            // Signals loaded with the journal cost nothing to look at. The
            // store is asked only while calls run (another host may have
            // taken a signal in meanwhile): when nothing runs, the execution
            // suspends, and `suspend` itself finds a signal that arrived
            // (and leaves it ready to run at once), in one round trip
            // however many names it waits for.
            for (handle, name) in &signals {
                let consumed = self.consumed.get(name).copied().unwrap_or(0);
                if let Some(sig) = self.buffered_signal(name, consumed) {
                    return Ok((*handle, 1, 0, signal_value(name, sig)));
                }
            }
            if running
                && !signals.is_empty()
                && signals_checked.is_some_and(|t| t.elapsed() >= SIGNAL_POLL)
            {
                for (handle, name) in &signals {
                    let consumed = self.consumed.get(name).copied().unwrap_or(0);
                    if let Some(sig) = self.find_signal(name, consumed).await? {
                        return Ok((*handle, 1, 0, signal_value(name, sig)));
                    }
                }
            }
            if signals_checked.is_none_or(|t| t.elapsed() >= SIGNAL_POLL) {
                signals_checked = Some(Instant::now());
            }
            let until_timer = next_timer.map(|(at, _, _)| Duration::from_millis(at - now));
            if flush
                && self.writer.unwritten()
                && let Err(e) = self.writer.flush().await
            {
                return Err(self.stop(End::Store(e)));
            }
            if !running {
                match until_timer {
                    Some(wait) if wait <= self.inline_sleep_max => {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    _ => return Err(self.suspend_on(&signals, next_timer.map(|(at, _, _)| at))),
                }
            }
            let poll = (!signals.is_empty()).then_some(SIGNAL_POLL);
            let nap = match (until_timer, poll) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                joined = self.join.running.join_next() => {
                    if let Some(joined) = joined {
                        self.joined(joined);
                    }
                }
                () = async {
                    match nap {
                        Some(nap) => tokio::time::sleep(nap).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// A task ended: its outcome waits for the guest, unless the handle
    /// was forgotten meanwhile.
    fn joined(&mut self, joined: Result<(u64, ToolOutcome), tokio::task::JoinError>) {
        match joined {
            Ok((handle, outcome)) => {
                if let Some(Pending::Tool { task }) = self.join.pending.get_mut(&handle) {
                    *task = None;
                    self.join.finished.push((handle, outcome));
                }
            }
            // Aborted: forgotten. (A panic is caught inside the task.)
            Err(e) if e.is_cancelled() => {}
            Err(e) => tracing::error!(execution = %self.id, "a tool call's task failed: {e}"),
        }
    }

    /// The suspension for an `await-any` left with timers and signals.
    fn suspend_on(
        &mut self,
        signals: &[(u64, String)],
        wake_at_ms: Option<u64>,
    ) -> wasmtime::Error {
        let mut waits: Vec<SignalWait> = Vec::new();
        for (_, name) in signals {
            if !waits.iter().any(|w| w.name == *name) {
                let consumed = self.consumed.get(name).copied().unwrap_or(0);
                waits.push(SignalWait {
                    name: name.clone(),
                    consumed,
                });
            }
        }
        let end = match (waits.as_slice(), wake_at_ms) {
            ([], Some(wake_at_ms)) => End::Suspend {
                wait: Wait::Timer { wake_at_ms },
                consumed: 0,
            },
            ([one], None) => End::Suspend {
                wait: Wait::Signal {
                    name: one.name.clone(),
                },
                consumed: one.consumed,
            },
            _ => End::Suspend {
                wait: Wait::Any {
                    signals: waits,
                    wake_at_ms,
                },
                consumed: 0,
            },
        };
        self.stop(end)
    }

    /// The `consumed`-th signal called `name` (from 0), if it was loaded
    /// with the journal.
    fn buffered_signal(&self, name: &str, consumed: u64) -> Option<SignalRecord> {
        self.signals
            .iter()
            .filter(|sig| sig.name == name)
            .nth(consumed as usize)
            .cloned()
    }

    /// The `consumed`-th signal called `name` (from 0), from the signals
    /// loaded with the journal or else from the store.
    pub(super) async fn find_signal(
        &mut self,
        name: &str,
        consumed: u64,
    ) -> wasmtime::Result<Option<SignalRecord>> {
        match self.buffered_signal(name, consumed) {
            Some(sig) => Ok(Some(sig)),
            None => match self.store.next_signal(&self.id, name, consumed).await {
                Ok(found) => Ok(found),
                Err(e) => Err(self.stop(End::Store(e))),
            },
        }
    }
}
