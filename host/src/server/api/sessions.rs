//! The consumer sessions of an output stream: open, list, close.

use super::items::{new_session_id, session_id, set_session_header};
use super::*;

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
        (status = 404, description = "No such execution", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn open_session(
    State(state): Shared,
    _: Invoker,
    Path(id): Path<String>,
    format: Format,
) -> Result<Response, Problem> {
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
        (status = 404, description = "No such execution", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn list_sessions(
    State(state): Shared,
    _: Invoker,
    Path(id): Path<String>,
    format: Format,
) -> Result<Response, Problem> {
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
        (status = 404, description = "No such execution or session", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn close_session(
    State(state): Shared,
    _: Invoker,
    Path((id, session)): Path<(String, String)>,
    format: Format,
) -> Result<Response, Problem> {
    let id = execution_id(&id)?;
    let session = session_id(&session)?;
    let s = state.runtime.close_session(&id, &session).await?;
    Ok(format.reply(StatusCode::OK, &session_view(&state, s)))
}

pub(super) fn session_view(state: &AppState, s: ConsumerSession) -> SessionView {
    let ttl_ms = state.runtime.stream_config().session_ttl.as_millis() as u64;
    SessionView {
        live: s.is_live(ttl_ms, crate::store::now_ms()),
        session: s.id,
        acked: s.acked,
        last_access_ms: s.last_access_ms,
        closed: s.closed,
    }
}
