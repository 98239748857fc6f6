//! The documents of a Reprise host's HTTP API (`/v1`), defined once.
//!
//! The server (`reprise-host`) answers with these types, the client crate
//! (`reprise-client`) and the CLI read them, so the three cannot drift.
//! Statuses, wait kinds, failure kinds and `on_abandon` are enums: nobody
//! compares string literals to decide what an execution is doing, and
//! [`ExecutionView::is_settled`] is the one definition of "settled".
//!
//! With the `openapi` feature every type also derives its OpenAPI schema,
//! which is how the server's `/v1/openapi.json` describes them.

#![deny(missing_docs)]

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

mod inspect;
mod journal;
mod stream;

pub use inspect::{LogLineView, MAX_REPLAY_TO, ReplayParams, ReplayView, StatusCounts};
pub use journal::{EntryView, JournalPage, JournalParams, ValueView};
pub use stream::{
    ItemView, ItemsBatch, ItemsParams, SESSION_HEADER, SessionList, SessionView, StreamEnd,
};

/// Where an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// An invocation is running it (or was, before its host died).
    Running,
    /// No instance exists: it waits for what [`ExecutionView::wait`] says.
    Suspended,
    /// Finished with a result.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled on request; it never runs again.
    Cancelled,
}

impl ExecutionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ExecutionStatus; 5] = [
        ExecutionStatus::Running,
        ExecutionStatus::Suspended,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
    ];

    /// Completed, failed or cancelled: nothing will run again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed | ExecutionStatus::Failed | ExecutionStatus::Cancelled
        )
    }

    /// The name on the wire (`running`, `suspended`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Suspended => "suspended",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    /// The status named `name` on the wire.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a suspended execution waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WaitKind {
    /// Nothing: it may run now (its host continues it).
    Ready,
    /// A durable timer.
    Timer,
    /// A signal from outside.
    Signal,
    /// Its consumers: a paced stream's window is full until they read.
    Consumers,
    /// The first of several things the workflow started: any of the
    /// `signals`, or a timer due at `wake_at_ms`.
    Any,
}

impl WaitKind {
    /// Whether only someone outside the host can end this wait (a signal,
    /// a consumer's read): the host makes no progress on its own.
    pub fn needs_outside(self) -> bool {
        matches!(self, WaitKind::Signal | WaitKind::Consumers)
    }

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Ready => "ready",
            WaitKind::Timer => "timer",
            WaitKind::Signal => "signal",
            WaitKind::Consumers => "consumers",
            WaitKind::Any => "any",
        }
    }
}

impl fmt::Display for WaitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an execution failed, grouped by cause so a caller can tell a
/// workflow bug from a host limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The workflow returned an error.
    WorkflowError,
    /// The guest trapped (a panic, an `unreachable`, ...).
    Trap,
    /// Replay did not match the journal.
    NondeterminismDetected,
    /// The guest exceeded its memory or table limit.
    MemoryLimit,
    /// The guest ran too long without reaching a journaled call.
    TimeLimit,
    /// The guest called a tool the host does not offer.
    MissingTool,
    /// The component could not be loaded or instantiated.
    InvalidComponent,
    /// The workflow used the host's imports wrongly (awaited a handle it
    /// never started or already spent, held too many handles).
    InvalidCall,
}

impl FailureKind {
    /// The name on the wire (`workflow-error`, `trap`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::WorkflowError => "workflow-error",
            FailureKind::Trap => "trap",
            FailureKind::NondeterminismDetected => "nondeterminism-detected",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::TimeLimit => "time-limit",
            FailureKind::MissingTool => "missing-tool",
            FailureKind::InvalidComponent => "invalid-component",
            FailureKind::InvalidCall => "invalid-call",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a paced stream once every consumer has left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnAbandon {
    /// Cancel the execution at its next `emit`: nobody wants its output.
    #[default]
    Cancel,
    /// Let it run to its end unpaced; its items stay readable.
    Continue,
}

impl OnAbandon {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OnAbandon::Cancel => "cancel",
            OnAbandon::Continue => "continue",
        }
    }
}

/// Reads `cancel` or `continue`, and says so for anything else.
impl<'de> Deserialize<'de> for OnAbandon {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "cancel" => Ok(OnAbandon::Cancel),
            "continue" => Ok(OnAbandon::Continue),
            other => Err(serde::de::Error::custom(format!(
                "stream.on_abandon {other:?} is not `cancel` or `continue`"
            ))),
        }
    }
}

/// A version of a deployed workflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentView {
    /// Workflow name.
    pub name: String,
    /// Version number under this name, from 1.
    pub version: u32,
    /// sha256 of the component, hex.
    pub digest: String,
    /// Interfaces the component imports.
    pub imports: Vec<String>,
    /// When this version was deployed, ms since the Unix epoch.
    pub deployed_at_ms: u64,
}

/// A workflow with every version deployed under its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowView {
    /// Workflow name.
    pub name: String,
    /// The version new executions start on.
    pub current: DeploymentView,
    /// Every version, oldest first.
    pub versions: Vec<DeploymentView>,
}

/// The deployed workflows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowList {
    /// Each workflow at its current version, sorted by name.
    pub workflows: Vec<DeploymentView>,
}

/// Starts an execution.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The workflow's input (any JSON value; MessagePack for the guest).
    #[serde(default)]
    pub input: serde_json::Value,
    /// Execution id. Starting twice with the same id (and the same input)
    /// starts once; a different input under the same id is a conflict.
    /// 1 to 128 printable ASCII characters other than `{`, `}` and `/`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[!-.0-z|~]{1,128}$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Start it as a stream paced by its consumers (see the `items` route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamOptions>,
}

/// How a start asks for its stream to be paced: the `stream` object of an
/// HTTP start, or the JSON text of a queue start message's `stream` field.
/// What it leaves out comes from the host's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Most items the workflow may emit beyond what every live consumer
    /// has read; an `emit` past it waits (the execution is suspended).
    /// Default: the host's `stream.window`.
    #[serde(default)]
    pub window: Option<u64>,
    /// What happens once every consumer has left (closed its session or
    /// let it expire): `cancel` (the default) or `continue`.
    #[serde(default)]
    pub on_abandon: Option<OnAbandon>,
    /// Bound the window in bytes of items too (an item larger than this
    /// still goes out when nothing is unread). Default: the host's
    /// `stream.window_bytes`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_bytes: Option<u64>,
}

/// Sends a signal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// The signal's payload (any JSON value).
    #[serde(default)]
    pub payload: serde_json::Value,
}

/// Why an execution failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorView {
    /// The cause.
    pub kind: FailureKind,
    /// What happened, for humans: names the entry, the trap, the limit.
    pub message: String,
    /// For a `workflow-error`: the workflow's own code, to branch on
    /// (`error` when it gave none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For a `workflow-error`: the details it gave, as JSON
    /// (`{"hex": ...}` if they are not MessagePack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// What a suspended execution waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitView {
    /// `ready` (runnable now), `timer`, `signal` or `consumers` (a
    /// stream's window is full until its consumers read).
    pub kind: WaitKind,
    /// For a timer: when it fires; for consumers: when the host looks
    /// again for consumers that left. ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<u64>,
    /// For a signal: its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// For `any`: the signal names, any of which ends the wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<String>,
}

impl WaitView {
    /// Whether only someone outside the host can end this wait: a signal,
    /// a consumer's read, and no timer of the host's.
    pub fn needs_outside(&self) -> bool {
        // A child execution's end reaches its parent as a signal the host
        // sends itself, named `reprise:child/<handle>`.
        let outside = |name: &str| !name.starts_with("reprise:");
        match self.kind {
            WaitKind::Any => self.wake_at_ms.is_none() && self.signals.iter().all(|n| outside(n)),
            WaitKind::Signal => self.signal.as_deref().is_none_or(outside),
            kind => kind.needs_outside(),
        }
    }
}

impl fmt::Display for WaitView {
    /// `signal "approve"`, `timer until <ms>`, `ready`, `consumers`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.signal, self.wake_at_ms) {
            (WaitKind::Signal, Some(name), _) => write!(f, "signal {name:?}"),
            (WaitKind::Timer, _, Some(at)) => write!(f, "timer until {at}"),
            (WaitKind::Any, _, at) => {
                let names: Vec<String> = self.signals.iter().map(|n| format!("{n:?}")).collect();
                match at {
                    Some(at) if names.is_empty() => write!(f, "timer until {at}"),
                    Some(at) => write!(f, "signal {} or timer until {at}", names.join(" or ")),
                    None => write!(f, "signal {}", names.join(" or ")),
                }
            }
            (kind, _, _) => f.write_str(kind.as_str()),
        }
    }
}

/// An execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionView {
    /// Execution id.
    pub id: String,
    /// Workflow name.
    pub workflow: String,
    /// Digest of the component version it runs (pinned at start).
    pub digest: String,
    /// Where it stands.
    pub status: ExecutionStatus,
    /// The input it was started with (only in the answer about one
    /// execution, not in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// For a suspended execution: what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitView>,
    /// The result, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The failure, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
    /// Journal entries recorded.
    pub steps: u64,
    /// Invocations so far.
    pub invocations: u64,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Its last change of state, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// For an execution started as a stream: how it is paced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamOptions>,
    /// For a child execution: its parent's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The child executions it started, in the order started (only in the
    /// answer about one execution, not in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildView>,
    /// Its tool calls failing and being retried now (only in the answer
    /// about one execution, from the host running it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retrying: Vec<RetryingView>,
}

/// A tool call of the execution that failed and waits for its next
/// attempt (shown by the host running it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryingView {
    /// `category/name`.
    pub tool: String,
    /// The journal index its result will be recorded at.
    pub index: u64,
    /// Attempts made so far, all failed.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: ToolErrorView,
    /// When the next attempt starts, ms since the Unix epoch.
    pub next_attempt_at_ms: u64,
    /// When its first attempt failed, ms since the Unix epoch.
    pub failing_since_ms: u64,
}

/// An error a tool answered with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolErrorView {
    /// Its code (`unavailable`, `timeout`, `http-404`, or the tool's own).
    pub code: String,
    /// What happened.
    pub message: String,
}

/// A child execution, as its parent lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildView {
    /// Its id (`<parent id>.<handle>`).
    pub id: String,
    /// The workflow it runs.
    pub workflow: String,
    /// Where it stands.
    pub status: ExecutionStatus,
}

impl ExecutionView {
    /// Completed, failed or cancelled.
    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }

    /// Finished, or suspended until someone outside acts (a signal, a
    /// consumer's read): the point past which its host makes no progress
    /// on its own, so waiting longer changes nothing. This is what a
    /// start's `?wait=` and the client's and CLI's waits wait for.
    pub fn is_settled(&self) -> bool {
        self.status.is_finished()
            || (self.status == ExecutionStatus::Suspended
                && self.wait.as_ref().is_some_and(WaitView::needs_outside))
    }

    /// The first 12 hex digits of the component's digest (all of it, if the
    /// server sent fewer), for display.
    pub fn short_digest(&self) -> &str {
        short_digest(&self.digest)
    }
}

impl DeploymentView {
    /// The first 12 hex digits of the component's digest, for display.
    pub fn short_digest(&self) -> &str {
        short_digest(&self.digest)
    }
}

fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// A page of executions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionList {
    /// Executions, newest first by the time of their last status change
    /// (or oldest first, as asked). A page may hold fewer than `limit`
    /// and still have a `next_cursor`: follow it to the end.
    pub executions: Vec<ExecutionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A signal was delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignalAccepted {
    /// The execution.
    pub id: String,
    /// The signal's name.
    pub name: String,
}

/// `?wait=` on a start or on reading an execution's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct WaitParams {
    /// Wait up to this long (`500ms`, `10s`) for the execution to settle:
    /// to end, or to wait for a signal or for its consumers (see
    /// `ExecutionView::is_settled`); capped at the host's request timeout
    /// less one second. A start that has not ended by then replies 202.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
}

/// Options of a cancellation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct CancelParams {
    /// Leave the execution's unfinished child executions running (by
    /// default they are cancelled with it).
    #[serde(default)]
    pub keep_children: bool,
}

/// The latest time a list filter takes: the last ms of the year 9999.
pub const MAX_LIST_TIME_MS: u64 = 253_402_300_799_999;

/// Filters and paging of the execution list.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct ListParams {
    /// Only executions of this workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Only executions with this status (`running`, `suspended`,
    /// `completed`, `failed`, `cancelled`).
    #[cfg_attr(feature = "openapi", param(value_type = Option<ExecutionStatus>))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Items per page (default 100, at most 1000).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// From a previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// `newest` (the default) or `oldest` first, by the time of the last
    /// status change. Newest first, paging lists each execution once even
    /// as executions change; oldest first, one that changes between pages
    /// moves to the end and may be listed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Only executions whose status last changed at or after this time
    /// (ms since the Unix epoch, up to the year 9999).
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 0, maximum = 253_402_300_799_999_u64)
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_since_ms: Option<u64>,
    /// Only executions whose status last changed before this time (ms since
    /// the Unix epoch, up to the year 9999).
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 0, maximum = 253_402_300_799_999_u64)
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_before_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn execution(status: &str, wait: Option<serde_json::Value>) -> ExecutionView {
        let mut v = json!({
            "id": "e1", "workflow": "w", "digest": "ab", "status": status,
            "steps": 0, "invocations": 1, "created_at_ms": 1, "updated_at_ms": 2,
        });
        if let Some(w) = wait {
            v["wait"] = w;
        }
        serde_json::from_value(v).unwrap()
    }

    /// Settled means: finished, or waiting on someone outside the host.
    #[test]
    fn settled_is_finished_or_waiting_outside() {
        for s in ["completed", "failed", "cancelled"] {
            assert!(execution(s, None).is_settled(), "{s}");
        }
        assert!(!execution("running", None).is_settled());
        for (kind, settled) in [
            ("signal", true),
            ("consumers", true),
            ("timer", false),
            ("ready", false),
        ] {
            let e = execution("suspended", Some(json!({ "kind": kind })));
            assert_eq!(e.is_settled(), settled, "{kind}");
        }
    }

    /// The names on the wire are the ones `as_str` gives, both ways.
    #[test]
    fn enums_use_their_wire_names() {
        for s in ExecutionStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(ExecutionStatus::parse(s.as_str()), Some(s));
        }
        for k in [
            FailureKind::WorkflowError,
            FailureKind::Trap,
            FailureKind::NondeterminismDetected,
            FailureKind::MemoryLimit,
            FailureKind::TimeLimit,
            FailureKind::MissingTool,
            FailureKind::InvalidComponent,
            FailureKind::InvalidCall,
        ] {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v, json!(k.as_str()));
            assert_eq!(serde_json::from_value::<FailureKind>(v).unwrap(), k);
        }
        for k in [
            WaitKind::Ready,
            WaitKind::Timer,
            WaitKind::Signal,
            WaitKind::Consumers,
            WaitKind::Any,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        }
        for a in [OnAbandon::Cancel, OnAbandon::Continue] {
            let v = serde_json::to_value(a).unwrap();
            assert_eq!(serde_json::from_value::<OnAbandon>(v).unwrap(), a);
        }
        let err = serde_json::from_value::<StreamOptions>(json!({"on_abandon": "later"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not `cancel` or `continue`"), "{err}");
    }

    /// A short digest never panics on a short reply.
    #[test]
    fn short_digest_of_a_short_reply() {
        let mut e = execution("running", None);
        assert_eq!(e.short_digest(), "ab");
        e.digest = "0123456789abcdef".into();
        assert_eq!(e.short_digest(), "0123456789ab");
    }
}
