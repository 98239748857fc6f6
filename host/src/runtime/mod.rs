//! The local driver: the library API to start, resume, signal, cancel and
//! wait for executions, and the in-process scheduler that runs them.
//!
//! Each runnable execution is driven by one task: take the lease, load the
//! snapshot in one store read, run an invocation, record how it ended, and
//! decide what comes next: run again at once (the budget ran out, or what it
//! waited for arrived), at a due time (a timer), when a signal comes, or after
//! a backoff (the store failed transiently). Nothing of a suspended execution
//! stays in memory but, for a timer, a sleeping task holding its id.
//!
//! With a work queue ([`RuntimeBuilder::queue`], see
//! [`crate::queue`]) the same driver runs, but what comes next goes through
//! Redis instead of this process: a continuation is a resume message any
//! host may take, a timer is an entry in the shared timer set, and the
//! message that caused an invocation is acknowledged once that invocation
//! has recorded how it ended.

mod after;
mod driver;
mod pacing;
mod retention;
mod sandbox;
mod start;
mod waiters;
mod worker;

pub use crate::engine::invocation::LogLine;
use driver::Active;
pub use sandbox::{MAX_REPLAY_LOG_LINES, ReplayReport, ReplayStop};
pub use start::StartOptions;
pub use waiters::WAIT_POLL;
pub use worker::Swept;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::RuntimeConfig;
use crate::engine::invocation::{self, End, Invocation};
use crate::engine::{CompileError, CompiledWorkflow, WorkflowEngine};
use crate::execution::{
    ConsumerSession, ExecutionRecord, Failure, FailureKind, Outcome, Status, StreamPolicy, Wait,
};
use crate::ids::{Digest, ExecutionId, InvalidId};
use crate::journal::{Entry, EntryKind, Started};
use crate::metrics::{Metrics, StatusLabel};
use crate::queue::Message;
use crate::store::{
    Created, DeploymentVersion, ExecutionPage, ListQuery, Store, StoreError, Suspended, now_ms,
};
use crate::telemetry::Telemetry;
use crate::tools::ToolRegistry;

/// Errors of the runtime API, by what the caller does next: fix the request
/// (`UnknownWorkflow`, `InvalidName`, `InvalidId`, `IdConflict`, `Compile`),
/// or look at the store error (retry if it is retriable).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No workflow is deployed under that name.
    #[error("no workflow named {0:?} is deployed")]
    UnknownWorkflow(String),
    /// A workflow name that cannot be used.
    #[error("invalid workflow name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    /// A bad execution id.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    /// The id is taken by an execution of another workflow or input.
    #[error("execution {0} already exists with a different workflow or input")]
    IdConflict(ExecutionId),
    /// The component was rejected.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// A signal name only the host may send (`reprise:...`).
    #[error("signal names starting with \"reprise:\" are reserved for the host: {0:?}")]
    ReservedSignal(String),
    /// The consumer session was closed; open a new one to read again.
    #[error("consumer session {0:?} is closed")]
    SessionClosed(String),
    /// The execution has no consumer session with that id.
    #[error("no consumer session {0:?}")]
    NoSession(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A runtime with background tasks (a retention sweep, a queue) was
    /// built outside a tokio runtime.
    #[error("a runtime with a retention sweep or a queue must be built inside a tokio runtime")]
    NoAsyncRuntime,
    /// The work queue failed.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// A bug in the host (a task panicked): not retried, since the same
    /// request would meet the same bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A deployed workflow.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// Its name.
    pub name: String,
    /// Version number of this digest under this name (from 1).
    pub version: u32,
    /// Digest of the component bytes.
    pub digest: Digest,
    /// What the component imports.
    pub imports: Vec<String>,
    /// When this version was deployed, ms since the Unix epoch.
    pub deployed_at_ms: u64,
}

impl Deployment {
    fn new(name: String, v: DeploymentVersion) -> Self {
        Self {
            name,
            version: v.version,
            digest: v.digest,
            imports: v.imports,
            deployed_at_ms: v.deployed_at_ms,
        }
    }
}

/// Runs workflow executions against one store with one set of tools.
///
/// Dropping the runtime stops its tasks; running invocations are abandoned
/// mid-step and resume from the journal next time (nothing recorded is lost).
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<WorkflowEngine>,
    store: Arc<dyn Store>,
    tools: Arc<ToolRegistry>,
    telemetry: Telemetry,
    config: RuntimeConfig,
    changes: watch::Sender<u64>,
    /// Executions being driven by this runtime.
    active: Mutex<HashMap<ExecutionId, Active>>,
    tasks: Mutex<JoinSet<()>>,
    closed: AtomicBool,
    /// Set by [`Runtime::drain`]: invocations suspend before their next step.
    draining: Arc<AtomicBool>,
    live_instances: AtomicUsize,
    /// Invocations between taking their lease and recording how they ended.
    in_flight: AtomicUsize,
    invocations: AtomicU64,
    metrics: Arc<Metrics>,
    /// The work queue, when one is attached.
    queue: Option<worker::QueueLink>,
    /// Held while a component is loaded and compiled, so invocations that
    /// miss the cache together compile it once, not once each.
    compiling: tokio::sync::Mutex<()>,
    /// Executions someone here waits on ([`Runtime::wait_until`]): how
    /// many wait, and the channel that wakes them when that execution
    /// changes (here, or on another host as the queue's pub/sub tells).
    waited: Mutex<HashMap<String, waiters::Waited>>,
    /// Streaming executions with an invocation here: a consumer's read
    /// notifies an `emit` waiting for room in the window.
    reads: Mutex<HashMap<ExecutionId, Arc<tokio::sync::Notify>>>,
    /// Tool calls started without waiting that may run at once here
    /// (`RuntimeConfig::max_concurrent_calls`).
    calls: Arc<tokio::sync::Semaphore>,
    /// Tool calls between a failed attempt and the next, here.
    retrying: Arc<crate::tools::attempts::RetryBoard>,
}

/// What cancelling an execution does to its unfinished child executions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Children {
    /// Cancel them too, and theirs (the default).
    #[default]
    Cancel,
    /// Leave them running; their ends go to nobody.
    Keep,
}

/// Builds a [`Runtime`]: see [`Runtime::builder`].
pub struct RuntimeBuilder {
    engine: Arc<WorkflowEngine>,
    store: Arc<dyn Store>,
    tools: ToolRegistry,
    config: RuntimeConfig,
    queue: Option<crate::queue::RedisQueue>,
    telemetry: Telemetry,
}

impl RuntimeBuilder {
    /// Where traces go (default: nowhere; see [`crate::telemetry`]).
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The tools workflows may call (default: the built-in ones).
    pub fn tools(mut self, tools: ToolRegistry) -> Self {
        self.tools = tools;
        self
    }

    /// Budgets, leases, retention, streams (default: [`RuntimeConfig::default`]).
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// Takes work from `queue` (see [`crate::queue`]): starts and resumes
    /// from the stream, continuations and timers through Redis, messages of
    /// dead hosts taken over. Every host on a store should use the queue:
    /// a host driving an execution without a message behind it could leave
    /// it stuck if it dies (the periodic sweep eventually finds it). Call
    /// [`Runtime::recover`] after building, to queue what an earlier crash
    /// may have left without a message.
    pub fn queue(mut self, queue: crate::queue::RedisQueue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The runtime, with its background tasks started: the retention sweep
    /// when `config.retention` is set, and the queue's loops with a queue.
    /// Those are tokio tasks, so building one outside a tokio runtime is an
    /// error rather than a runtime that silently never sweeps.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let needs_tasks = self.config.retention.is_some() || self.queue.is_some();
        if needs_tasks && tokio::runtime::Handle::try_current().is_err() {
            return Err(RuntimeError::NoAsyncRuntime);
        }
        let metrics = Arc::new(Metrics::default());
        let queue = self
            .queue
            .map(|q| worker::QueueLink::new(q, self.config.host_id.clone(), metrics.clone()));
        let has_queue = queue.is_some();
        let max_concurrent_calls = self.config.max_concurrent_calls.max(1);
        let rt = Runtime {
            inner: Arc::new(Inner {
                engine: self.engine,
                store: self.store,
                tools: Arc::new(self.tools),
                telemetry: self.telemetry,
                config: self.config,
                changes: watch::channel(0).0,
                active: Mutex::new(HashMap::new()),
                tasks: Mutex::new(JoinSet::new()),
                closed: AtomicBool::new(false),
                draining: Arc::new(AtomicBool::new(false)),
                live_instances: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                invocations: AtomicU64::new(0),
                queue,
                compiling: tokio::sync::Mutex::new(()),
                waited: Mutex::new(HashMap::new()),
                reads: Mutex::new(HashMap::new()),
                calls: Arc::new(tokio::sync::Semaphore::new(max_concurrent_calls)),
                retrying: Arc::new(crate::tools::attempts::RetryBoard::new(metrics.clone())),
                metrics,
            }),
        };
        if let Some(retention) = rt.inner.config.retention {
            let inner = rt.inner.clone();
            rt.inner
                .spawn(async move { inner.expire_finished(retention).await });
        }
        if has_queue {
            rt.inner.start_queue_loops();
        }
        Ok(rt)
    }
}

impl Runtime {
    /// A runtime on `engine`, `store` and `tools`, without a work queue:
    /// shorthand for [`Runtime::builder`]. Call [`Runtime::recover`] to pick
    /// up executions a previous process left runnable.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime when `config.retention` is set (its sweep is
    /// a task); [`RuntimeBuilder::build`] returns that as an error instead.
    pub fn new(
        engine: Arc<WorkflowEngine>,
        store: Arc<dyn Store>,
        tools: ToolRegistry,
        config: RuntimeConfig,
    ) -> Self {
        Self::builder(engine, store)
            .tools(tools)
            .config(config)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Puts a runtime together; what runs in the background (the retention
    /// sweep, the work queue's loops) is decided here, once, and started by
    /// [`RuntimeBuilder::build`].
    pub fn builder(engine: Arc<WorkflowEngine>, store: Arc<dyn Store>) -> RuntimeBuilder {
        RuntimeBuilder {
            engine,
            store,
            tools: ToolRegistry::with_builtins(),
            config: RuntimeConfig::default(),
            queue: None,
            telemetry: Telemetry::off(),
        }
    }

    /// Deletes an execution that has ended, with its journal (see
    /// [`Store::delete_execution`]).
    pub async fn delete(&self, id: &ExecutionId) -> Result<(), RuntimeError> {
        Ok(self.inner.store.delete_execution(id).await?)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Compiles `bytes`, checks them against the workflow world, stores them
    /// by digest and points `name` at them. Deploying is idempotent per
    /// digest; executions stay pinned to the digest they started on.
    pub async fn deploy(&self, name: &str, bytes: Vec<u8>) -> Result<Deployment, RuntimeError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(RuntimeError::InvalidName(name.to_string()));
        }
        let engine = self.inner.engine.clone();
        let (compiled, bytes) = tokio::task::spawn_blocking(move || {
            let compiled = engine.compile(&bytes);
            (compiled, bytes)
        })
        .await
        .map_err(|e| RuntimeError::Internal(format!("compiling the component failed: {e}")))?;
        let compiled = compiled?;
        self.inner
            .store
            .put_component(&compiled.digest, &bytes)
            .await?;
        let version = DeploymentVersion {
            version: 0,
            digest: compiled.digest,
            deployed_at_ms: now_ms(),
            imports: compiled.imports.clone(),
        };
        let current = self.inner.store.put_deployment(name, &version).await?;
        Ok(Deployment::new(name.to_string(), current))
    }

    /// Every deployed workflow at its current version, sorted by name.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, RuntimeError> {
        Ok(self
            .inner
            .store
            .list_deployments()
            .await?
            .into_iter()
            .map(|(name, v)| Deployment::new(name, v))
            .collect())
    }

    /// Every version of workflow `name`, oldest first.
    pub async fn deployment_versions(&self, name: &str) -> Result<Vec<Deployment>, RuntimeError> {
        let versions = self.inner.store.deployment_versions(name).await?;
        if versions.is_empty() {
            return Err(RuntimeError::UnknownWorkflow(name.to_string()));
        }
        Ok(versions
            .into_iter()
            .map(|v| Deployment::new(name.to_string(), v))
            .collect())
    }

    /// A page of executions (see [`Store::list_page`]).
    pub async fn list_page(&self, query: &ListQuery) -> Result<ExecutionPage, RuntimeError> {
        Ok(self.inner.store.list_page(query).await?)
    }

    /// Starts an execution of the workflow deployed as `workflow`. With an
    /// `id`, starting twice starts once: the second call returns the same id
    /// (or `IdConflict` if the workflow or input differ).
    pub async fn start(
        &self,
        workflow: &str,
        input: Vec<u8>,
        id: Option<ExecutionId>,
    ) -> Result<ExecutionId, RuntimeError> {
        self.start_with(workflow, input, id, None).await
    }

    /// [`Runtime::start`], as a stream paced by its consumers when `stream`
    /// is set (see [`crate::stream`]).
    pub async fn start_with(
        &self,
        workflow: &str,
        input: Vec<u8>,
        id: Option<ExecutionId>,
        stream: Option<StreamPolicy>,
    ) -> Result<ExecutionId, RuntimeError> {
        let options = StartOptions {
            id,
            stream,
            trace: None,
        };
        self.start_with_options(workflow, input, options).await
    }

    /// Runs an execution that is not running here now (e.g. left by a
    /// previous process). A terminal execution is left alone.
    pub async fn resume(&self, id: &ExecutionId) -> Result<ExecutionRecord, RuntimeError> {
        let rec = self.inner.store.get_execution(id).await?;
        self.resume_read(&rec).await?;
        Ok(rec)
    }

    /// [`Runtime::resume`] of the execution whose record was just read.
    async fn resume_read(&self, rec: &ExecutionRecord) -> Result<(), RuntimeError> {
        if rec.status.is_terminal() {
            return Ok(());
        }
        let id = &rec.id;
        match &rec.wait {
            Some(w @ (Wait::Timer { .. } | Wait::Consumers { .. } | Wait::Any { .. })) => {
                match w.wake_at_ms() {
                    Some(at) if at > now_ms() => self.inner.wake_at(id, at).await?,
                    Some(_) => self.inner.wake(id).await?,
                    // Waits for a consumer to read, or a signal: that
                    // wakes it.
                    None => {}
                }
            }
            _ => self.inner.wake(id).await?,
        }
        Ok(())
    }

    /// Schedules every execution a previous process left unfinished: ready
    /// ones now, timers when due. Those waiting for a signal wait. Returns
    /// how many were scheduled.
    ///
    /// With a work queue attached, only executions the queue seems to have
    /// lost are scheduled (see [`RuntimeBuilder::queue`]): the others have
    /// a message or a timer already.
    pub async fn recover(&self) -> Result<usize, RuntimeError> {
        if let Some(swept) = self.sweep().await? {
            return Ok(swept.queued);
        }
        let mut n = 0;
        for status in [Status::Running, Status::Suspended] {
            for rec in self.inner.store.list_executions(Some(status)).await? {
                if matches!(
                    rec.wait,
                    Some(
                        Wait::Signal { .. }
                            | Wait::Any {
                                wake_at_ms: None,
                                ..
                            }
                    )
                ) {
                    continue;
                }
                // The listing's record, as `resume` would read it.
                self.resume_read(&rec).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// With a work queue attached, queues the executions it seems to have
    /// lost (the sweep every host takes turns at); `None` without a queue.
    pub async fn sweep(&self) -> Result<Option<Swept>, RuntimeError> {
        match self.inner.queue.as_ref() {
            Some(_) => Ok(Some(self.inner.sweep().await?)),
            None => Ok(None),
        }
    }

    /// Sends a signal; it is buffered until the workflow waits for it.
    pub async fn signal(
        &self,
        id: &ExecutionId,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        if name.starts_with(crate::execution::RESERVED_SIGNAL_PREFIX) {
            return Err(RuntimeError::ReservedSignal(name.to_string()));
        }
        let delivered = self.inner.store.signal(id, name, &payload).await?;
        if delivered.woke
            && let Err(e) = self.inner.wake(id).await
        {
            // The signal is recorded; the execution is ready to run and the
            // queue's sweep finds it (failing here would make the caller
            // send the signal twice).
            tracing::warn!(execution = %id, "signal recorded, but cannot queue the resume: {e}");
        }
        self.inner.notify(id);
        Ok(())
    }

    /// Cancels an execution: it is not run again, and a running invocation
    /// stops at its next journal write.
    ///
    /// Its unfinished children (and theirs) are cancelled too, and a
    /// cancelled child's parent hears of it as of any end.
    pub async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, RuntimeError> {
        self.cancel_with(id, Children::Cancel).await
    }

    /// [`Runtime::cancel`], saying what becomes of its unfinished children.
    pub async fn cancel_with(
        &self,
        id: &ExecutionId,
        children: Children,
    ) -> Result<ExecutionRecord, RuntimeError> {
        let rec = self.inner.store.cancel(id).await?;
        self.inner.after_cancel(&rec).await;
        if children == Children::Keep {
            return Ok(rec);
        }
        let mut parents = vec![id.clone()];
        while let Some(parent) = parents.pop() {
            for child in self.children(&parent).await? {
                match self.inner.store.cancel(&child).await {
                    Ok(rec) => {
                        self.inner.after_cancel(&rec).await;
                        parents.push(child);
                    }
                    // Already ended (or never created: a crash between the
                    // start and the child).
                    Err(StoreError::Terminal { .. } | StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(rec)
    }

    /// The tool calls of `id` that failed and wait for their next attempt
    /// on this host (another host of the store does not see them here).
    pub fn retrying(&self, id: &ExecutionId) -> Vec<crate::tools::attempts::RetryingCall> {
        self.inner.retrying.of(id)
    }

    /// The ids of the children an execution started, in the order started.
    pub async fn children(&self, id: &ExecutionId) -> Result<Vec<ExecutionId>, RuntimeError> {
        Ok(self
            .inner
            .store
            .load(id)
            .await?
            .journal
            .into_iter()
            .filter_map(|e| match e.kind {
                EntryKind::Started(Started::Child { id, .. }) => Some(id),
                _ => None,
            })
            .collect())
    }

    /// The execution's record.
    pub async fn status(&self, id: &ExecutionId) -> Result<ExecutionRecord, RuntimeError> {
        Ok(self.inner.store.get_execution(id).await?)
    }

    /// The execution's journal.
    pub async fn journal(&self, id: &ExecutionId) -> Result<Vec<Entry>, RuntimeError> {
        Ok(self.inner.store.load(id).await?.journal)
    }

    /// Up to `max` entries of the execution's journal from index `from`,
    /// and its length; reads only those entries.
    pub async fn journal_page(
        &self,
        id: &ExecutionId,
        from: u64,
        max: usize,
    ) -> Result<crate::store::JournalSlice, RuntimeError> {
        Ok(self.inner.store.journal_page(id, from, max).await?)
    }

    /// Up to `max` items the execution emitted after offset `after` (from
    /// the first when `None`), and how many it has emitted so far.
    pub async fn items(
        &self,
        id: &ExecutionId,
        after: Option<u64>,
        max: usize,
    ) -> Result<crate::store::ItemsPage, RuntimeError> {
        Ok(self.inner.store.items(id, after, max).await?)
    }

    /// Records that consumer `session` of a stream is there and has read
    /// up to offset `acked`, opening the session on first use; a read that
    /// frees room in the window lets the producer go on. Fails with
    /// `SessionClosed` once the session was closed.
    pub async fn touch_session(
        &self,
        id: &ExecutionId,
        session: &str,
        acked: Option<u64>,
    ) -> Result<ConsumerSession, RuntimeError> {
        let s = self.inner.store.touch_session(id, session, acked).await?;
        if s.closed {
            return Err(RuntimeError::SessionClosed(session.to_string()));
        }
        self.inner.window_moved(id).await;
        Ok(s)
    }

    /// Closes consumer `session`: it no longer paces the stream. If it was
    /// the last live one and the stream was started with
    /// [`OnAbandon::Cancel`](crate::execution::OnAbandon::Cancel), the execution is cancelled.
    pub async fn close_session(
        &self,
        id: &ExecutionId,
        session: &str,
    ) -> Result<ConsumerSession, RuntimeError> {
        let closed = self
            .inner
            .store
            .close_session(id, session)
            .await?
            .ok_or_else(|| RuntimeError::NoSession(session.to_string()))?;
        let rec = self.inner.store.get_execution(id).await?;
        if let Some(policy) = rec.stream
            && !rec.status.is_terminal()
        {
            let ttl_ms = self.inner.config.stream.session_ttl.as_millis() as u64;
            let sessions = self.inner.store.sessions(id).await?;
            if crate::stream::abandoned(&policy, &sessions, ttl_ms, now_ms()) {
                tracing::info!(execution = %id, "the last consumer left: cancelling");
                match self.cancel(id).await {
                    Ok(_) | Err(RuntimeError::Store(StoreError::Terminal { .. })) => {}
                    Err(e) => return Err(e),
                }
            } else {
                self.inner.window_moved(id).await;
            }
        }
        Ok(closed)
    }

    /// Consumer sessions of an execution's stream.
    pub async fn sessions(&self, id: &ExecutionId) -> Result<Vec<ConsumerSession>, RuntimeError> {
        Ok(self.inner.store.sessions(id).await?)
    }

    /// The settings streams are paced with.
    pub fn stream_config(&self) -> &crate::config::StreamConfig {
        &self.inner.config.stream
    }

    /// Instances alive right now (each is one running invocation).
    pub fn live_instances(&self) -> usize {
        self.inner.live_instances.load(Ordering::SeqCst)
    }

    /// Executions this runtime is driving now (running, or about to run
    /// again at once). Executions waiting for a timer or a signal are not
    /// counted: they hold nothing but a sleeping task.
    pub fn active_executions(&self) -> usize {
        self.inner.active.lock().expect("active poisoned").len()
    }

    /// The runtime's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Whether [`Runtime::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Stops taking work and lets running invocations reach their next
    /// journal write, where they suspend (their executions stay runnable,
    /// for [`Runtime::recover`] in the next process or another host). Waits
    /// up to `grace` for them, then stops the rest like
    /// [`Runtime::shutdown`]: those resume from the last recorded step, so
    /// nothing recorded is lost either way. Returns how many invocations
    /// were still running when `grace` ran out.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.inner.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        let mut changes = self.inner.changes.subscribe();
        let in_flight = || self.inner.in_flight.load(Ordering::SeqCst);
        while in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        let left = in_flight();
        self.shutdown().await;
        left
    }

    /// Invocations run by this runtime so far.
    pub fn invocations(&self) -> u64 {
        self.inner.invocations.load(Ordering::SeqCst)
    }

    /// Stops every task of this runtime and waits for them to end. Running
    /// invocations are abandoned mid-step; their executions resume from the
    /// journal later.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks poisoned"));
        tasks.shutdown().await;
        self.inner.active.lock().expect("active poisoned").clear();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.abort_all();
        }
    }
}

impl Inner {}
