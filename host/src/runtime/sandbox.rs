//! Replay in a sandbox: an execution's component run again over the first
//! entries of its journal, to see what the workflow logged up to there
//! (the time-travel view of `reprise serve`'s UI).
//!
//! Nothing a sandboxed replay does can reach the world or the store:
//! - its budget is zero new steps, so the first call past the cut ends it
//!   before any work is done;
//! - a replayed start of a tool call whose completion is past the cut is
//!   not run again (as a real resume would), and it has no tools anyway;
//! - a child start past the cut ends it before the child is created;
//! - its lease expired before it began, so a write would be refused by the
//!   store's lease check (invariant 3), should one ever be attempted.
//!
//! It runs under the same limits as any invocation (memory, time without
//! progress, an instance slot).

use super::*;
use crate::config::Budget;
use crate::engine::invocation::LogLine;
use crate::execution::Lease;
use crate::tools::attempts::RetryBoard;

/// What a sandboxed replay saw.
#[derive(Debug)]
pub struct ReplayReport {
    /// Entries replayed (at most the `to` asked, at most the journal).
    pub replayed: u64,
    /// Entries in the journal.
    pub total: u64,
    /// How the replay stopped.
    pub stop: ReplayStop,
    /// What the workflow logged, replayed calls included, each with the
    /// number of entries replayed before it (at most
    /// [`MAX_REPLAY_LOG_LINES`]).
    pub log: Vec<LogLine>,
}

/// Most log lines a replay report holds.
pub const MAX_REPLAY_LOG_LINES: usize = crate::engine::invocation::MAX_CAPTURED_LINES;

/// How a sandboxed replay stopped.
#[derive(Debug)]
pub enum ReplayStop {
    /// The workflow asked for its next step: the one after the cut.
    Reached,
    /// The workflow returned, or failed, within the replayed entries.
    Ended(Outcome),
}

impl Runtime {
    /// Replays execution `id` in a sandbox up to entry `to` (exclusive:
    /// `to` entries are replayed), and reports what the workflow logged.
    /// See the module docs for why this cannot run a tool or write.
    pub async fn replay_to(&self, id: &ExecutionId, to: u64) -> Result<ReplayReport, RuntimeError> {
        let inner = &self.inner;
        let mut snapshot = inner.store.load(id).await?;
        let total = snapshot.journal.len() as u64;
        snapshot.journal.truncate(to.min(total) as usize);
        let compiled = match inner.component(&snapshot.record.digest).await? {
            Ok(c) => c,
            Err(failure) => {
                return Ok(ReplayReport {
                    replayed: 0,
                    total,
                    stop: ReplayStop::Ended(Outcome::Failed(failure)),
                    log: Vec::new(),
                });
            }
        };
        let cfg = &inner.config;
        // Its own counters: a sandbox's work is not the host's.
        let metrics = Arc::new(Metrics::default());
        let invocation = Invocation {
            snapshot,
            lease: Lease {
                owner: "replay-sandbox".into(),
                token: 0,
                expires_at_ms: 0,
            },
            store: inner.store.clone(),
            tools: Arc::new(ToolRegistry::new()),
            limits: cfg.limits.clone(),
            budget: Budget {
                max_steps: Some(0),
                max_time: None,
            },
            inline_sleep_max: Duration::ZERO,
            metrics: metrics.clone(),
            drain: Arc::new(AtomicBool::new(false)),
            on_emit: Arc::new(|| {}),
            stream: cfg.stream.clone(),
            reads: Arc::new(tokio::sync::Notify::new()),
            calls: Arc::new(tokio::sync::Semaphore::new(1)),
            start_child: Arc::new(|_| {}),
            retrying: Arc::new(RetryBoard::new(metrics)),
            sandbox: true,
            keep_journal: false,
            trace: None,
        };
        let report = invocation::run(&inner.engine, &compiled, invocation).await;
        let stop = match report.end {
            End::Finished(outcome) => ReplayStop::Ended(outcome),
            End::Suspend { .. } | End::Spent { .. } => ReplayStop::Reached,
            End::Store(e) => return Err(e.into()),
            End::Busy(why) => {
                return Err(RuntimeError::Store(StoreError::Unavailable(format!(
                    "no instance slot is free for the replay, retry: {why}"
                ))));
            }
        };
        Ok(ReplayReport {
            replayed: report.replayed as u64,
            total,
            stop,
            log: report.log,
        })
    }
}
