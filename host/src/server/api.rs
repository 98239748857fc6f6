//! The `/v1` routes. Each handler is annotated for the OpenAPI document,
//! which is generated from the same annotations the router is built from,
//! so the document cannot list a route the server does not serve.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::AppState;
use super::body::{Body, Format, body_rejection};
use super::config::Scope;
use super::problem::Problem;
use crate::execution::{
    ConsumerSession, ExecutionRecord, Failure, FailureKind, Outcome, Status, Wait,
};
use crate::ids::ExecutionId;
use crate::journal::Entry;
use crate::runtime::{Deployment, RuntimeError};

type Shared = State<std::sync::Arc<AppState>>;

/// Most items one page of a list returns.
const MAX_PAGE: usize = 1000;
/// Items per page when the request does not say.
const DEFAULT_PAGE: usize = 100;

pub use reprise_api::{
    DeploymentView, EntryView, ErrorView, ExecutionList, ExecutionStatus, ExecutionView,
    FailureKind as WireFailureKind, ItemView, ItemsBatch, ItemsParams, JournalPage, JournalParams,
    ListParams, SessionList, SessionView, SignalAccepted, SignalRequest, StartRequest, StreamEnd,
    StreamOptions, WaitKind, WaitParams, WaitView, WorkflowList, WorkflowView,
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

fn error_view(f: &Failure) -> ErrorView {
    ErrorView {
        kind: match f.kind {
            FailureKind::Workflow => WireFailureKind::WorkflowError,
            FailureKind::Trap => WireFailureKind::Trap,
            FailureKind::Nondeterminism => WireFailureKind::NondeterminismDetected,
            FailureKind::MemoryLimit => WireFailureKind::MemoryLimit,
            FailureKind::TimeLimit => WireFailureKind::TimeLimit,
            FailureKind::MissingTool => WireFailureKind::MissingTool,
            FailureKind::InvalidComponent => WireFailureKind::InvalidComponent,
        },
        message: f.message.clone(),
    }
}

fn wait_view(w: &Wait) -> WaitView {
    let (kind, wake_at_ms, signal) = match w {
        Wait::Ready => (WaitKind::Ready, None, None),
        Wait::Timer { wake_at_ms } => (WaitKind::Timer, Some(*wake_at_ms), None),
        Wait::Signal { name } => (WaitKind::Signal, None, Some(name.clone())),
        Wait::Consumers { wake_at_ms, .. } => (WaitKind::Consumers, *wake_at_ms, None),
    };
    WaitView {
        kind,
        wake_at_ms,
        signal,
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
            wait,
            result,
            error,
            steps: r.journal_len,
            invocations: r.invocations,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            stream: r.stream.as_ref().map(crate::stream::options),
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

fn encode_payload(value: &serde_json::Value) -> Result<Vec<u8>, Problem> {
    rmp_serde::to_vec_named(value)
        .map_err(|e| Problem::bad_request(format!("cannot encode the payload: {e}")))
}

fn execution_id(id: &str) -> Result<ExecutionId, Problem> {
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
fn wait_param(text: Option<&str>) -> Result<Option<Duration>, Problem> {
    text.map(|text| {
        humantime::parse_duration(text).map_err(|e| {
            Problem::bad_request(format!(
                "wait={text:?} is not a duration ({e}); e.g. 500ms, 10s"
            ))
        })
    })
    .transpose()
}

fn page_limit(name: &str, limit: Option<usize>) -> Result<usize, Problem> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(format!(
            "{name} {n} is out of range: use 1 to {MAX_PAGE}"
        ))),
    }
}

/// Deploy a workflow component.
///
/// The body is the component (`application/wasm` or
/// `application/octet-stream`). It is validated against the workflow world,
/// compiled and stored by digest. Deploying new bytes under a name adds a
/// version; executions already started stay on the version they started on.
#[utoipa::path(
    put,
    path = "/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "Workflow name: 1 to 64 of letters, digits, '-', '_', '.'")),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 201, description = "Deployed (a new version, or the current one if the bytes are unchanged)", body = DeploymentView),
        (status = 400, description = "Not a valid component of the workflow world, or a bad name", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Larger than max_component_bytes", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["deploy"]))
)]
pub async fn deploy(
    State(state): Shared,
    Path(name): Path<String>,
    format: Format,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Deploy)?;
    let body = body.map_err(|r| body_rejection(r.status(), r.body_text()))?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("?");
        let media = ct.split(';').next().unwrap_or("").trim();
        if !matches!(media, "application/wasm" | "application/octet-stream") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported content type",
                format!(
                    "a deploy takes the component bytes as application/wasm or \
                     application/octet-stream, not {ct:?}"
                ),
            ));
        }
    }
    if body.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-component",
            "The component cannot be deployed",
            "the body is empty; send the component's bytes",
        ));
    }
    let deployment = state.runtime.deploy(&name, body.to_vec()).await?;
    tracing::info!(workflow = name, version = deployment.version, digest = %deployment.digest, "deployed");
    Ok(format.reply(StatusCode::CREATED, &DeploymentView::from(deployment)))
}

/// List deployed workflows.
#[utoipa::path(
    get,
    path = "/v1/workflows",
    tag = "workflows",
    responses((status = 200, body = WorkflowList)),
    security(("bearer" = ["invoke"]), ("bearer" = ["deploy"]))
)]
pub async fn list_workflows(
    State(state): Shared,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize_any(&headers)?;
    let workflows = state
        .runtime
        .deployments()
        .await?
        .into_iter()
        .map(DeploymentView::from)
        .collect();
    Ok(format.reply(StatusCode::OK, &WorkflowList { workflows }))
}

/// A workflow and its versions.
#[utoipa::path(
    get,
    path = "/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    responses(
        (status = 200, body = WorkflowView),
        (status = 404, description = "No such workflow", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]), ("bearer" = ["deploy"]))
)]
pub async fn get_workflow(
    State(state): Shared,
    Path(name): Path<String>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize_any(&headers)?;
    let versions: Vec<DeploymentView> = state
        .runtime
        .deployment_versions(&name)
        .await?
        .into_iter()
        .map(DeploymentView::from)
        .collect();
    // The current version is the last one added.
    let current = versions
        .last()
        .cloned()
        .expect("an existing workflow has a version");
    Ok(format.reply(
        StatusCode::OK,
        &WorkflowView {
            name,
            current,
            versions,
        },
    ))
}

/// Start an execution.
///
/// Returns 200 with the result if `wait` is given and the execution ends
/// in time; otherwise 202 with its current state (poll
/// `GET /v1/executions/{id}`). With an `id`, a repeated start returns the
/// same execution. When the host already drives `max_active` executions,
/// 429 with `Retry-After`.
#[utoipa::path(
    post,
    path = "/v1/workflows/{name}/executions",
    tag = "executions",
    params(("name" = String, Path, description = "Workflow name"), WaitParams),
    request_body = StartRequest,
    responses(
        (status = 200, description = "Ended within `wait`", body = ExecutionView),
        (status = 202, description = "Started (or already started); not ended yet", body = ExecutionView),
        (status = 404, description = "No such workflow", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The id is taken by a different start", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "The host is saturated; retry after Retry-After", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn start(
    State(state): Shared,
    Path(name): Path<String>,
    Query(params): Query<WaitParams>,
    format: Format,
    headers: HeaderMap,
    Body(req): Body<StartRequest>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let wait = wait_param(params.wait.as_deref())?;
    state.admit()?;
    let id = req.id.as_deref().map(execution_id).transpose()?;
    let input = encode_payload(&req.input)?;
    let stream = req
        .stream
        .map(|o| {
            crate::stream::policy(&o, state.runtime.stream_config())
                .map_err(|e| Problem::bad_request(e.to_string()))
        })
        .transpose()?;
    let id = state.runtime.start_with(&name, input, id, stream).await?;
    let record = match wait {
        Some(w) if !w.is_zero() => state.wait_settled(&id, w).await?,
        _ => state.runtime.status(&id).await?,
    };
    let status = if record.status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = format.reply(status, &ExecutionView::from(record));
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/executions/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// An execution's state.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id"), WaitParams),
    responses(
        (status = 200, body = ExecutionView),
        (status = 404, description = "No such execution", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn get_execution(
    State(state): Shared,
    Path(id): Path<String>,
    Query(params): Query<WaitParams>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let wait = wait_param(params.wait.as_deref())?;
    let id = execution_id(&id)?;
    let record = match wait {
        Some(w) if !w.is_zero() => state.wait_settled(&id, w).await?,
        _ => state.runtime.status(&id).await?,
    };
    Ok(format.reply(StatusCode::OK, &ExecutionView::from(record)))
}

/// Cancel an execution.
///
/// The guest is not run again; a running invocation stops at its next
/// journal write. The cancellation is recorded as the outcome. Cancelling
/// an execution that already ended is a 409.
#[utoipa::path(
    delete,
    path = "/v1/executions/{id}",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses(
        (status = 200, description = "Cancelled", body = ExecutionView),
        (status = 404, description = "No such execution", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "It already ended", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn cancel(
    State(state): Shared,
    Path(id): Path<String>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let record = state.runtime.cancel(&execution_id(&id)?).await?;
    Ok(format.reply(StatusCode::OK, &ExecutionView::from(record)))
}

/// An execution's journal, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/journal",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id"), JournalParams),
    responses(
        (status = 200, body = JournalPage),
        (status = 404, description = "No such execution", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn journal(
    State(state): Shared,
    Path(id): Path<String>,
    Query(params): Query<JournalParams>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let limit = page_limit("limit", params.limit)?;
    let journal = state.runtime.journal(&execution_id(&id)?).await?;
    let total = journal.len() as u64;
    let from = params.after.unwrap_or(0).min(total);
    let entries: Vec<EntryView> = journal
        .iter()
        .enumerate()
        .skip(from as usize)
        .take(limit)
        .map(|(i, e)| entry_view(i as u64, e))
        .collect();
    let end = from + entries.len() as u64;
    Ok(format.reply(
        StatusCode::OK,
        &JournalPage {
            entries,
            total,
            next_after: (end < total).then_some(end),
        },
    ))
}

/// Read an execution's output stream, a batch at a time or live.
///
/// Returns up to `max` items emitted after offset `after`. With `wait`,
/// and nothing to return yet, waits for an item or the end. A batch with
/// `end` set is the last; a failed workflow's items all come before its
/// error.
///
/// With `Accept: application/x-ndjson` the reply is live: one line per
/// item (`{"offset","item"}`), `{"heartbeat":true}` lines while nothing
/// happens, and a last `{"end":{...}}` line. With `Accept:
/// text/event-stream` it is server-sent events: `item` events whose id is
/// the offset (an EventSource that reconnects with `Last-Event-ID`
/// resumes right after it), then an `end` event, or an `error` event for
/// a failed workflow.
///
/// Reading a streaming execution records, in a consumer session, how far
/// the consumer has read (see the `sessions` routes).
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/items",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ItemsParams),
    responses(
        (status = 200, body = ItemsBatch),
        (status = 404, description = "No such execution", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn items(
    State(state): Shared,
    Path(id): Path<String>,
    Query(params): Query<ItemsParams>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let id = execution_id(&id)?;
    let max = page_limit("max", params.max)?;
    let wait = wait_param(params.wait.as_deref())?.unwrap_or(Duration::ZERO);
    let live = Live::asked(&headers);
    let mut after = params.after;
    if live == Some(Live::Sse)
        && let Some(last) = headers.get("last-event-id")
    {
        // A reconnecting EventSource: resume right after the last item seen.
        let text = last.to_str().unwrap_or_default();
        after = Some(text.trim().parse().map_err(|_| {
            Problem::bad_request(format!(
                "Last-Event-ID {text:?} is not an item offset (a whole number)"
            ))
        })?);
    }
    let record = state.runtime.status(&id).await?;
    let session = match params.session {
        Some(s) => Some(session_id(&s)?),
        None if record.stream.is_some() => Some(new_session_id()),
        None => None,
    };
    if let Some(s) = &session {
        state.runtime.touch_session(&id, s, after).await?;
    }
    if let Some(live) = live {
        let pieces = live_pieces(state.clone(), id, after, max, session.clone());
        let mut response = match live {
            Live::Ndjson => ndjson_response(pieces),
            Live::Sse => sse_response(pieces),
        };
        set_session_header(&mut response, session.as_deref());
        return Ok(response);
    }
    let deadline = tokio::time::Instant::now() + cap_wait(wait, state.config.request_timeout);
    let mut record = record;
    loop {
        // The record first: items are written before the execution ends,
        // so once it has ended, every item is in the store.
        let page = state.runtime.items(&id, after, max).await?;
        let ended = record.status.is_terminal();
        if !page.items.is_empty() || ended || tokio::time::Instant::now() >= deadline {
            let next_after = page.items.last().map(|(o, _)| *o).or(after);
            let read_all = next_after.map_or(0, |o| o + 1) >= page.count;
            let batch = ItemsBatch {
                items: page
                    .items
                    .iter()
                    .map(|(offset, bytes)| ItemView {
                        offset: *offset,
                        item: payload_json(bytes),
                    })
                    .collect(),
                next_after,
                count: page.count,
                end: (ended && read_all).then(|| stream_end(&record)),
                session: session.clone(),
            };
            let mut response = format.reply(StatusCode::OK, &batch);
            set_session_header(&mut response, session.as_deref());
            return Ok(response);
        }
        // Wait for the journal to grow (an emit is a journal entry) or the
        // end, then look again.
        let seen = record.journal_len;
        let grew = state
            .runtime
            .wait_until(&id, |r| r.journal_len > seen || r.status.is_terminal());
        let _ = tokio::time::timeout_at(deadline, grew).await;
        record = state.runtime.status(&id).await?;
    }
}

pub use reprise_api::SESSION_HEADER;

fn set_session_header(response: &mut Response, session: Option<&str>) {
    if let Some(v) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
}

/// How a stream ended, from its record (which has ended).
fn stream_end(record: &ExecutionRecord) -> StreamEnd {
    let error = match &record.outcome {
        Some(Outcome::Failed(f)) => Some(error_view(f)),
        _ => None,
    };
    StreamEnd {
        status: wire_status(record.status),
        error,
    }
}

fn session_id(text: &str) -> Result<String, Problem> {
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(text.to_string())
    } else {
        Err(Problem::bad_request(format!(
            "session {text:?} is not a session id: 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

fn new_session_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// A live response to a read of the output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Live {
    /// `application/x-ndjson`: one JSON object per line.
    Ndjson,
    /// `text/event-stream`: server-sent events.
    Sse,
}

impl Live {
    fn asked(headers: &HeaderMap) -> Option<Self> {
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect::<Vec<_>>();
        if accept.iter().any(|m| m == "text/event-stream") {
            Some(Self::Sse)
        } else if accept.iter().any(|m| m == "application/x-ndjson") {
            Some(Self::Ndjson)
        } else {
            None
        }
    }
}

/// What a live read sends.
enum Piece {
    Item(u64, Vec<u8>),
    End(StreamEnd),
    /// Nothing new for a while: tells the client (and the session) that
    /// the reader is still there.
    Heartbeat,
}

/// Where a live read stands.
struct LiveRead {
    state: std::sync::Arc<AppState>,
    id: ExecutionId,
    after: Option<u64>,
    max: usize,
    session: Option<String>,
    ready: std::collections::VecDeque<(u64, Vec<u8>)>,
    /// The handler has just touched the session: no need before the first
    /// batch.
    fresh: bool,
    done: bool,
}

/// What a live read waits for between batches.
enum Woke {
    Grew,
    Quiet,
    Stop,
}

/// The items after `after`, as they are emitted, then the end. Each batch
/// is read only once the previous one has gone out to the client (the
/// body is polled as the connection takes it), and that read records, in
/// the session, that the consumer has seen the previous batch: so a client
/// that stops reading stops acknowledging, and the window holds the
/// producer back. The read ends when the host shuts down or the session is
/// closed; a dropped connection leaves the session to expire, so a client
/// may reconnect and go on.
fn live_pieces(
    state: std::sync::Arc<AppState>,
    id: ExecutionId,
    after: Option<u64>,
    max: usize,
    session: Option<String>,
) -> impl futures_util::Stream<Item = Piece> + Send {
    let read = LiveRead {
        state,
        id,
        after,
        max,
        session,
        ready: Default::default(),
        fresh: true,
        done: false,
    };
    futures_util::stream::unfold(read, |mut r| async move {
        loop {
            if r.done {
                return None;
            }
            if let Some((offset, item)) = r.ready.pop_front() {
                r.after = Some(offset);
                return Some((Piece::Item(offset, item), r));
            }
            // What went out is read; and a heartbeat keeps the session
            // alive while nothing happens.
            if let Some(s) = &r.session
                && !r.fresh
            {
                match r.state.runtime.touch_session(&r.id, s, r.after).await {
                    Ok(_) => {}
                    Err(RuntimeError::SessionClosed(_)) => return None,
                    Err(e) => tracing::debug!(execution = %r.id, "cannot touch the session: {e}"),
                }
            }
            r.fresh = false;
            let Ok(record) = r.state.runtime.status(&r.id).await else {
                return None;
            };
            let Ok(page) = r.state.runtime.items(&r.id, r.after, r.max).await else {
                return None;
            };
            if !page.items.is_empty() {
                r.ready.extend(page.items);
                continue;
            }
            if record.status.is_terminal() && r.after.map_or(0, |o| o + 1) >= page.count {
                r.done = true;
                return Some((Piece::End(stream_end(&record)), r));
            }
            let seen = record.journal_len;
            let quiet = r.state.runtime.stream_config().session_ttl / 3;
            let mut shutdown = r.state.shutting_down.subscribe();
            let woke = tokio::select! {
                _ = r.state.runtime.wait_until(&r.id, |x| x.journal_len > seen || x.status.is_terminal()) => Woke::Grew,
                _ = tokio::time::sleep(quiet) => Woke::Quiet,
                _ = async move { let _ = shutdown.wait_for(|down| *down).await; } => Woke::Stop,
            };
            match woke {
                Woke::Grew => {}
                Woke::Quiet => return Some((Piece::Heartbeat, r)),
                Woke::Stop => return None,
            }
        }
    })
}

fn ndjson_response(pieces: impl futures_util::Stream<Item = Piece> + Send + 'static) -> Response {
    use futures_util::StreamExt;
    let lines = pieces.map(|piece| {
        let value = match piece {
            Piece::Item(offset, bytes) => serde_json::json!({
                "offset": offset,
                "item": payload_json(&bytes),
            }),
            Piece::End(end) => serde_json::json!({ "end": end }),
            Piece::Heartbeat => serde_json::json!({ "heartbeat": true }),
        };
        let mut line = serde_json::to_vec(&value).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let mut response = Response::new(axum::body::Body::from_stream(lines));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn sse_response(pieces: impl futures_util::Stream<Item = Piece> + Send + 'static) -> Response {
    use axum::response::IntoResponse;
    use axum::response::sse::{Event, Sse};
    use futures_util::StreamExt;
    let events = pieces.map(|piece| {
        let event = match piece {
            Piece::Item(offset, bytes) => Event::default()
                .id(offset.to_string())
                .event("item")
                .data(payload_json(&bytes).to_string()),
            Piece::End(end) => {
                let kind = if end.error.is_some() { "error" } else { "end" };
                Event::default()
                    .event(kind)
                    .data(serde_json::to_string(&end).unwrap_or_default())
            }
            Piece::Heartbeat => Event::default().comment("heartbeat"),
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    Sse::new(events).into_response()
}

/// Open a consumer session on an execution's output stream.
///
/// Reads that carry the session (`?session=`) record how far the consumer
/// has read; a streaming execution runs at most its window ahead of its
/// slowest live consumer. A read without a session opens one, so this is
/// only needed to hold the stream before the first read.
#[utoipa::path(
    post,
    path = "/v1/executions/{id}/sessions",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses(
        (status = 201, body = SessionView),
        (status = 404, description = "No such execution", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn open_session(
    State(state): Shared,
    Path(id): Path<String>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let id = execution_id(&id)?;
    let s = state
        .runtime
        .touch_session(&id, &new_session_id(), None)
        .await?;
    let view = session_view(&state, s);
    let mut response = format.reply(StatusCode::CREATED, &view);
    set_session_header(&mut response, Some(&view.session));
    Ok(response)
}

/// The consumer sessions of an execution's output stream.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/sessions",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses(
        (status = 200, body = SessionList),
        (status = 404, description = "No such execution", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn list_sessions(
    State(state): Shared,
    Path(id): Path<String>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let id = execution_id(&id)?;
    let sessions = state.runtime.sessions(&id).await?;
    let list = SessionList {
        sessions: sessions
            .into_iter()
            .map(|s| session_view(&state, s))
            .collect(),
    };
    Ok(format.reply(StatusCode::OK, &list))
}

/// Close a consumer session: the consumer is done.
///
/// The session no longer paces the stream. If it was the last live one
/// of an execution started with `on_abandon: cancel`, the execution is
/// cancelled.
#[utoipa::path(
    delete,
    path = "/v1/executions/{id}/sessions/{session}",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("session" = String, Path, description = "Session id")),
    responses(
        (status = 200, body = SessionView),
        (status = 404, description = "No such execution or session", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn close_session(
    State(state): Shared,
    Path((id, session)): Path<(String, String)>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let id = execution_id(&id)?;
    let session = session_id(&session)?;
    let s = state.runtime.close_session(&id, &session).await?;
    Ok(format.reply(StatusCode::OK, &session_view(&state, s)))
}

fn session_view(state: &AppState, s: ConsumerSession) -> SessionView {
    let ttl_ms = state.runtime.stream_config().session_ttl.as_millis() as u64;
    SessionView {
        live: s.is_live(ttl_ms, crate::store::now_ms()),
        session: s.id,
        acked: s.acked,
        last_access_ms: s.last_access_ms,
        closed: s.closed,
    }
}

fn entry_view(index: u64, e: &Entry) -> EntryView {
    EntryView {
        index,
        kind: e.kind.label().to_string(),
        detail: e.kind.detail(),
        at_ms: e.at_ms,
        duration_us: e.duration_us,
        size: e.kind.value_len() as u64,
    }
}

/// Send a signal to an execution.
///
/// It is buffered until the workflow waits for a signal of that name; a
/// signal sent before the wait is never lost.
#[utoipa::path(
    post,
    path = "/v1/executions/{id}/signals/{name}",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("name" = String, Path, description = "Signal name")),
    request_body = SignalRequest,
    responses(
        (status = 202, description = "Delivered", body = SignalAccepted),
        (status = 404, description = "No such execution", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The execution has ended", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn signal(
    State(state): Shared,
    Path((id, name)): Path<(String, String)>,
    format: Format,
    headers: HeaderMap,
    Body(req): Body<SignalRequest>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let id = execution_id(&id)?;
    if name.is_empty() || name.len() > 256 {
        return Err(Problem::bad_request("a signal name has 1 to 256 bytes"));
    }
    let payload = encode_payload(&req.payload)?;
    state.runtime.signal(&id, &name, payload).await?;
    Ok(format.reply(
        StatusCode::ACCEPTED,
        &SignalAccepted {
            id: id.to_string(),
            name,
        },
    ))
}

/// List executions, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/executions",
    tag = "executions",
    params(ListParams),
    responses(
        (status = 200, body = ExecutionList),
        (status = 400, description = "Bad filter or cursor", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn list_executions(
    State(state): Shared,
    Query(params): Query<ListParams>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Invoke)?;
    let limit = page_limit("limit", params.limit)?;
    let status = params
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                Problem::bad_request(format!(
                    "status {s:?} is not one of running, suspended, completed, failed, cancelled"
                ))
            })
        })
        .transpose()?;
    let after = params
        .cursor
        .as_deref()
        .map(|c| {
            c.split_once('-')
                .and_then(|(ms, id)| Some((ms.parse::<u64>().ok()?, id.to_string())))
                .ok_or_else(|| {
                    Problem::bad_request(format!("cursor {c:?} is not one this API gave"))
                })
        })
        .transpose()?;
    let all = state
        .runtime
        .list(params.workflow.as_deref(), status)
        .await?;
    let mut page: Vec<ExecutionRecord> = all
        .into_iter()
        .filter(|r| match &after {
            Some((ms, id)) => (r.created_at_ms, r.id.as_str()) > (*ms, id.as_str()),
            None => true,
        })
        .take(limit + 1)
        .collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let next_cursor = more
        .then(|| page.last())
        .flatten()
        .map(|r| format!("{}-{}", r.created_at_ms, r.id));
    Ok(format.reply(
        StatusCode::OK,
        &ExecutionList {
            executions: page.into_iter().map(ExecutionView::from).collect(),
            next_cursor,
        },
    ))
}

/// Caps a requested wait below the request timeout, so the reply (202)
/// always beats the timeout.
pub fn cap_wait(wait: Duration, request_timeout: Duration) -> Duration {
    wait.min(request_timeout.saturating_sub(Duration::from_secs(1)))
}
