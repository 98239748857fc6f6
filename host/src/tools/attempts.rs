//! Tool calls that are failing and being retried, made visible: a tool
//! reports each failed attempt it will follow with another through its
//! call's [`Attempts`]; the report is logged at warn with the execution
//! id, counted in the metrics, and kept on the host's [`RetryBoard`] until
//! the call ends, so the execution's status can say which tool, which
//! attempt, the last error and when the next attempt is.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ids::ExecutionId;
use crate::journal::ToolFailure;
use crate::metrics::{CategoryLabel, Metrics};

use super::IdempotencyKey;

/// A call between two attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryingCall {
    /// The tool's category.
    pub category: String,
    /// The tool's name.
    pub name: String,
    /// The journal index the call's result will be recorded at (its
    /// handle, for a started call).
    pub index: u64,
    /// Attempts made so far (all failed).
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: ToolFailure,
    /// When the next attempt starts, in ms since the Unix epoch.
    pub next_attempt_at_ms: u64,
    /// When the first attempt failed, in ms since the Unix epoch.
    pub failing_since_ms: u64,
}

/// The calls retrying on this host, by execution. Host-local: another host
/// of the same store does not see them.
pub struct RetryBoard {
    calls: Mutex<HashMap<ExecutionId, BTreeMap<u64, RetryingCall>>>,
    metrics: Arc<Metrics>,
}

impl RetryBoard {
    /// An empty board that counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The calls of `id` retrying now, by index.
    pub fn of(&self, id: &ExecutionId) -> Vec<RetryingCall> {
        self.lock()
            .get(id)
            .map(|calls| calls.values().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, BTreeMap<u64, RetryingCall>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, key: &IdempotencyKey) {
        let mut calls = self.lock();
        if let Some(of) = calls.get_mut(&key.execution) {
            if of.remove(&key.index).is_some() {
                self.metrics.tool_calls_retrying.dec();
            }
            if of.is_empty() {
                calls.remove(&key.execution);
            }
        }
    }
}

/// A call's handle on the board: what a tool reports a failed attempt to.
/// Clones share it; the call's entry leaves the board when the last clone
/// is dropped (the call ended, or was abandoned).
#[derive(Clone, Default)]
pub struct Attempts(Option<Arc<Tracked>>);

struct Tracked {
    board: Arc<RetryBoard>,
    key: IdempotencyKey,
    category: String,
    name: String,
    /// Whether the call is on the board: most calls never fail, and their
    /// end takes no lock.
    reported: AtomicBool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if *self.reported.get_mut() {
            self.board.remove(&self.key);
        }
    }
}

impl std::fmt::Debug for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Attempts(tracked)"
        } else {
            "Attempts(untracked)"
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Attempts {
    /// Reports to nobody (a call outside a runtime, e.g. in a test).
    pub fn untracked() -> Self {
        Self(None)
    }

    /// Tracks the call at `key` on `board`.
    pub fn tracked(
        board: Arc<RetryBoard>,
        key: IdempotencyKey,
        category: &str,
        name: &str,
    ) -> Self {
        Self(Some(Arc::new(Tracked {
            board,
            key,
            category: category.to_string(),
            name: name.to_string(),
            reported: AtomicBool::new(false),
        })))
    }

    /// Attempt number `attempts` failed with `error`, and the next one
    /// starts in `next_in`: logged at warn, counted, and shown on the
    /// board until the call ends.
    pub fn failed(&self, attempts: u32, error: &ToolFailure, next_in: Duration) {
        let Some(t) = &self.0 else {
            return;
        };
        tracing::warn!(
            execution = %t.key.execution,
            index = t.key.index,
            tool = %format_args!("{}/{}", t.category, t.name),
            attempt = attempts,
            code = %error.code,
            next_in = ?next_in,
            "tool attempt failed, retrying: {}",
            error.message
        );
        t.board
            .metrics
            .tool_retries
            .get_or_create(&CategoryLabel {
                category: t.category.clone(),
            })
            .inc();
        let now = now_ms();
        t.reported.store(true, Ordering::Relaxed);
        let mut calls = t.board.lock();
        let of = calls.entry(t.key.execution.clone()).or_default();
        let failing_since_ms = of.get(&t.key.index).map_or(now, |c| c.failing_since_ms);
        let previous = of.insert(
            t.key.index,
            RetryingCall {
                category: t.category.clone(),
                name: t.name.clone(),
                index: t.key.index,
                attempts,
                last_error: error.clone(),
                next_attempt_at_ms: now.saturating_add(next_in.as_millis() as u64),
                failing_since_ms,
            },
        );
        if previous.is_none() {
            t.board.metrics.tool_calls_retrying.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_on_the_board_until_its_last_handle_drops() {
        let metrics = Arc::new(Metrics::default());
        let board = Arc::new(RetryBoard::new(metrics.clone()));
        let id = ExecutionId::new("e1").unwrap();
        let key = IdempotencyKey {
            execution: id.clone(),
            index: 3,
        };
        let attempts = Attempts::tracked(board.clone(), key, "crm", "lookup");
        let copy = attempts.clone();
        attempts.failed(
            1,
            &ToolFailure::new("unavailable", "down"),
            Duration::from_secs(1),
        );
        copy.failed(
            2,
            &ToolFailure::new("timeout", "slow"),
            Duration::from_secs(2),
        );
        let calls = board.of(&id);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].attempts, calls[0].last_error.code.as_str()),
            (2, "timeout")
        );
        assert!(calls[0].next_attempt_at_ms >= calls[0].failing_since_ms + 2000);
        assert_eq!(metrics.tool_calls_retrying.get(), 1);
        drop(attempts);
        assert_eq!(board.of(&id).len(), 1, "a clone still holds it");
        drop(copy);
        assert!(board.of(&id).is_empty());
        assert_eq!(metrics.tool_calls_retrying.get(), 0);
    }
}
