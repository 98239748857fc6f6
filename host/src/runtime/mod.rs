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
//! With a work queue attached ([`Runtime::attach_queue`], see
//! [`crate::queue`]) the same driver runs, but what comes next goes through
//! Redis instead of this process: a continuation is a resume message any
//! host may take, a timer is an entry in the shared timer set, and the
//! message that caused an invocation is acknowledged once that invocation
//! has recorded how it ended.

mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::RuntimeConfig;
use crate::engine::invocation::{self, End, Invocation};
use crate::engine::{CompileError, CompiledWorkflow, WorkflowEngine};
use crate::execution::{
    ConsumerSession, ExecutionRecord, Failure, FailureKind, OnAbandon, Outcome, Status,
    StreamPolicy, Wait,
};
use crate::ids::{Digest, ExecutionId, InvalidId};
use crate::journal::Entry;
use crate::metrics::{Metrics, StatusLabel};
use crate::queue::Message;
use crate::store::{Created, DeploymentVersion, Store, StoreError, Suspended, now_ms};
use crate::tools::ToolRegistry;

/// How often [`Runtime::wait_until`] re-reads the store, to see changes made
/// by other hosts.
pub const WAIT_POLL: Duration = Duration::from_millis(250);

/// Executions deleted per store call by the retention sweep.
const PURGE_BATCH: usize = 500;

/// Longest delay between retries after store errors.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

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
    /// The consumer session was closed; open a new one to read again.
    #[error("consumer session {0:?} is closed")]
    SessionClosed(String),
    /// The execution has no consumer session with that id.
    #[error("no consumer session {0:?}")]
    NoSession(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    queue: OnceLock<worker::QueueLink>,
    /// Held while a component is loaded and compiled, so invocations that
    /// miss the cache together compile it once, not once each.
    compiling: tokio::sync::Mutex<()>,
    /// Executions someone here waits on ([`Runtime::wait_until`]), with how
    /// many wait: news of them from other hosts wakes the waiters.
    waited: Mutex<HashMap<String, usize>>,
    /// Streaming executions with an invocation here: a consumer's read
    /// notifies an `emit` waiting for room in the window.
    reads: Mutex<HashMap<ExecutionId, Arc<tokio::sync::Notify>>>,
}

/// Counts a waiter in [`Inner::waited`] while it lives.
struct Waiting<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waited = self.inner.waited.lock().expect("waited poisoned");
        if let Some(n) = waited.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                waited.remove(&self.id);
            }
        }
    }
}

/// An execution a driver task is working on.
#[derive(Default)]
struct Active {
    /// Run once more after the current invocation (something happened
    /// while it ran).
    again: bool,
    /// Queue entries to acknowledge once the driver is done.
    entries: Vec<String>,
}

/// What the driver does after an invocation.
enum Next {
    Again,
    Retry,
    RetryAfter(Duration),
    /// Another host holds the lease, until about this long from now.
    Held(Duration),
    Done,
}

impl Runtime {
    /// A runtime on `engine`, `store` and `tools`. Call [`Runtime::recover`]
    /// to pick up executions a previous process left runnable.
    pub fn new(
        engine: Arc<WorkflowEngine>,
        store: Arc<dyn Store>,
        tools: ToolRegistry,
        config: RuntimeConfig,
    ) -> Self {
        let rt = Self {
            inner: Arc::new(Inner {
                engine,
                store,
                tools: Arc::new(tools),
                config,
                changes: watch::channel(0).0,
                active: Mutex::new(HashMap::new()),
                tasks: Mutex::new(JoinSet::new()),
                closed: AtomicBool::new(false),
                draining: Arc::new(AtomicBool::new(false)),
                live_instances: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                invocations: AtomicU64::new(0),
                metrics: Arc::new(Metrics::default()),
                queue: OnceLock::new(),
                compiling: tokio::sync::Mutex::new(()),
                waited: Mutex::new(HashMap::new()),
                reads: Mutex::new(HashMap::new()),
            }),
        };
        if let Some(retention) = rt.inner.config.retention
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let inner = rt.inner.clone();
            rt.inner
                .spawn(async move { inner.expire_finished(retention).await });
        }
        rt
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

    /// Executions, optionally only those of one workflow and one status,
    /// sorted by creation time then id.
    pub async fn list(
        &self,
        workflow: Option<&str>,
        status: Option<Status>,
    ) -> Result<Vec<ExecutionRecord>, RuntimeError> {
        let mut all = self.inner.store.list_executions(status).await?;
        if let Some(w) = workflow {
            all.retain(|r| r.workflow == w);
        }
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(all)
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
        let (id, runnable) = self.inner.create(workflow, input, id, stream).await?;
        if runnable {
            self.inner.wake(&id).await?;
        }
        Ok(id)
    }

    /// Runs an execution that is not running here now (e.g. left by a
    /// previous process). A terminal execution is left alone.
    pub async fn resume(&self, id: &ExecutionId) -> Result<ExecutionRecord, RuntimeError> {
        let rec = self.inner.store.get_execution(id).await?;
        if !rec.status.is_terminal() {
            match &rec.wait {
                Some(w @ (Wait::Timer { .. } | Wait::Consumers { .. })) => {
                    match w.wake_at_ms() {
                        Some(at) if at > now_ms() => self.inner.wake_at(id, at).await?,
                        Some(_) => self.inner.wake(id).await?,
                        // Waits for a consumer to read: reading wakes it.
                        None => {}
                    }
                }
                _ => self.inner.wake(id).await?,
            }
        }
        Ok(rec)
    }

    /// Schedules every execution a previous process left unfinished: ready
    /// ones now, timers when due. Those waiting for a signal wait. Returns
    /// how many were scheduled.
    ///
    /// With a work queue attached, only executions the queue seems to have
    /// lost are scheduled (see [`Runtime::attach_queue`]): the others have
    /// a message or a timer already.
    pub async fn recover(&self) -> Result<usize, RuntimeError> {
        if self.inner.queue.get().is_some() {
            return self.inner.sweep().await;
        }
        let mut n = 0;
        for status in [Status::Running, Status::Suspended] {
            for rec in self.inner.store.list_executions(Some(status)).await? {
                if matches!(rec.wait, Some(Wait::Signal { .. })) {
                    continue;
                }
                self.resume(&rec.id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Sends a signal; it is buffered until the workflow waits for it.
    pub async fn signal(
        &self,
        id: &ExecutionId,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let delivered = self.inner.store.signal(id, name, &payload).await?;
        if delivered.woke
            && let Err(e) = self.inner.wake(id).await
        {
            // The signal is recorded; the execution is ready to run and the
            // queue's sweep finds it (failing here would make the caller
            // send the signal twice).
            tracing::warn!(execution = %id, "signal recorded, but cannot queue the resume: {e}");
        }
        self.inner.notify();
        Ok(())
    }

    /// Cancels an execution: it is not run again, and a running invocation
    /// stops at its next journal write.
    pub async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, RuntimeError> {
        let rec = self.inner.store.cancel(id).await?;
        self.inner.notify();
        self.inner.publish_settled(id).await;
        Ok(rec)
    }

    /// The execution's record.
    pub async fn status(&self, id: &ExecutionId) -> Result<ExecutionRecord, RuntimeError> {
        Ok(self.inner.store.get_execution(id).await?)
    }

    /// The execution's journal.
    pub async fn journal(&self, id: &ExecutionId) -> Result<Vec<Entry>, RuntimeError> {
        Ok(self.inner.store.load(id).await?.journal)
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
    /// [`OnAbandon::Cancel`], the execution is cancelled.
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
            let now = now_ms();
            if policy.on_abandon == OnAbandon::Cancel
                && !sessions.iter().any(|s| s.is_live(ttl_ms, now))
            {
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

    /// Waits until the execution ends.
    pub async fn wait(&self, id: &ExecutionId) -> Result<ExecutionRecord, RuntimeError> {
        self.wait_until(id, |r| r.status.is_terminal()).await
    }

    /// Waits until the execution ends or waits for a signal: the point past
    /// which this runtime makes no progress on its own.
    pub async fn wait_settled(&self, id: &ExecutionId) -> Result<ExecutionRecord, RuntimeError> {
        self.wait_until(id, ExecutionRecord::is_settled).await
    }

    /// Waits until `done` holds for the execution's record. Changes made
    /// through this runtime are seen at once; changes made by other hosts
    /// sharing the store within [`WAIT_POLL`]. While the store is
    /// unavailable it keeps waiting.
    pub async fn wait_until(
        &self,
        id: &ExecutionId,
        done: impl Fn(&ExecutionRecord) -> bool,
    ) -> Result<ExecutionRecord, RuntimeError> {
        let mut changes = self.inner.changes.subscribe();
        let _waiting = self.inner.waiting(id);
        loop {
            changes.borrow_and_update();
            match self.inner.store.get_execution(id).await {
                Ok(rec) if done(&rec) => return Ok(rec),
                Ok(_) => {}
                Err(e) if e.is_retriable() => {
                    tracing::debug!(execution = %id, "waiting through a store error: {e}");
                }
                Err(e) => return Err(e.into()),
            }
            // The sender lives as long as `self`, so `changed` cannot fail.
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(WAIT_POLL) => {}
            }
        }
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

impl Inner {
    /// Deletes executions that finished more than `retention` ago, checking
    /// every tenth of it (at least every 5 minutes).
    async fn expire_finished(&self, retention: Duration) {
        let every = (retention / 10).clamp(Duration::from_millis(50), Duration::from_secs(300));
        loop {
            tokio::time::sleep(every).await;
            let before = now_ms().saturating_sub(retention.as_millis() as u64);
            loop {
                match self.store.purge_finished(before, PURGE_BATCH).await {
                    Ok(n) if n >= PURGE_BATCH => continue,
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!("deleted {n} expired executions");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("cannot delete expired executions yet: {e}");
                        break;
                    }
                }
            }
        }
    }

    fn waiting(&self, id: &ExecutionId) -> Waiting<'_> {
        *self
            .waited
            .lock()
            .expect("waited poisoned")
            .entry(id.to_string())
            .or_default() += 1;
        Waiting {
            inner: self,
            id: id.to_string(),
        }
    }

    fn is_waited(&self, id: &str) -> bool {
        self.waited
            .lock()
            .expect("waited poisoned")
            .contains_key(id)
    }

    /// With a queue, tells waiters on other hosts that `id` changed.
    async fn publish_settled(&self, id: &ExecutionId) {
        if let Some(link) = self.queue.get()
            && let Err(e) = link.queue.publish_settled(id).await
        {
            tracing::debug!(execution = %id, "cannot tell other hosts: {e}");
        }
    }

    fn notify(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A consumer read (or left): the producer of stream `id` may have room
    /// again. An invocation here waiting for room hears it at once; an
    /// execution suspended for its consumers is woken (on any host) if it
    /// would find room.
    async fn window_moved(self: &Arc<Self>, id: &ExecutionId) {
        let local = self.reads.lock().expect("reads poisoned").get(id).cloned();
        if let Some(reads) = local {
            reads.notify_one();
            return;
        }
        self.wake_if_room(id).await;
    }

    /// After suspending `id` for its consumers: wakes it if a read came in
    /// between its last look at the window and the suspension.
    async fn recheck_window(self: &Arc<Self>, id: &ExecutionId) {
        self.wake_if_room(id).await;
    }

    /// Wakes `id` if it is suspended for its consumers and its pending item
    /// would now fit the window (or every consumer left).
    async fn wake_if_room(self: &Arc<Self>, id: &ExecutionId) {
        match self.room_for_producer(id).await {
            Ok(true) => {
                if let Err(e) = self.wake(id).await {
                    tracing::warn!(execution = %id, "cannot wake the producer: {e}");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(execution = %id, "cannot look at the window: {e}"),
        }
    }

    async fn room_for_producer(&self, id: &ExecutionId) -> Result<bool, StoreError> {
        use crate::stream::{Window, fits_bytes, window};
        let rec = self.store.get_execution(id).await?;
        let (Some(policy), Status::Suspended, Some(Wait::Consumers { item_len, .. })) =
            (rec.stream, rec.status, rec.wait)
        else {
            return Ok(false);
        };
        let next = self.store.items(id, None, 0).await?.count;
        let sessions = self.store.sessions(id).await?;
        let ttl_ms = self.config.stream.session_ttl.as_millis() as u64;
        // The byte window is checked below, from the store.
        match window(
            &policy,
            &sessions,
            (next, item_len),
            |_| 0,
            ttl_ms,
            now_ms(),
        ) {
            Window::Full { .. } => Ok(false),
            Window::Abandoned => Ok(true),
            Window::Open { low, .. } if policy.window_bytes.is_some() => {
                let unread: u64 = self
                    .store
                    .items(id, low.checked_sub(1), policy.window as usize)
                    .await?
                    .items
                    .iter()
                    .map(|(_, item)| item.len() as u64)
                    .sum();
                Ok(fits_bytes(&policy, unread, item_len))
            }
            Window::Open { .. } => Ok(true),
        }
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut tasks = self.tasks.lock().expect("tasks poisoned");
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    /// Creates an execution unless one with that id exists. Returns its id
    /// and whether it needs to be run (it is new, or an earlier start left
    /// it ready and not running).
    async fn create(
        &self,
        workflow: &str,
        input: Vec<u8>,
        id: Option<ExecutionId>,
        stream: Option<StreamPolicy>,
    ) -> Result<(ExecutionId, bool), RuntimeError> {
        let digest = self
            .store
            .get_deployment(workflow)
            .await?
            .ok_or_else(|| RuntimeError::UnknownWorkflow(workflow.to_string()))?;
        let id = id.unwrap_or_else(ExecutionId::generate);
        let mut record =
            ExecutionRecord::new(id.clone(), workflow.to_string(), digest, input, now_ms());
        record.stream = stream;
        match self.store.create_execution(&record).await? {
            Created::New => Ok((id, true)),
            Created::Existing(existing) => {
                if existing.digest != record.digest
                    || existing.input != record.input
                    || existing.stream != record.stream
                {
                    return Err(RuntimeError::IdConflict(id));
                }
                let runnable = !existing.status.is_terminal() && existing.status != Status::Running;
                Ok((id, runnable))
            }
        }
    }

    /// The execution can run now: drive it here, or queue a resume for any
    /// host.
    async fn wake(self: &Arc<Self>, id: &ExecutionId) -> Result<(), RuntimeError> {
        match self.queue.get() {
            Some(link) => {
                link.queue.enqueue(&Message::Resume(id.clone())).await?;
            }
            None => self.schedule(id.clone()),
        }
        Ok(())
    }

    /// The execution can run at `at_ms`: sleep here, or set its timer in the
    /// queue's timer set.
    async fn wake_at(self: &Arc<Self>, id: &ExecutionId, at_ms: u64) -> Result<(), RuntimeError> {
        match self.queue.get() {
            Some(link) => link.add_timer(id, at_ms).await?,
            None => self.schedule_at(id.clone(), at_ms),
        }
        Ok(())
    }

    fn schedule(self: &Arc<Self>, id: ExecutionId) {
        let me = self.clone();
        self.spawn(async move { me.drive(id, None).await });
    }

    fn schedule_at(self: &Arc<Self>, id: ExecutionId, at_ms: u64) {
        let me = self.clone();
        self.spawn(async move {
            tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
            me.drive(id, None).await
        });
    }

    /// Drives one execution until it ends or waits; one driver per execution
    /// per runtime. `entry` is the queue message that asked for it, which is
    /// acknowledged when the driver is done.
    async fn drive(self: Arc<Self>, id: ExecutionId, entry: Option<String>) {
        {
            let mut active = self.active.lock().expect("active poisoned");
            if let Some(a) = active.get_mut(&id) {
                a.again = true;
                a.entries.extend(entry);
                return;
            }
            let entries = entry.into_iter().collect();
            active.insert(
                id.clone(),
                Active {
                    again: false,
                    entries,
                },
            );
        }
        let mut delay = self.config.retry_delay;
        loop {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let mut next = self.invoke_once(&id).await;
            if self.draining.load(Ordering::SeqCst) && !matches!(next, Next::Done) {
                // Leave it runnable in the store for the next process, or
                // hand it to another host through the queue (still counted
                // in flight, so the drain waits for the hand-off).
                let active = self.active.lock().expect("active poisoned").remove(&id);
                if let Some(link) = self.queue.get() {
                    link.hand_off(&id, active.map(|a| a.entries).unwrap_or_default())
                        .await;
                }
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.notify();
                return;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.notify();
            if let (Next::Held(_), Some(link)) = (&next, self.queue.get()) {
                // The holder has a message of its own behind it (see
                // `worker`), unless this one was taken over from a dead host.
                let entries = self
                    .active
                    .lock()
                    .expect("active poisoned")
                    .get(&id)
                    .map(|a| a.entries.clone())
                    .unwrap_or_default();
                if !entries.is_empty() && !link.any_taken_over(&entries) {
                    next = Next::Done;
                }
            }
            if let (Next::Again, Some(link)) = (&next, self.queue.get()) {
                // A continuation: any host may take it.
                match link.queue.enqueue(&Message::Resume(id.clone())).await {
                    Ok(_) => next = Next::Done,
                    Err(e) => {
                        tracing::warn!(execution = %id, "cannot queue the continuation, running it here: {e}")
                    }
                }
            }
            match next {
                Next::Again => delay = self.config.retry_delay,
                Next::Retry => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Next::RetryAfter(d) | Next::Held(d) => tokio::time::sleep(d).await,
                Next::Done => {
                    let entries = {
                        let mut active = self.active.lock().expect("active poisoned");
                        if let Some(a) = active.get_mut(&id)
                            && a.again
                        {
                            a.again = false;
                            continue;
                        }
                        active.remove(&id).map(|a| a.entries).unwrap_or_default()
                    };
                    if let Some(link) = self.queue.get() {
                        link.done(&entries).await;
                    }
                    return;
                }
            }
        }
    }

    async fn invoke_once(self: &Arc<Self>, id: &ExecutionId) -> Next {
        let cfg = &self.config;
        if self.draining.load(Ordering::SeqCst) {
            // Not done: left runnable for another host (see `drive`).
            return Next::Retry;
        }
        let (lease, snapshot) = match self
            .store
            .acquire_and_load(id, &cfg.host_id, cfg.lease_ttl)
            .await
        {
            Ok(taken) => taken,
            Err(StoreError::LeaseHeld { expires_at_ms, .. }) => {
                return Next::Held(Duration::from_millis(
                    expires_at_ms.saturating_sub(now_ms()) + 10,
                ));
            }
            Err(e) if e.is_retriable() => {
                tracing::warn!(execution = %id, "cannot take lease, will retry: {e}");
                return Next::Retry;
            }
            Err(StoreError::Terminal { .. }) | Err(StoreError::NotFound(_)) => return Next::Done,
            Err(e) => {
                tracing::error!(execution = %id, "cannot take lease: {e}");
                return Next::Done;
            }
        };
        self.invocations.fetch_add(1, Ordering::SeqCst);
        self.metrics.invocations.inc();
        self.notify();

        let compiled = match self.component(&snapshot.record.digest).await {
            Ok(Ok(c)) => c,
            Err(e) => return self.after_store_error(id, &lease, e).await,
            Ok(Err(failure)) => {
                return self
                    .after(id, &lease, End::Finished(Outcome::Failed(failure)))
                    .await;
            }
        };

        let reads = Arc::new(tokio::sync::Notify::new());
        if snapshot.record.stream.is_some() {
            self.reads
                .lock()
                .expect("reads poisoned")
                .insert(id.clone(), reads.clone());
        }
        let invocation = Invocation {
            snapshot,
            lease: lease.clone(),
            store: self.store.clone(),
            tools: self.tools.clone(),
            limits: cfg.limits.clone(),
            budget: cfg.budget.clone(),
            inline_sleep_max: cfg.inline_sleep_max,
            metrics: self.metrics.clone(),
            drain: self.draining.clone(),
            on_emit: {
                let me = Arc::downgrade(self);
                Arc::new(move || {
                    if let Some(me) = me.upgrade() {
                        me.notify();
                    }
                })
            },
            stream: cfg.stream.clone(),
            reads,
        };
        self.live_instances.fetch_add(1, Ordering::SeqCst);
        self.metrics.live_instances.inc();
        let end = tokio::select! {
            report = invocation::run(&self.engine, &compiled, invocation) => {
                tracing::debug!(
                    execution = %id,
                    replayed = report.replayed,
                    new_steps = report.new_steps,
                    "invocation ended: {:?}",
                    report.end
                );
                self.metrics.steps.inc_by(u64::from(report.new_steps));
                self.metrics.replayed_entries.inc_by(report.replayed as u64);
                if let Some(t) = report.replay_time {
                    self.metrics.replay_seconds.observe(t.as_secs_f64());
                }
                report.end
            }
            lost = renew_lease(self.store.as_ref(), id, &lease, cfg.lease_ttl) => End::Store(lost),
        };
        self.live_instances.fetch_sub(1, Ordering::SeqCst);
        self.metrics.live_instances.dec();
        self.reads.lock().expect("reads poisoned").remove(id);
        self.after(id, &lease, end).await
    }

    /// The compiled component for `digest`: from the engine's cache, or from
    /// the store and compiled. `Ok(Err(_))` is a failure of the execution.
    async fn component(
        &self,
        digest: &Digest,
    ) -> Result<Result<Arc<CompiledWorkflow>, Failure>, StoreError> {
        if let Some(c) = self.engine.cached(digest) {
            return Ok(Ok(c));
        }
        let _one_at_a_time = self.compiling.lock().await;
        if let Some(c) = self.engine.cached(digest) {
            return Ok(Ok(c));
        }
        let invalid = |message: String| {
            Ok(Err(Failure {
                kind: FailureKind::InvalidComponent,
                message,
            }))
        };
        let Some(bytes) = self.store.get_component(digest).await? else {
            return invalid(format!("component {digest} is not in the store"));
        };
        if Digest::of(&bytes) != *digest {
            return invalid(format!(
                "stored component {digest} does not match its digest"
            ));
        }
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.compile(&bytes)).await {
            Ok(Ok(c)) => Ok(Ok(c)),
            Ok(Err(e)) => invalid(e.to_string()),
            // A panic in the compiler would panic again on every retry.
            Err(e) => invalid(format!("compiling the component failed: {e}")),
        }
    }

    async fn after(
        self: &Arc<Self>,
        id: &ExecutionId,
        lease: &crate::execution::Lease,
        end: End,
    ) -> Next {
        let next = match end {
            End::Finished(outcome) => match self.store.finish(id, lease, &outcome).await {
                Ok(()) => {
                    self.metrics
                        .finished
                        .get_or_create(&StatusLabel {
                            status: outcome.status().as_str().to_string(),
                        })
                        .inc();
                    if let Outcome::Failed(f) = &outcome {
                        tracing::info!(execution = %id, "execution failed: {f}");
                    }
                    self.publish_settled(id).await;
                    Next::Done
                }
                Err(e) => return self.after_store_error(id, lease, e).await,
            },
            End::Suspend { wait, consumed } => {
                if let (Some(wake_at_ms), Some(link)) = (wait.wake_at_ms(), self.queue.get()) {
                    // The timer is set before the execution says it waits
                    // for it, so a crash in between leaves a timer that
                    // fires for nothing, never an execution nobody wakes.
                    if let Err(e) = link.add_timer(id, wake_at_ms).await {
                        // Retried (or not) exactly as a store error: the
                        // suspension has not been recorded yet.
                        let e = match e {
                            e if e.is_retriable() => StoreError::Unavailable(e.to_string()),
                            e => StoreError::Corrupt(e.to_string()),
                        };
                        return self.after_store_error(id, lease, e).await;
                    }
                }
                let suspended = self.store.suspend(id, lease, &wait, consumed).await;
                if let (Ok(Suspended::Waiting), Wait::Consumers { .. }) = (&suspended, &wait) {
                    // A read between the window check and the suspension
                    // found the execution still running and woke nothing.
                    self.recheck_window(id).await;
                }
                if suspended.is_ok() {
                    self.metrics.suspensions.inc();
                    if !matches!(wait, Wait::Ready) {
                        self.publish_settled(id).await;
                    }
                }
                match suspended {
                    Ok(Suspended::Ready) => Next::Again,
                    Ok(Suspended::Waiting) => match wait {
                        Wait::Ready => Next::Again,
                        w @ (Wait::Timer { .. } | Wait::Consumers { .. }) => {
                            if let (Some(at), None) = (w.wake_at_ms(), self.queue.get()) {
                                self.schedule_at(id.clone(), at);
                            }
                            Next::Done
                        }
                        Wait::Signal { .. } => Next::Done,
                    },
                    Err(e) => return self.after_store_error(id, lease, e).await,
                }
            }
            End::Store(e) => return self.after_store_error(id, lease, e).await,
            End::Busy(reason) => {
                tracing::debug!(execution = %id, "no instance slot free: {reason}");
                let _ = self.store.release_lease(id, lease).await;
                Next::RetryAfter(Duration::from_millis(10))
            }
        };
        self.notify();
        next
    }

    /// A store error ended the invocation: retry if it may pass; stop if the
    /// lease is gone or the execution ended (someone else is in charge).
    async fn after_store_error(
        &self,
        id: &ExecutionId,
        lease: &crate::execution::Lease,
        e: StoreError,
    ) -> Next {
        self.notify();
        if e.is_retriable() {
            tracing::warn!(execution = %id, "store error, will retry: {e}");
            // Best effort: if the store is down this fails and the lease
            // simply expires.
            let _ = self.store.release_lease(id, lease).await;
            return Next::Retry;
        }
        match e {
            StoreError::LeaseLost(_) | StoreError::Terminal { .. } | StoreError::NotFound(_) => {
                tracing::debug!(execution = %id, "invocation stopped: {e}");
            }
            e => tracing::error!(execution = %id, "invocation stopped: {e}"),
        }
        Next::Done
    }
}

/// Renews `lease` every third of its TTL; returns only when it is lost.
async fn renew_lease(
    store: &dyn Store,
    id: &ExecutionId,
    lease: &crate::execution::Lease,
    ttl: Duration,
) -> StoreError {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.renew_lease(id, lease, ttl).await {
            Ok(_) => {}
            Err(e) if e.is_retriable() => {
                tracing::warn!(execution = %id, "cannot renew lease yet: {e}");
            }
            Err(e) => return e,
        }
    }
}
