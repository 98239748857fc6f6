//! Starting executions, reading their state and journal, signalling and
//! cancelling them, and listing them.

use super::*;
use crate::StoreError;
use crate::runtime::{Children, StartOptions};
use crate::server::extract::Traced;
use crate::store::{ListCursor, ListQuery, Order};

/// Start an execution.
///
/// A W3C `traceparent` header puts the execution's spans in the caller's
/// trace (see the host's `[telemetry]` settings).
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
        (status = 404, description = "No such workflow", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The id is taken by a different start", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "The host is saturated; retry after Retry-After", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
#[expect(
    clippy::too_many_arguments,
    reason = "an axum handler takes each extractor as an argument"
)]
pub async fn start(
    State(state): Shared,
    _: Invoker,
    _: Admitted,
    Path(name): Path<String>,
    Query(params): Query<WaitParams>,
    format: Format,
    Traced(trace): Traced,
    Body(req): Body<StartRequest>,
) -> Result<Response, Problem> {
    let wait = wait_param(params.wait.as_deref())?;
    let id = req.id.as_deref().map(execution_id).transpose()?;
    let input = encode_payload(&req.input)?;
    let stream = req
        .stream
        .map(|o| {
            crate::stream::policy(&o, state.runtime.stream_config())
                .map_err(|e| Problem::bad_request(e.to_string()))
        })
        .transpose()?;
    let options = StartOptions { id, stream, trace };
    let (id, record) = match wait {
        Some(w) if !w.is_zero() => {
            let (id, settled) = state
                .runtime
                .start_and_wait_settled(&name, input, options)
                .await?;
            let record = state.wait_for(&id, w, settled).await?;
            (id, record)
        }
        _ => {
            let id = state
                .runtime
                .start_with_options(&name, input, options)
                .await?;
            let record = state.runtime.status(&id).await?;
            (id, record)
        }
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
        (status = 404, description = "No such execution", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn get_execution(
    State(state): Shared,
    _: Invoker,
    Path(id): Path<String>,
    Query(params): Query<WaitParams>,
    format: Format,
) -> Result<Response, Problem> {
    let wait = wait_param(params.wait.as_deref())?;
    let id = execution_id(&id)?;
    let record = match wait {
        Some(w) if !w.is_zero() => state.wait_settled(&id, w).await?,
        _ => state.runtime.status(&id).await?,
    };
    let input = payload_json(&record.input);
    let mut view = ExecutionView::from(record);
    view.input = Some(input);
    for child in state.runtime.children(&id).await? {
        match state.runtime.status(&child).await {
            Ok(c) => view.children.push(ChildView {
                id: c.id.to_string(),
                workflow: c.workflow,
                status: super::wire_status(c.status),
            }),
            // Deleted by retention, or (after a crash) never created.
            Err(RuntimeError::Store(StoreError::NotFound(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    view.retrying = state
        .runtime
        .retrying(&id)
        .into_iter()
        .map(|c| RetryingView {
            tool: format!("{}/{}", c.category, c.name),
            index: c.index,
            attempts: c.attempts,
            last_error: ToolErrorView {
                code: c.last_error.code,
                message: c.last_error.message,
            },
            next_attempt_at_ms: c.next_attempt_at_ms,
            failing_since_ms: c.failing_since_ms,
        })
        .collect();
    Ok(format.reply(StatusCode::OK, &view))
}

/// Cancel an execution.
///
/// The guest is not run again; a running invocation stops at its next
/// journal write. The cancellation is recorded as the outcome. Its
/// unfinished child executions are cancelled too, unless
/// `keep_children=true`. Cancelling an execution that already ended is a
/// 409.
#[utoipa::path(
    delete,
    path = "/v1/executions/{id}",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id"), CancelParams),
    responses(
        (status = 200, description = "Cancelled", body = ExecutionView),
        (status = 404, description = "No such execution", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "It already ended", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn cancel(
    State(state): Shared,
    _: Invoker,
    Path(id): Path<String>,
    Query(params): Query<CancelParams>,
    format: Format,
) -> Result<Response, Problem> {
    let children = match params.keep_children {
        true => Children::Keep,
        false => Children::Cancel,
    };
    let record = state
        .runtime
        .cancel_with(&execution_id(&id)?, children)
        .await?;
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
        (status = 404, description = "No such execution", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn journal(
    State(state): Shared,
    _: Invoker,
    Path(id): Path<String>,
    Query(params): Query<JournalParams>,
    format: Format,
) -> Result<Response, Problem> {
    let limit = page_limit("limit", params.limit)?;
    let from = params.after.unwrap_or(0);
    let page = state
        .runtime
        .journal_page(&execution_id(&id)?, from, limit)
        .await?;
    let total = page.total;
    let entries: Vec<EntryView> = (from..)
        .zip(&page.entries)
        .map(|(i, e)| super::values::entry_view(i, e, params.values))
        .collect();
    let end = from.min(total) + entries.len() as u64;
    Ok(format.reply(
        StatusCode::OK,
        &JournalPage {
            entries,
            total,
            next_after: (end < total).then_some(end),
        },
    ))
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
        (status = 404, description = "No such execution", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The execution has ended", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn signal(
    State(state): Shared,
    _: Invoker,
    Path((id, name)): Path<(String, String)>,
    format: Format,
    Body(req): Body<SignalRequest>,
) -> Result<Response, Problem> {
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

/// List executions a page at a time, newest first by the time of their
/// last status change. The store reads only the page, through its
/// indexes, however many executions it keeps.
#[utoipa::path(
    get,
    path = "/v1/executions",
    tag = "executions",
    params(ListParams),
    responses(
        (status = 200, body = ExecutionList),
        (status = 400, description = "Bad filter or cursor", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn list_executions(
    State(state): Shared,
    _: Invoker,
    Query(params): Query<ListParams>,
    format: Format,
) -> Result<Response, Problem> {
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
            ListCursor::parse(c).ok_or_else(|| {
                Problem::bad_request(format!("cursor {c:?} is not one this API gave"))
            })
        })
        .transpose()?;
    let order = match params.order.as_deref() {
        None | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(o) => {
            return Err(Problem::bad_request(format!(
                "order {o:?} is not one of newest, oldest"
            )));
        }
    };
    if let Some(w) = &params.workflow
        && (w.is_empty() || w.len() > 256)
    {
        return Err(Problem::bad_request("a workflow name has 1 to 256 bytes"));
    }
    for (name, t) in [
        ("changed_since_ms", params.changed_since_ms),
        ("changed_before_ms", params.changed_before_ms),
    ] {
        if let Some(t) = t
            && t > reprise_api::MAX_LIST_TIME_MS
        {
            return Err(Problem::bad_request(format!(
                "{name} {t} is out of range: use 0 to {} (ms since the Unix epoch)",
                reprise_api::MAX_LIST_TIME_MS
            )));
        }
    }
    let page = state
        .runtime
        .list_page(&ListQuery {
            status,
            workflow: params.workflow,
            changed_since_ms: params.changed_since_ms,
            changed_before_ms: params.changed_before_ms,
            after,
            order,
            limit,
        })
        .await?;
    let next_cursor = page.next.map(|c| c.encode());
    let page = page.executions;
    Ok(format.reply(
        StatusCode::OK,
        &ExecutionList {
            executions: page.into_iter().map(ExecutionView::from).collect(),
            next_cursor,
        },
    ))
}
