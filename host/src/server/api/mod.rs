//! The `/v1` routes, one file per resource: `workflows` (deploy, list,
//! get), `executions` (start, status, cancel, journal, signal, list),
//! `items` (an execution's output stream, a batch at a time) with `live`
//! (the same as NDJSON or server-sent events), and `sessions` (the
//! consumer sessions that pace a stream). Each handler is annotated for the
//! OpenAPI document, which is generated from the same annotations the
//! router is built from, so the document cannot list a route the server
//! does not serve. This file holds what they share: the conversions from
//! the host's types to the wire documents of `reprise-api`, and the
//! parameters' parsing.

pub mod executions;
pub mod inspect;
pub mod items;
mod live;
pub mod sessions;
pub mod values;
pub mod workflows;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::AppState;
use super::body::{Body, Format, body_rejection};
use super::extract::{Admitted, Deployer, Invoker, Path, Query, Reader};
use super::problem::Problem;
use crate::execution::{
    ConsumerSession, ExecutionRecord, Failure, FailureKind, Outcome, Status, Wait,
};
use crate::ids::ExecutionId;
use crate::runtime::{Deployment, RuntimeError};

type Shared = State<std::sync::Arc<AppState>>;

/// Most items one page of a list returns.
const MAX_PAGE: usize = 1000;
/// Items per page when the request does not say.
const DEFAULT_PAGE: usize = 100;

pub use reprise_api::{
    CancelParams, ChildView, DeploymentView, EntryView, ErrorView, ExecutionList, ExecutionStatus,
    ExecutionView, FailureKind as WireFailureKind, ItemView, ItemsBatch, ItemsParams, JournalPage,
    JournalParams, ListParams, RetryingView, SessionList, SessionView, SignalAccepted,
    SignalRequest, StartRequest, StreamEnd, StreamOptions, ToolErrorView, ValueView, WaitKind,
    WaitParams, WaitView, WorkflowList, WorkflowView,
};

impl From<Deployment> for DeploymentView {
    fn from(d: Deployment) -> Self {
        Self {
            name: d.name,
            version: d.version,
            digest: d.digest.to_hex(),
            imports: d.imports,
            deployed_at_ms: d.deployed_at_ms,
        }
    }
}

/// The wire name of a status.
pub fn wire_status(status: Status) -> ExecutionStatus {
    match status {
        Status::Running => ExecutionStatus::Running,
        Status::Suspended => ExecutionStatus::Suspended,
        Status::Completed => ExecutionStatus::Completed,
        Status::Failed => ExecutionStatus::Failed,
        Status::Cancelled => ExecutionStatus::Cancelled,
    }
}

/// The status a wire name names.
pub fn domain_status(status: ExecutionStatus) -> Status {
    match status {
        ExecutionStatus::Running => Status::Running,
        ExecutionStatus::Suspended => Status::Suspended,
        ExecutionStatus::Completed => Status::Completed,
        ExecutionStatus::Failed => Status::Failed,
        ExecutionStatus::Cancelled => Status::Cancelled,
    }
}

pub(super) fn error_view(f: &Failure) -> ErrorView {
    ErrorView {
        kind: match f.kind {
            FailureKind::Workflow => WireFailureKind::WorkflowError,
            FailureKind::Trap => WireFailureKind::Trap,
            FailureKind::Nondeterminism => WireFailureKind::NondeterminismDetected,
            FailureKind::MemoryLimit => WireFailureKind::MemoryLimit,
            FailureKind::TimeLimit => WireFailureKind::TimeLimit,
            FailureKind::MissingTool => WireFailureKind::MissingTool,
            FailureKind::InvalidComponent => WireFailureKind::InvalidComponent,
            FailureKind::InvalidCall => WireFailureKind::InvalidCall,
        },
        message: f.message.clone(),
        code: f.workflow_code().map(str::to_string),
        details: f.details.as_deref().map(payload_json),
    }
}

pub(super) fn wait_view(w: &Wait) -> WaitView {
    let (kind, wake_at_ms, signal) = match w {
        Wait::Ready => (WaitKind::Ready, None, None),
        Wait::Timer { wake_at_ms } => (WaitKind::Timer, Some(*wake_at_ms), None),
        Wait::Signal { name } => (WaitKind::Signal, None, Some(name.clone())),
        Wait::Consumers { wake_at_ms, .. } => (WaitKind::Consumers, *wake_at_ms, None),
        Wait::Any {
            signals,
            wake_at_ms,
        } => {
            return WaitView {
                kind: WaitKind::Any,
                wake_at_ms: *wake_at_ms,
                signal: None,
                signals: signals.iter().map(|s| s.name.clone()).collect(),
            };
        }
    };
    WaitView {
        kind,
        wake_at_ms,
        signal,
        signals: Vec::new(),
    }
}

impl From<ExecutionRecord> for ExecutionView {
    fn from(r: ExecutionRecord) -> Self {
        let (result, error) = match &r.outcome {
            Some(Outcome::Completed(bytes)) => (Some(payload_json(bytes)), None),
            Some(Outcome::Failed(f)) => (None, Some(error_view(f))),
            Some(Outcome::Cancelled) | None => (None, None),
        };
        let wait = match (&r.status, &r.wait) {
            (Status::Suspended, Some(w)) => Some(wait_view(w)),
            _ => None,
        };
        Self {
            id: r.id.to_string(),
            workflow: r.workflow,
            digest: r.digest.to_hex(),
            status: wire_status(r.status),
            input: None,
            wait,
            result,
            error,
            steps: r.journal_len,
            invocations: r.invocations,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            stream: r.stream.as_ref().map(crate::stream::options),
            parent: r.parent.as_ref().map(|p| p.id.to_string()),
            children: Vec::new(),
            retrying: Vec::new(),
        }
    }
}

/// A MessagePack payload as JSON; `{"hex": ...}` if it is not MessagePack
/// that JSON can hold (e.g. raw binary).
pub fn payload_json(bytes: &[u8]) -> serde_json::Value {
    match rmp_serde::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => v,
        Err(_) => serde_json::json!({ "hex": hex::encode(bytes) }),
    }
}

pub(super) fn encode_payload(value: &serde_json::Value) -> Result<Vec<u8>, Problem> {
    rmp_serde::to_vec_named(value)
        .map_err(|e| Problem::bad_request(format!("cannot encode the payload: {e}")))
}

pub(super) fn execution_id(id: &str) -> Result<ExecutionId, Problem> {
    ExecutionId::new(id).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "Invalid execution id",
            e.to_string(),
        )
    })
}

/// The `wait` query parameter (`500ms`, `10s`), if given.
pub(super) fn wait_param(text: Option<&str>) -> Result<Option<Duration>, Problem> {
    text.map(|text| {
        humantime::parse_duration(text).map_err(|e| {
            Problem::bad_request(format!(
                "wait={text:?} is not a duration ({e}); e.g. 500ms, 10s"
            ))
        })
    })
    .transpose()
}

pub(super) fn page_limit(name: &str, limit: Option<usize>) -> Result<usize, Problem> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(format!(
            "{name} {n} is out of range: use 1 to {MAX_PAGE}"
        ))),
    }
}

pub use reprise_api::SESSION_HEADER;

/// Caps a requested wait below the request timeout, so the reply (202)
/// always beats the timeout.
pub fn cap_wait(wait: Duration, request_timeout: Duration) -> Duration {
    wait.min(request_timeout.saturating_sub(Duration::from_secs(1)))
}
