//! Documents for looking at executions rather than driving them: counts by
//! status, and the sandboxed replay of an execution up to an entry (the
//! dashboard's time-travel view).

use serde::{Deserialize, Serialize};

use crate::ErrorView;

/// Executions in the store by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusCounts {
    /// Running, or ready to run.
    pub running: u64,
    /// Waiting for a timer, a signal or consumers.
    pub suspended: u64,
    /// Completed with a result.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// When the counts were taken, ms since the Unix epoch (they are
    /// reused for up to a second).
    pub at_ms: u64,
}

/// The largest `to` a replay takes (no journal is longer).
pub const MAX_REPLAY_TO: u64 = u32::MAX as u64;

/// How far to replay.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct ReplayParams {
    /// Replay this many journal entries (entries `0..to`); past the
    /// journal's end, all of it.
    #[cfg_attr(feature = "openapi", param(minimum = 0, maximum = 4294967295_u64))]
    pub to: u64,
}

/// What a sandboxed replay saw: the workflow run again over the first
/// entries of its journal with no tools and no writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayView {
    /// Entries replayed.
    pub replayed: u64,
    /// Entries in the journal.
    pub total: u64,
    /// `reached` (the workflow asked for the entry after the last one
    /// replayed), `completed` or `failed` (it ended within them).
    pub stop: String,
    /// The result, when it completed within the replayed entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The failure, when it failed within them (a changed workflow shows
    /// here as nondeterminism).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
    /// What the workflow logged, in order (at most 2,000 lines).
    pub log: Vec<LogLineView>,
}

/// A line the workflow logged during a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLineView {
    /// Entries replayed when it was logged: it comes after entry
    /// `after - 1` and before entry `after`.
    pub after: u64,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The line (cut to the host's line limit, control characters escaped).
    pub message: String,
}
