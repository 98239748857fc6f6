//! The runtime's side of the work queue: reading messages, taking over the
//! messages of dead hosts, keeping this host's messages fresh, moving due
//! timers to the stream, and the sweep for executions the queue lost.
//!
//! The rule that keeps this correct: in queue mode every invocation runs
//! for a message that stays pending until the invocation has recorded how
//! it ended and whatever comes next is durable. So a live lease always has
//! a pending message behind it, and if its host dies that message is taken
//! over. A message that finds the execution leased by someone else on its
//! first delivery is therefore a duplicate and can be dropped; a message
//! taken over from a dead host waits for the lease to expire instead.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Inner, Runtime, RuntimeError, StartOptions};
use crate::execution::{ExecutionRecord, Status, Wait};
use crate::ids::ExecutionId;
use crate::queue::{Delivery, Entry, Message, QueueError, RedisQueue};
use crate::store::{ListQuery, Order, StoreError, now_ms};
use crate::stream::StreamOptions;
use crate::telemetry::TraceParent;

/// What a start message asks for besides the workflow and input.
struct QueuedStart {
    id: Option<ExecutionId>,
    stream: Option<StreamOptions>,
    trace: Option<TraceParent>,
}

/// Executions a sweep reads per page.
const SWEEP_PAGE: usize = 500;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Execution records it read (the candidates: suspended and running
    /// executions unchanged for `claim_after`).
    pub read: usize,
    /// Executions it queued (or whose timer it set again).
    pub queued: usize,
}

/// Longest pause between attempts after the queue failed.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(5);

/// Most messages read, taken over or timers fired in one command.
const BATCH: usize = 64;

/// What a host is working on.
#[derive(Default)]
struct Working {
    /// Entries accepted and not yet done.
    entries: HashSet<Entry>,
    /// Messages reads under way may return.
    reserved: usize,
}

/// A runtime's connection to its work queue.
pub(super) struct QueueLink {
    pub(super) queue: Arc<RedisQueue>,
    /// This host's consumer name in the group (its host id).
    consumer: String,
    /// Entries this host is working on (refreshed so no host takes them),
    /// and room set aside for reads under way.
    working: Mutex<Working>,
    /// Entries that were taken over from another host (see the module docs).
    taken_over: Mutex<HashSet<Entry>>,
    /// Wakes the timer loop when this host sets a timer.
    timer_set: Notify,
    metrics: Arc<crate::metrics::Metrics>,
}

impl QueueLink {
    /// Sets a timer and tells this host's timer loop.
    pub(super) async fn add_timer(&self, id: &ExecutionId, at_ms: u64) -> Result<(), QueueError> {
        self.queue.add_timer(id, at_ms).await?;
        self.timer_set.notify_one();
        Ok(())
    }

    /// Whether any of `entries` was taken over from another host.
    pub(super) fn any_taken_over(&self, entries: &[Entry]) -> bool {
        let taken = self.taken_over.lock().expect("taken_over poisoned");
        entries.iter().any(|e| taken.contains(e))
    }

    fn forget(&self, entries: &[Entry]) {
        let mut working = self.working.lock().expect("working poisoned");
        let mut taken = self.taken_over.lock().expect("taken_over poisoned");
        for e in entries {
            working.entries.remove(e);
            taken.remove(e);
        }
    }

    /// Sets aside room for one read: up to a share of `concurrency` (fewer
    /// if this host has less room left). Give it back with
    /// [`QueueLink::release`] once what was read is accepted.
    ///
    /// The partitions' readers take from the same room, so together they
    /// never hold more than `concurrency` messages; each takes at most
    /// `concurrency / (partitions + 1)` at once, so readers blocked on
    /// idle partitions leave room for a busy one. The take-over (`for_take_over`)
    /// looks only at the messages being worked on: a host that stopped
    /// must not wait for this one's readers to time out, and the messages
    /// it takes over are few.
    fn reserve(&self, for_take_over: bool) -> usize {
        let options = self.queue.options();
        let share = options
            .concurrency
            .div_ceil(self.queue.partitions() + 1)
            .min(BATCH);
        let mut working = self.working.lock().expect("working poisoned");
        let mut used = working.entries.len();
        if !for_take_over {
            used += working.reserved;
        }
        let n = options.concurrency.saturating_sub(used).min(share);
        working.reserved += n;
        n
    }

    fn release(&self, n: usize) {
        self.working.lock().expect("working poisoned").reserved -= n;
    }

    /// The work for `entries` is done: acknowledge them. If that fails they
    /// are taken over later and their execution replayed, which is safe.
    pub(super) async fn done(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=3 {
            match self.queue.ack(entries).await {
                Ok(()) => {
                    self.metrics
                        .queue_message("acknowledged", entries.len() as u64);
                    break;
                }
                Err(e) if attempt == 3 => {
                    tracing::warn!(
                        ?entries,
                        "cannot acknowledge; another host will redo them: {e}"
                    )
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        self.forget(entries);
    }

    /// The host is draining: queue a fresh resume for another host, then
    /// let go of `entries`.
    pub(super) async fn hand_off(&self, id: &ExecutionId, entries: Vec<Entry>) {
        match self.queue.enqueue(&Message::Resume(id.clone())).await {
            Ok(_) => self.done(&entries).await,
            Err(e) => {
                tracing::warn!(execution = %id, "cannot hand off; another host takes it over later: {e}");
                self.forget(&entries);
            }
        }
    }

    async fn dead_letter(&self, d: &Delivery, reason: &str) {
        tracing::warn!(entry = %d.entry, deliveries = d.deliveries, "dead letter: {reason}");
        match self.queue.dead_letter(d, reason).await {
            Ok(()) => self.metrics.queue_message("dead_lettered", 1),
            Err(e) => {
                tracing::warn!(entry = %d.entry, "cannot move to the dead-letter stream yet: {e}")
            }
        }
        self.forget(std::slice::from_ref(&d.entry));
    }
}

impl QueueLink {
    /// This host's link to `queue`, as consumer `consumer` (its host id).
    pub(super) fn new(
        queue: RedisQueue,
        consumer: String,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            queue: Arc::new(queue),
            consumer,
            working: Mutex::new(Working::default()),
            taken_over: Mutex::new(HashSet::new()),
            timer_set: Notify::new(),
            metrics,
        }
    }
}

impl Inner {
    /// Starts the queue's loops: read (one per partition), take over,
    /// refresh, fire timers, sweep, hear other hosts' invocations end.
    pub(super) fn start_queue_loops(self: &Arc<Self>) {
        for p in 0..self.link().queue.partitions() {
            let me = self.clone();
            self.spawn(async move { me.consume(p).await });
        }
        let me = self.clone();
        self.spawn(async move { me.take_over().await });
        let me = self.clone();
        self.spawn(async move { me.refresh().await });
        let me = self.clone();
        self.spawn(async move { me.fire_timers().await });
        let me = self.clone();
        self.spawn(async move { me.sweep_periodically().await });
        let me = self.clone();
        self.spawn(async move { me.hear_settled().await });
    }
}

impl Runtime {
    /// The attached work queue.
    pub fn queue(&self) -> Option<&Arc<RedisQueue>> {
        self.inner.queue.as_ref().map(|l| &l.queue)
    }
}

impl Inner {
    fn link(&self) -> &QueueLink {
        self.queue
            .as_ref()
            .expect("queue loops run only with a queue")
    }

    fn stopping(&self) -> bool {
        self.draining.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst)
    }

    /// Reads new messages of partition `p` while there is room.
    async fn consume(self: Arc<Self>, p: usize) {
        let mut delay = self.config.retry_delay;
        let link = self.link();
        while !self.stopping() {
            let room = link.reserve(false);
            if room == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let read = link.queue.read(p, &link.consumer, room).await;
            match read {
                Ok(deliveries) => {
                    delay = self.config.retry_delay;
                    for d in deliveries {
                        self.accept(d, false).await;
                    }
                    link.release(room);
                }
                Err(e) => {
                    link.release(room);
                    tracing::warn!(partition = p, "cannot read the queue, will retry: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_QUEUE_DELAY);
                }
            }
        }
    }

    /// Takes over messages whose hosts stopped refreshing them, in every
    /// partition.
    async fn take_over(self: Arc<Self>) {
        let link = self.link();
        let every = (link.queue.options().claim_after / 2).max(Duration::from_millis(20));
        while !self.stopping() {
            tokio::time::sleep(every).await;
            for p in 0..link.queue.partitions() {
                let room = link.reserve(true);
                if room == 0 || self.stopping() {
                    link.release(room);
                    break;
                }
                match link.queue.reclaim(p, &link.consumer, room).await {
                    Ok(deliveries) => {
                        for d in deliveries {
                            tracing::info!(entry = %d.entry, deliveries = d.deliveries, "took over a message of a host that stopped");
                            self.metrics.queue_message("taken_over", 1);
                            self.accept(d, true).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, "cannot look for abandoned messages: {e}")
                    }
                }
                link.release(room);
            }
        }
    }

    /// Keeps this host's messages from being taken over while it works.
    async fn refresh(self: Arc<Self>) {
        let every = (self.link().queue.options().claim_after / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            let link = self.link();
            let entries: Vec<Entry> = link
                .working
                .lock()
                .expect("working poisoned")
                .entries
                .iter()
                .cloned()
                .collect();
            if let Err(e) = link.queue.refresh(&link.consumer, &entries).await {
                tracing::warn!("cannot refresh this host's messages: {e}");
            }
        }
    }

    /// Wakes local waiters when another host says an invocation of an
    /// execution they wait on ended. Resubscribes after a connection loss
    /// (waiters poll meanwhile).
    async fn hear_settled(self: Arc<Self>) {
        use futures_util::StreamExt;
        loop {
            match self.link().queue.subscribe_settled().await {
                Ok(mut pubsub) => {
                    let mut messages = pubsub.on_message();
                    while let Some(m) = messages.next().await {
                        let Ok(id) = m.get_payload::<String>() else {
                            continue;
                        };
                        self.notify_waiters(&id);
                    }
                }
                Err(e) => tracing::debug!("cannot subscribe to ended invocations yet: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Moves due timers to the streams, sleeping until the next one is due
    /// (at most `timer_poll`, since other hosts add timers too).
    async fn fire_timers(self: Arc<Self>) {
        let link = self.link();
        let poll = link.queue.options().timer_poll;
        while !self.stopping() {
            let mut wait = poll;
            for p in 0..link.queue.partitions() {
                wait = wait.min(match link.queue.fire_timers(p, BATCH).await {
                    Ok((fired, next)) => {
                        self.metrics.timers_fired.inc_by(fired);
                        if fired as usize >= BATCH {
                            Duration::ZERO
                        } else {
                            next.unwrap_or(poll)
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, "cannot fire timers, will retry: {e}");
                        poll
                    }
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = link.timer_set.notified() => {}
            }
        }
    }

    async fn sweep_periodically(self: Arc<Self>) {
        let every = self.link().queue.options().claim_after * 4;
        while !self.stopping() {
            tokio::time::sleep(every).await;
            // One host of the cluster sweeps per period: the scan reads
            // every suspended and running execution.
            let link = self.link();
            match link.queue.take_sweep_turn(&link.consumer, every).await {
                Ok(true) => match self.sweep().await {
                    Ok(Swept { queued: 0, read }) => {
                        tracing::debug!(read, "swept: every execution has a message")
                    }
                    Ok(Swept { queued, read }) => {
                        tracing::info!(queued, read, "queued executions that had no message")
                    }
                    Err(e) => tracing::warn!("cannot sweep for executions without a message: {e}"),
                },
                Ok(false) => tracing::debug!("another host sweeps this period"),
                Err(e) => tracing::warn!("cannot take the sweep's turn: {e}"),
            }
            // Consumers of hosts that stopped, with nothing left pending.
            match self.link().queue.prune_consumers(every * 3).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(n, "removed consumers of stopped hosts"),
                Err(e) => tracing::warn!("cannot prune consumers: {e}"),
            }
        }
    }

    /// Queues executions that can run but seem to have no message or timer
    /// (a host died between recording and queueing): ready or with an
    /// expired lease, unchanged for `claim_after`. A duplicate costs a
    /// replay, never a second effect.
    ///
    /// It reads, through the store's index, only suspended and running
    /// executions whose status last changed before then, oldest first, a
    /// page at a time: finished executions cost it nothing.
    pub(super) async fn sweep(self: &Arc<Self>) -> Result<Swept, RuntimeError> {
        let link = self.link();
        let stale = now_ms().saturating_sub(link.queue.options().claim_after.as_millis() as u64);
        let mut swept = Swept::default();
        for status in [Status::Suspended, Status::Running] {
            let mut query = ListQuery {
                status: Some(status),
                changed_before_ms: Some(stale),
                order: Order::OldestFirst,
                limit: SWEEP_PAGE,
                ..ListQuery::default()
            };
            loop {
                let page = self.store.list_page(&query).await?;
                swept.read += page.read;
                for rec in &page.executions {
                    if self.rescue(rec, stale).await? {
                        swept.queued += 1;
                    }
                }
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
        }
        Ok(swept)
    }

    /// Queues `rec` if it can run but seems to have no message or timer;
    /// returns whether it did.
    async fn rescue(&self, rec: &ExecutionRecord, stale: u64) -> Result<bool, RuntimeError> {
        if rec.updated_at_ms >= stale {
            return Ok(false);
        }
        let link = self.link();
        if rec.status == Status::Running {
            let expired = rec.lease.as_ref().is_none_or(|l| l.expires_at_ms < stale);
            if expired {
                link.queue.enqueue(&Message::Resume(rec.id.clone())).await?;
            }
            return Ok(expired);
        }
        match rec.wait {
            Some(Wait::Ready) => {
                link.queue.enqueue(&Message::Resume(rec.id.clone())).await?;
            }
            // A timer is set before its execution suspends, so only one
            // set by a host without the queue can be missing; one long
            // overdue is re-added (NX: a pending one is left alone).
            Some(
                Wait::Timer { wake_at_ms }
                | Wait::Consumers {
                    wake_at_ms: Some(wake_at_ms),
                    ..
                }
                | Wait::Any {
                    wake_at_ms: Some(wake_at_ms),
                    ..
                },
            ) if wake_at_ms < stale => {
                link.queue.add_timer_if_missing(&rec.id, wake_at_ms).await?;
                link.timer_set.notify_one();
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Starts work on one delivery.
    async fn accept(self: &Arc<Self>, d: Delivery, taken_over: bool) {
        let link = self.link();
        if taken_over && d.message.is_ok() && self.stalled_too_often(&d).await {
            return;
        }
        let message = match &d.message {
            Ok(m) => m.clone(),
            Err(reason) => return link.dead_letter(&d, &reason.to_string()).await,
        };
        link.working
            .lock()
            .expect("working poisoned")
            .entries
            .insert(d.entry.clone());
        if taken_over {
            link.taken_over
                .lock()
                .expect("taken_over poisoned")
                .insert(d.entry.clone());
        }
        let me = self.clone();
        match message {
            Message::Resume(id) => self.spawn(async move { me.drive(id, Some(d.entry)).await }),
            Message::Start {
                workflow,
                input,
                id,
                stream,
                traceparent,
            } => self.spawn(async move {
                let start = QueuedStart {
                    id,
                    stream,
                    trace: traceparent.as_deref().and_then(TraceParent::parse),
                };
                me.start_from_queue(d, taken_over, &workflow, &input, start)
                    .await
            }),
        }
    }

    /// A taken-over message: dead-letters it (and says so) if its
    /// execution made no progress over `max_deliveries` deliveries in a row.
    /// When the store cannot tell, the message runs: the limit is for
    /// messages that stop every host, and an outage is not that.
    async fn stalled_too_often(self: &Arc<Self>, d: &Delivery) -> bool {
        let link = self.link();
        let Some(id) = d.execution_id() else {
            return false;
        };
        let record = match self.store.get_execution(&id).await {
            Ok(r) => Some(r),
            Err(StoreError::NotFound(_)) => None,
            Err(_) => return false,
        };
        let journal_len = record.as_ref().map_or(0, |r| r.journal_len);
        let Ok(stalled) = link.queue.stalled(d, journal_len).await else {
            return false;
        };
        let max = link.queue.options().max_deliveries;
        if stalled < max {
            return false;
        }
        let reason = format!(
            "delivered {} times, the last {stalled} without progress (max_deliveries = {max}): \
             each host that took it stopped before its execution recorded a step",
            d.deliveries
        );
        if record.is_some_and(|r| !r.status.is_terminal()) {
            tracing::error!(
                execution = %id,
                entry = %d.entry,
                "a message of an execution that can still run went to the dead letters: {reason}; \
                 the sweep queues the execution again"
            );
        }
        link.dead_letter(d, &reason).await;
        true
    }

    async fn start_from_queue(
        self: Arc<Self>,
        d: Delivery,
        taken_over: bool,
        workflow: &str,
        input: &str,
        start: QueuedStart,
    ) {
        let QueuedStart { id, stream, trace } = start;
        let link = self.link();
        let stream = match stream
            .map(|o| crate::stream::policy(&o, &self.config.stream))
            .transpose()
        {
            Ok(policy) => policy,
            Err(e) => return link.dead_letter(&d, &e.to_string()).await,
        };
        let input = match serde_json::from_str::<serde_json::Value>(input) {
            Ok(v) => match rmp_serde::to_vec_named(&v) {
                Ok(bytes) => bytes,
                Err(e) => return link.dead_letter(&d, &format!("input: {e}")).await,
            },
            Err(e) => {
                return link
                    .dead_letter(&d, &format!("`input` is not valid JSON: {e}"))
                    .await;
            }
        };
        let id = id.or_else(|| d.execution_id());
        let mut delay = self.config.retry_delay;
        loop {
            // This host runs what it creates: created leased, when a slot
            // is free now (see `Inner::create`).
            let slot = self.engine.try_slot();
            match self
                .create(
                    workflow,
                    input.clone(),
                    StartOptions {
                        id: id.clone(),
                        stream,
                        trace: trace.clone(),
                    },
                    slot,
                )
                .await
            {
                // Taken over: the host that created it may have died
                // running it, with this very message behind it.
                Ok((id, _, Some(taken))) => {
                    return self.drive_taken(id, Some(d.entry), taken).await;
                }
                Ok((id, runnable, None)) if runnable || taken_over => {
                    return self.drive(id, Some(d.entry)).await;
                }
                Ok(_) => return link.done(&[d.entry]).await,
                Err(RuntimeError::Store(e)) if e.is_retriable() => {
                    if self.stopping() {
                        // Left pending: another host takes it over.
                        return link.forget(&[d.entry]);
                    }
                    tracing::warn!(entry = %d.entry, "cannot start yet, will retry: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_QUEUE_DELAY);
                }
                Err(e) => return link.dead_letter(&d, &e.to_string()).await,
            }
        }
    }
}
