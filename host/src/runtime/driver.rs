//! The driver: each runnable execution is driven by one task that takes
//! the lease, loads the snapshot in one store read, runs an invocation,
//! records how it ended and decides what comes next (again at once, at a
//! due time, when a signal comes, after a backoff; see `after`), in
//! process or through the work queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::KeyValue;
use tracing::Instrument as _;

use super::after::renew_lease;
use super::*;
use crate::execution::{ChildEnd, Lease, ParentLink, Snapshot};

/// How an invocation ended, for its span.
fn end_label(end: &End) -> &'static str {
    match end {
        End::Finished(Outcome::Completed(_)) => "completed",
        End::Finished(Outcome::Failed(_)) => "failed",
        End::Finished(Outcome::Cancelled) => "cancelled",
        End::Suspend { .. } | End::Spent { .. } => "suspended",
        End::Store(_) => "store-error",
        End::Busy(_) => "busy",
    }
}

/// Longest delay between retries after store errors.
pub(super) const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// An execution a driver task is working on.
#[derive(Default)]
pub(super) struct Active {
    /// Run once more after the current invocation (something happened
    /// while it ran).
    again: bool,
    /// Queue entries to acknowledge once the driver is done.
    entries: Vec<crate::queue::Entry>,
}

/// What an invocation starts from: a pooled instance's slot, the lease,
/// and the snapshot loaded under it (or, for an execution created leased,
/// the record as created).
pub(super) struct Taken {
    slot: tokio::sync::OwnedSemaphorePermit,
    lease: Lease,
    snapshot: Snapshot,
    /// The driver registered for a new execution (see [`Inner::create`]).
    claim: Option<Claim>,
}

/// A driver registered by [`Inner::create`] for an execution it creates
/// leased. Dropped before a driver runs from it (a start cancelled while
/// its record was being written), it drives the execution from the store:
/// run if it was created (this host takes its own lease over), gone at
/// once if not. The claim so never outlives its start unattended.
pub(super) struct Claim {
    /// None once kept or withdrawn.
    inner: Option<Arc<Inner>>,
    id: ExecutionId,
}

impl Claim {
    /// The claim is the driver's now (see [`Inner::drive_taken`]).
    fn keep(mut self) {
        self.inner = None;
    }

    /// No execution was created (one existed, or the store refused):
    /// the registration goes, unless something asked for the id meanwhile,
    /// which the driver then started on drop answers.
    fn withdraw(mut self) {
        if let Some(inner) = &self.inner {
            let mut active = inner.active.lock().expect("active poisoned");
            if !active.get(&self.id).is_some_and(|a| a.again) {
                active.remove(&self.id);
                drop(active);
                self.inner = None;
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let (me, id) = (inner.clone(), self.id.clone());
            inner.spawn(async move { me.drive_entered(id, None).await });
        }
    }
}

/// What the driver does after an invocation.
pub(super) enum Next {
    Again,
    /// Again, still holding a lease (see [`Inner::after`]): the next
    /// acquire is this host's own, and a drain lets it go.
    Continue(Held),
    Retry,
    /// Another host holds the lease, until about this long from now.
    Held(Duration),
    Done,
}

/// A lease an invocation that ran out of budget kept for its
/// continuation, and the entry of the step that spent the budget if it is
/// not written yet ([`End::Spent`]): its index and the entry.
pub(super) struct Held {
    pub(super) lease: Lease,
    pub(super) spent: Option<(u64, Box<Entry>)>,
    /// The journal before the spent entry, if the invocation kept it: the
    /// continuation starts from it and loads none of it again.
    pub(super) journal: Option<Vec<Entry>>,
    /// The invocation wrote nothing to the store: no waiter is woken.
    pub(super) quiet: bool,
}

impl Next {
    /// A continuation whose invocation changed nothing in the store.
    pub(super) fn is_quiet(&self) -> bool {
        matches!(self, Next::Continue(Held { quiet: true, .. }))
    }
}

impl Inner {
    pub(super) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut tasks = self.tasks.lock().expect("tasks poisoned");
        while tasks.try_join_next().is_some() {}
        // Boxed: a driver's future is several KiB, and the task would
        // otherwise copy it whole as it is spawned, polled and finished.
        tasks.spawn(Box::pin(fut));
    }

    /// Creates an execution unless one with that id exists. Returns its id
    /// and whether it needs to be run (it is new, or an earlier start left
    /// it ready and not running).
    ///
    /// With a `slot` (a start that will run here), the record is created
    /// leased to this host, as its first acquire would leave it (see
    /// [`ExecutionRecord::take_lease`]): a new execution then comes back
    /// [`Taken`], ready for its first invocation without another store
    /// write, with its driver registered already (run it with
    /// [`Inner::drive_taken`]). Registered before the record exists, so a
    /// wake-up of the new id (a resume racing the start) joins that driver
    /// rather than running an invocation beside it.
    pub(super) async fn create(
        self: &Arc<Self>,
        workflow: &str,
        input: Vec<u8>,
        options: StartOptions,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<(ExecutionId, bool, Option<Taken>), RuntimeError> {
        let digest = self
            .store
            .get_deployment(workflow)
            .await?
            .ok_or_else(|| RuntimeError::UnknownWorkflow(workflow.to_string()))?;
        let id = options.id.unwrap_or_else(ExecutionId::generate);
        let mut record =
            ExecutionRecord::new(id.clone(), workflow.to_string(), digest, input, now_ms());
        record.stream = options.stream;
        record.trace = self
            .telemetry
            .start(options.trace.as_ref(), workflow, id.as_str());
        let mut claimed = slot.and_then(|slot| Some((slot, self.claim(&id)?)));
        let lease = claimed
            .is_some()
            .then(|| record.take_lease(&self.config.host_id, self.config.lease_ttl, now_ms()));
        let created = self.store.create_execution(&record).await;
        if !matches!(created, Ok(Created::New))
            && let Some((_, claim)) = claimed.take()
        {
            claim.withdraw();
        }
        match created? {
            Created::New => {
                let taken = claimed.zip(lease).map(|((slot, claim), lease)| Taken {
                    slot,
                    lease,
                    snapshot: Snapshot {
                        record,
                        journal: Vec::new(),
                        signals: Vec::new(),
                    },
                    claim: Some(claim),
                });
                Ok((id, true, taken))
            }
            Created::Existing(existing) => {
                if existing.digest != record.digest
                    || existing.input != record.input
                    || existing.stream != record.stream
                {
                    return Err(RuntimeError::IdConflict(id));
                }
                let runnable = !existing.status.is_terminal() && existing.status != Status::Running;
                Ok((id, runnable, None))
            }
        }
    }

    /// The execution can run now: drive it here, or queue a resume for any
    /// host.
    pub(super) async fn wake(self: &Arc<Self>, id: &ExecutionId) -> Result<(), RuntimeError> {
        match self.queue.as_ref() {
            Some(link) => {
                link.queue.enqueue(&Message::Resume(id.clone())).await?;
            }
            None => self.schedule(id.clone()),
        }
        Ok(())
    }

    /// The execution can run at `at_ms`: sleep here, or set its timer in the
    /// queue's timer set.
    pub(super) async fn wake_at(
        self: &Arc<Self>,
        id: &ExecutionId,
        at_ms: u64,
    ) -> Result<(), RuntimeError> {
        match self.queue.as_ref() {
            Some(link) => link.add_timer(id, at_ms).await?,
            None => self.schedule_at(id.clone(), at_ms),
        }
        Ok(())
    }

    pub(super) fn schedule(self: &Arc<Self>, id: ExecutionId) {
        let me = self.clone();
        self.spawn(async move { me.drive(id, None).await });
    }

    /// Drives a new execution from its [`Taken`] first invocation (see
    /// [`Inner::create`]).
    pub(super) fn schedule_taken(self: &Arc<Self>, id: ExecutionId, taken: Taken) {
        let me = self.clone();
        self.spawn(async move { me.drive_taken(id, None, taken).await });
    }

    /// Drives a new execution from its [`Taken`] first invocation, its
    /// driver registered by [`Inner::create`]; `entry` as for `drive`.
    pub(super) async fn drive_taken(
        self: Arc<Self>,
        id: ExecutionId,
        entry: Option<crate::queue::Entry>,
        mut taken: Taken,
    ) {
        if let Some(claim) = taken.claim.take() {
            claim.keep();
        }
        if let Some(a) = self.active.lock().expect("active poisoned").get_mut(&id) {
            a.entries.extend(entry);
        }
        self.drive_entered(id, Some(taken)).await;
    }

    pub(super) fn schedule_at(self: &Arc<Self>, id: ExecutionId, at_ms: u64) {
        let me = self.clone();
        self.spawn(async move {
            tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
            me.drive(id, None).await
        });
    }

    /// Registers a driver for `id` ahead of creating it; none when one is
    /// registered already.
    fn claim(self: &Arc<Self>, id: &ExecutionId) -> Option<Claim> {
        let mut active = self.active.lock().expect("active poisoned");
        if active.contains_key(id) {
            return None;
        }
        active.insert(id.clone(), Active::default());
        Some(Claim {
            inner: Some(self.clone()),
            id: id.clone(),
        })
    }

    /// Drives one execution until it ends or waits; one driver per execution
    /// per runtime. `entry` is the queue message that asked for it, which is
    /// acknowledged when the driver is done.
    pub(super) async fn drive(
        self: Arc<Self>,
        id: ExecutionId,
        entry: Option<crate::queue::Entry>,
    ) {
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
        self.drive_entered(id, None).await;
    }

    /// The driver's loop, registered in `active`; `first`, what its first
    /// invocation starts from when that is taken already.
    async fn drive_entered(self: Arc<Self>, id: ExecutionId, mut first: Option<Taken>) {
        let mut delay = self.config.retry_delay;
        let mut held = None;
        loop {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let mut next = match first.take() {
                Some(taken) => self.invoke_taken(&id, taken).await,
                None => self.invoke_once(&id, held.take()).await,
            };
            if self.draining.load(Ordering::SeqCst) && !matches!(next, Next::Done) {
                if let Next::Continue(held) = &next {
                    self.let_go(&id, held).await;
                }
                // Leave it runnable in the store for the next process, or
                // hand it to another host through the queue (still counted
                // in flight, so the drain waits for the hand-off).
                let active = self.active.lock().expect("active poisoned").remove(&id);
                if let Some(link) = self.queue.as_ref() {
                    link.hand_off(&id, active.map(|a| a.entries).unwrap_or_default())
                        .await;
                }
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.notify(&id);
                return;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !next.is_quiet() {
                self.notify(&id);
            }
            if let (Next::Held(_), Some(link)) = (&next, self.queue.as_ref()) {
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
            if let (Next::Again, Some(link)) = (&next, self.queue.as_ref()) {
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
                Next::Continue(kept) => {
                    held = Some(kept);
                    delay = self.config.retry_delay;
                }
                Next::Retry => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Next::Held(d) => tokio::time::sleep(d).await,
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
                    if let Some(link) = self.queue.as_ref() {
                        link.done(&entries).await;
                    }
                    return;
                }
            }
        }
    }

    /// Runs one invocation; `held`, what a continuation kept.
    pub(super) async fn invoke_once(
        self: &Arc<Self>,
        id: &ExecutionId,
        held: Option<Held>,
    ) -> Next {
        if self.draining.load(Ordering::SeqCst) {
            // Not done: left runnable for another host (see `drive`).
            if let Some(held) = &held {
                self.let_go(id, held).await;
            }
            return Next::Retry;
        }
        // A slot first, then the lease: waiting for a slot holds nothing
        // another host could use, and costs no store round trips.
        let slot = self.engine.slot().await;
        let (lease, snapshot) = match self.take(id, held).await {
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
        self.invoke_taken(
            id,
            Taken {
                slot,
                lease,
                snapshot,
                claim: None,
            },
        )
        .await
    }

    /// The lease and snapshot an invocation starts from: a continuation
    /// that kept its lease writes the step that spent its budget in the
    /// same round trip (and durable write) as the acquire.
    async fn take(
        &self,
        id: &ExecutionId,
        held: Option<Held>,
    ) -> Result<(Lease, Snapshot), StoreError> {
        let cfg = &self.config;
        match held.and_then(|held| Some((held.lease, held.spent?, held.journal))) {
            // Boxed: inline, its state (a snapshot held across a write)
            // made every driver's future larger, which each execution
            // copies as it is scheduled.
            Some((lease, (index, entry), journal)) => {
                Box::pin(self.continuation(id, &lease, index, *entry, journal)).await
            }
            None => {
                self.store
                    .acquire_and_load(id, &cfg.host_id, cfg.lease_ttl)
                    .await
            }
        }
    }

    /// A continuation's lease and snapshot, with the entry of the step that
    /// spent the last budget written at `index` under the kept `lease`, in
    /// the same store operation as the acquire. With the `journal` before
    /// that entry, only what follows the entry is loaded (nothing, as the
    /// lease was held throughout). The waiters get the record as the
    /// acquire read it: the step is in the journal now.
    async fn continuation(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        index: u64,
        entry: Entry,
        journal: Option<Vec<Entry>>,
    ) -> Result<(Lease, Snapshot), StoreError> {
        let cfg = &self.config;
        let spent = std::slice::from_ref(&entry);
        let from = match &journal {
            Some(_) => index + 1,
            None => 0,
        };
        let taken = match (self.store)
            .append_and_acquire(id, lease, index, spent, &cfg.host_id, cfg.lease_ttl, from)
            .await
        {
            Ok((lease, mut snapshot)) => {
                if let Some(mut journal) = journal {
                    journal.push(entry);
                    journal.append(&mut snapshot.journal);
                    snapshot.journal = journal;
                }
                Ok((lease, snapshot))
            }
            // The kept lease lapsed (a long wait for a slot): taken again as
            // any host would take it, the step is written under the new
            // one if the journal is still where it was.
            Err(StoreError::LeaseLost(_)) => {
                let (lease, mut snapshot) = (self.store)
                    .acquire_and_load(id, &cfg.host_id, cfg.lease_ttl)
                    .await?;
                if snapshot.record.journal_len == index {
                    self.store.append(id, &lease, index, &entry).await?;
                    snapshot.record.journal_len += 1;
                    snapshot.journal.push(entry);
                }
                Ok((lease, snapshot))
            }
            taken => taken,
        }?;
        self.notify_written(id, Some(Arc::new(taken.1.record.clone())));
        Ok(taken)
    }

    /// Runs one invocation from its slot, lease and snapshot.
    async fn invoke_taken(self: &Arc<Self>, id: &ExecutionId, taken: Taken) -> Next {
        let cfg = &self.config;
        let Taken {
            slot: _slot,
            lease,
            snapshot,
            claim: _,
        } = taken;
        self.invocations.fetch_add(1, Ordering::SeqCst);
        self.metrics.invocations.inc();
        // No waiter is told that an invocation starts: every state one
        // waits for (an end, a signal wait, a longer journal) comes from
        // the invocation's writes, which tell them, and each wake-up costs
        // each waiter a store read.

        let parent = snapshot.record.parent.clone();
        let compiled = match self.component(&snapshot.record.digest).await {
            Ok(Ok(c)) => c,
            Err(e) => return self.after_store_error(id, &lease, e).await,
            Ok(Err(failure)) => {
                let outcome = Outcome::Failed(failure);
                if let Some(parent) = &parent
                    && let Err(e) = self.report_to_parent(parent, &outcome).await
                {
                    return self.after_store_error(id, &lease, e).await;
                }
                return self.after(id, &lease, End::Finished(outcome), true).await;
            }
        };

        // Traced: the invocation's span (when exported), and its log lines
        // carry the trace id either way.
        let trace_id = snapshot
            .record
            .trace
            .as_ref()
            .map(|t| t.trace_id().to_string());
        let trace = snapshot.record.trace.as_ref().and_then(|tp| {
            self.telemetry.invocation(
                tp,
                vec![
                    KeyValue::new("reprise.execution.id", id.to_string()),
                    KeyValue::new("reprise.workflow", snapshot.record.workflow.clone()),
                    KeyValue::new("reprise.invocation", snapshot.record.invocations as i64),
                    KeyValue::new("reprise.host", cfg.host_id.clone()),
                    KeyValue::new("reprise.journal.entries", snapshot.journal.len() as i64),
                ],
            )
        });
        let log_span = match &trace_id {
            Some(trace_id) => {
                tracing::info_span!("invocation", execution = %id, trace_id = %trace_id)
            }
            None => tracing::Span::none(),
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
                let (me, id) = (Arc::downgrade(self), id.clone());
                Arc::new(move || {
                    if let Some(me) = me.upgrade() {
                        me.notify(&id);
                    }
                })
            },
            stream: cfg.stream.clone(),
            reads,
            calls: self.calls.clone(),
            retrying: self.retrying.clone(),
            sandbox: false,
            // Kept where the continuation of a spent budget runs here
            // (`Inner::after`): without a queue, and with a budget a step
            // can spend (with none, the check before the step ends it).
            keep_journal: self.queue.is_none()
                && (cfg.budget.max_steps.is_some_and(|max| max > 0)
                    || cfg.budget.max_time.is_some()),
            trace,
            start_child: {
                let me = Arc::downgrade(self);
                Arc::new(move |child: ExecutionId| {
                    if let Some(me) = me.upgrade() {
                        let inner = me.clone();
                        me.spawn(async move {
                            if let Err(e) = inner.wake(&child).await {
                                // Left ready in the store: the queue's sweep
                                // or the next recovery runs it.
                                tracing::warn!(execution = %child, "cannot run the new child yet: {e}");
                            }
                        });
                    }
                })
            },
        };
        self.live_instances.fetch_add(1, Ordering::SeqCst);
        self.metrics.live_instances.inc();
        // Whether the invocation wrote entries (the one that spent the
        // budget is written by the next start).
        let mut wrote = true;
        let end = tokio::select! {
            report = invocation::run(&self.engine, &compiled, invocation).instrument(log_span) => {
                let unwritten = u32::from(matches!(report.end, End::Spent { .. }));
                wrote = report.new_steps > unwritten;
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
                if let Some(span) = report.trace {
                    span.end(end_label(&report.end));
                }
                report.end
            }
            lost = renew_lease(self.store.as_ref(), id, &lease, cfg.lease_ttl) => End::Store(lost),
        };
        self.live_instances.fetch_sub(1, Ordering::SeqCst);
        self.metrics.live_instances.dec();
        self.reads.lock().expect("reads poisoned").remove(id);
        if let (End::Finished(outcome), Some(parent)) = (&end, &parent)
            && let Err(e) = self.report_to_parent(parent, outcome).await
        {
            return self.after_store_error(id, &lease, e).await;
        }
        self.after(id, &lease, end, wrote).await
    }

    /// Tells a child's parent how the child ended: a signal only the host
    /// sends, delivered *before* the child's end is recorded, so a crash in
    /// between makes the child replay and tell again (the parent takes the
    /// first), never leaves the parent waiting. Wakes the parent if it
    /// waits for it.
    pub(super) async fn report_to_parent(
        self: &Arc<Self>,
        parent: &ParentLink,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        let payload = crate::persist::encode(&ChildEnd::of(outcome));
        match self
            .store
            .signal(&parent.id, &parent.signal_name(), &payload)
            .await
        {
            Ok(delivered) => {
                if delivered.woke
                    && let Err(e) = self.wake(&parent.id).await
                {
                    tracing::warn!(execution = %parent.id, "a child ended, but cannot queue its parent: {e}");
                }
                self.notify(&parent.id);
                Ok(())
            }
            // The parent ended (cancelled, failed) or is gone: nobody waits.
            Err(StoreError::Terminal { .. } | StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// After an execution was cancelled: wake whoever waits on it, and tell
    /// its parent.
    pub(super) async fn after_cancel(self: &Arc<Self>, rec: &ExecutionRecord) {
        self.notify(&rec.id);
        self.publish_settled(&rec.id).await;
        if let Some(parent) = &rec.parent
            && let Err(e) = self.report_to_parent(parent, &Outcome::Cancelled).await
        {
            tracing::warn!(execution = %rec.id, "cancelled, but cannot tell its parent yet: {e}");
        }
    }

    /// The compiled component for `digest`: from the engine's cache, or from
    /// the store and compiled. `Ok(Err(_))` is a failure of the execution.
    pub(super) async fn component(
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
        let invalid =
            |message: String| Ok(Err(Failure::new(FailureKind::InvalidComponent, message)));
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
}
