//! Waiting for an execution to reach a state: a request's `?wait`, the
//! library's `wait`. A waiter is woken by the changes this runtime makes
//! to its execution (an invocation's end, its emits, a signal to a parent:
//! a watch channel per waited execution, so a change wakes only that
//! execution's waiters, and each reads the store once; not an
//! invocation's start, which no state waited for depends on, unless it
//! wrote the step that spent the last budget; not the end of an
//! invocation that wrote nothing), by other hosts' invocations ending
//! (through the queue's pub/sub), and polls the store meanwhile, so a lost
//! message only costs latency. An invocation's end hands its waiters the
//! record it wrote, so they find an execution that finished here without
//! reading it back (on Redis, a round trip of every start that waits for
//! its result); a continuation's start hands them the record its acquire
//! read, and a waiter it does not satisfy waits on without reading (on
//! Redis, a round trip per invocation of a budgeted run someone waits
//! on).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Inner, Runtime, RuntimeError};
use crate::execution::ExecutionRecord;
use crate::ids::ExecutionId;

/// How often [`Runtime::wait_until`] re-reads the store, to see changes made
/// by other hosts.
pub const WAIT_POLL: Duration = Duration::from_millis(250);

/// The waiters of one execution: how many, and what wakes them, with the
/// record the change wrote when the runtime has it.
pub(super) struct Waited {
    count: usize,
    changes: watch::Sender<Written>,
}

/// What a change hands the waiters: the record as the store wrote it
/// ([`crate::store::Store::finish`]'s, or a continuation's acquire's), or
/// nothing (read the store). An ended record never changes, so a later
/// wake without a record (the driver wakes the waiters once more when it
/// lets the execution go) keeps it; any other is dropped by such a wake.
type Written = Option<Arc<ExecutionRecord>>;

/// Counts a waiter in [`Inner::waited`] while it lives.
pub(super) struct Waiting<'a> {
    inner: &'a Inner,
    id: String,
    /// Changes of this execution only: a waiter reads the store when its
    /// own execution changed, not whenever any did.
    changes: watch::Receiver<Written>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waited = self.inner.waited.lock().expect("waited poisoned");
        if let Some(w) = waited.get_mut(&self.id) {
            w.count -= 1;
            if w.count == 0 {
                waited.remove(&self.id);
            }
        }
    }
}

impl Inner {
    pub(super) fn waiting(&self, id: &ExecutionId) -> Waiting<'_> {
        let mut waited = self.waited.lock().expect("waited poisoned");
        let w = waited.entry(id.to_string()).or_insert_with(|| Waited {
            count: 0,
            changes: watch::channel(None).0,
        });
        w.count += 1;
        Waiting {
            inner: self,
            id: id.to_string(),
            changes: w.changes.subscribe(),
        }
    }

    /// With a queue, tells waiters on other hosts that `id` changed.
    pub(super) async fn publish_settled(&self, id: &ExecutionId) {
        if let Some(link) = self.queue.as_ref()
            && let Err(e) = link.queue.publish_settled(id).await
        {
            tracing::debug!(execution = %id, "cannot tell other hosts: {e}");
        }
    }

    /// `id` changed: wakes its waiters here, and whatever watches this
    /// runtime's work as a whole (a drain).
    pub(super) fn notify(&self, id: &ExecutionId) {
        self.notify_written(id, None);
    }

    /// [`Inner::notify`] with the record the change wrote, which its
    /// waiters take instead of reading the store.
    pub(super) fn notify_written(&self, id: &ExecutionId, written: Written) {
        self.wake_waiters(id.as_str(), written);
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Wakes the waiters of `id` here, if any.
    pub(super) fn notify_waiters(&self, id: &str) {
        self.wake_waiters(id, None);
    }

    fn wake_waiters(&self, id: &str, written: Written) {
        if let Some(w) = self.waited.lock().expect("waited poisoned").get(id) {
            w.changes.send_modify(|kept| match written {
                Some(written) => *kept = Some(written),
                None => {
                    if kept.as_ref().is_some_and(|rec| !rec.status.is_terminal()) {
                        *kept = None;
                    }
                }
            });
        }
    }
}

impl Runtime {
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
        self.wait_with(self.inner.waiting(id), id, done, true).await
    }

    /// [`Runtime::wait_until`] with its waiter registered already; without
    /// `read_first` it waits for a change before it reads the store (the
    /// caller knows `done` does not hold yet, and no change since the
    /// waiter was registered is missed: it finds them unseen).
    pub(super) async fn wait_with(
        &self,
        mut waiting: Waiting<'_>,
        id: &ExecutionId,
        done: impl Fn(&ExecutionRecord) -> bool,
        mut read_first: bool,
    ) -> Result<ExecutionRecord, RuntimeError> {
        let changes = &mut waiting.changes;
        let mut changed = false;
        loop {
            if read_first {
                // The record a change here wrote, if it handed one over and
                // it is what the caller waits for; else the store's. A
                // change that handed one over left nothing newer to read
                // (a change elsewhere shows at the next poll).
                let written = changes.borrow_and_update().clone();
                let current = match written {
                    Some(rec) if done(&rec) => return Ok(Arc::unwrap_or_clone(rec)),
                    Some(_) => changed,
                    None => false,
                };
                if !current {
                    match self.inner.store.get_execution(id).await {
                        Ok(rec) if done(&rec) => return Ok(rec),
                        Ok(_) => {}
                        Err(e) if e.is_retriable() => {
                            tracing::debug!(execution = %id, "waiting through a store error: {e}");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            read_first = true;
            // The sender lives as long as `self`, so `changed` cannot fail.
            changed = tokio::select! {
                _ = changes.changed() => true,
                _ = tokio::time::sleep(WAIT_POLL) => false,
            };
        }
    }
}
