//! After an invocation: record how it ended (finished, suspended, a store
//! error) and say what the driver does next; and the lease's renewal while
//! an invocation runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::driver::{Held, Next};
use super::*;
use crate::execution::Lease;

impl Inner {
    /// Records how an invocation ended and says what the driver does next.
    /// `wrote`: whether the invocation wrote anything to the store. A
    /// continuation that did not (its one step spent the budget, so the
    /// next start writes it) changed nothing a waiter could see, and wakes
    /// none: on Redis, a round trip per invocation of a budgeted run that
    /// someone waits on.
    pub(super) async fn after(
        self: &Arc<Self>,
        id: &ExecutionId,
        lease: &Lease,
        end: End,
        wrote: bool,
    ) -> Next {
        // The record the end wrote, for the waiters here.
        let mut written = None;
        let keeps_lease = self.queue.is_none() && !self.draining.load(Ordering::SeqCst);
        let end = match end {
            End::Spent { index, entry, .. } if !keeps_lease => {
                // The continuation may run elsewhere: its entry first.
                if let Err(e) = self.store.append(id, lease, index, &entry).await {
                    return self.after_store_error(id, lease, e).await;
                }
                End::Suspend {
                    wait: Wait::Ready,
                    consumed: 0,
                }
            }
            end => end,
        };
        let next = match end {
            End::Finished(outcome) => match self.store.finish(id, lease, &outcome).await {
                Ok(record) => {
                    written = Some(Arc::new(record));
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
            End::Spent {
                index,
                entry,
                journal,
            } => {
                // The step that spent the budget is written with the next
                // invocation's acquire: one durable write for both.
                self.metrics.suspensions.inc();
                Next::Continue(Held {
                    lease: lease.clone(),
                    spent: Some((index, entry)),
                    journal,
                    quiet: !wrote,
                })
            }
            End::Suspend {
                wait: Wait::Ready, ..
            } if keeps_lease => {
                // Out of budget, and the continuation runs right here: the
                // lease is kept, and the next invocation's acquire (this
                // host's own) takes it again. That spares the suspension's
                // write (on Redis with AOF `always`, a round trip and an
                // fsync per invocation, and the index moves to suspended
                // and back); a crash in between is a crash mid-invocation.
                // Through a queue any host may take the continuation, so
                // there the execution is suspended as ready.
                self.metrics.suspensions.inc();
                Next::Continue(Held {
                    lease: lease.clone(),
                    spent: None,
                    journal: None,
                    quiet: !wrote,
                })
            }
            End::Suspend { wait, consumed } => {
                if let (Some(wake_at_ms), Some(link)) = (wait.wake_at_ms(), self.queue.as_ref()) {
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
                        w @ (Wait::Timer { .. } | Wait::Consumers { .. } | Wait::Any { .. }) => {
                            if let (Some(at), None) = (w.wake_at_ms(), self.queue.as_ref()) {
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
                // Only when something outside this engine's slots holds the
                // pool: back off like any other retry.
                tracing::warn!(execution = %id, "no instance slot free: {reason}");
                self.release(id, lease).await;
                Next::Retry
            }
        };
        if !next.is_quiet() {
            self.notify_written(id, written);
        }
        next
    }

    /// Lets go of a lease a continuation kept, writing the entry that
    /// spent its budget first ([`Inner::release`]).
    pub(super) async fn let_go(&self, id: &ExecutionId, held: &Held) {
        if let Some((index, entry)) = &held.spent
            && let Err(e) = self.store.append(id, &held.lease, *index, entry).await
        {
            // Not written: the next invocation runs that step again.
            tracing::debug!(execution = %id, "cannot write the step that spent the budget: {e}");
        }
        self.release(id, &held.lease).await;
    }

    /// Leaves `id` ready to run and unleased, for another host or the next
    /// process; if that fails, the lease expires.
    pub(super) async fn release(&self, id: &ExecutionId, lease: &Lease) {
        if let Err(e) = self.store.release_lease(id, lease).await {
            tracing::debug!(execution = %id, "cannot release the lease, it will expire: {e}");
        }
    }

    /// A store error ended the invocation: retry if it may pass; stop if the
    /// lease is gone or the execution ended (someone else is in charge).
    pub(super) async fn after_store_error(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        e: StoreError,
    ) -> Next {
        self.notify(id);
        if e.is_retriable() {
            tracing::warn!(execution = %id, "store error, will retry: {e}");
            // If the store is down this fails and the lease simply expires.
            self.release(id, lease).await;
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
pub(super) async fn renew_lease(
    store: &dyn Store,
    id: &ExecutionId,
    lease: &Lease,
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
