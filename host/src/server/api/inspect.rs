//! Looking at executions: counts by status (the dashboard's live counts),
//! and an execution replayed in a sandbox up to an entry (its time-travel
//! view).

use std::time::Duration;

use super::*;
use crate::runtime::{ReplayStop, Runtime};

pub use reprise_api::{LogLineView, ReplayParams, ReplayView, StatusCounts};

/// How long counts are reused: a dashboard polling every few seconds from
/// many browsers costs one count a second.
const COUNTS_MAX_AGE: Duration = Duration::from_secs(1);

/// Executions by status.
///
/// Counted through the store's indexes (no record is read), at most once a
/// second for all callers.
#[utoipa::path(
    get,
    path = "/v1/counts",
    tag = "executions",
    responses((status = 200, body = StatusCounts)),
    security(("bearer" = ["invoke"]))
)]
pub async fn counts(State(state): Shared, _: Invoker, format: Format) -> Result<Response, Problem> {
    let (counts, at_ms) = state.counts(COUNTS_MAX_AGE).await?;
    let n = |s: Status| counts.get(&s).copied().unwrap_or(0);
    Ok(format.reply(
        StatusCode::OK,
        &StatusCounts {
            running: n(Status::Running),
            suspended: n(Status::Suspended),
            completed: n(Status::Completed),
            failed: n(Status::Failed),
            cancelled: n(Status::Cancelled),
            at_ms,
        },
    ))
}

/// Replay an execution in a sandbox up to an entry.
///
/// Runs the execution's own component version again over journal entries
/// `0..to` and returns what the workflow logged on the way, each line with
/// the entry it came after. Nothing runs for real: the sandbox has no
/// tools, may not write to the store, and stops at the first call past the
/// entries it replays. Bounded like any invocation (memory, time without
/// progress, an instance slot: 503 when none is free).
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/replay",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ReplayParams),
    responses(
        (status = 200, body = ReplayView),
        (status = 404, description = "No such execution", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn replay(
    State(state): Shared,
    _: Invoker,
    Path(id): Path<String>,
    Query(params): Query<ReplayParams>,
    format: Format,
) -> Result<Response, Problem> {
    let id = execution_id(&id)?;
    if params.to > reprise_api::MAX_REPLAY_TO {
        return Err(Problem::bad_request(format!(
            "to {} is out of range: use 0 to {}",
            params.to,
            reprise_api::MAX_REPLAY_TO
        )));
    }
    let view = replay_view(&state.runtime, &id, params.to).await?;
    Ok(format.reply(StatusCode::OK, &view))
}

/// The replay of `id` up to `to`, as the API shows it.
pub async fn replay_view(
    runtime: &Runtime,
    id: &ExecutionId,
    to: u64,
) -> Result<ReplayView, RuntimeError> {
    let report = runtime.replay_to(id, to).await?;
    let (stop, result, error) = match &report.stop {
        ReplayStop::Reached => ("reached", None, None),
        ReplayStop::Ended(Outcome::Completed(bytes)) => {
            ("completed", Some(payload_json(bytes)), None)
        }
        ReplayStop::Ended(Outcome::Failed(f)) => ("failed", None, Some(error_view(f))),
        // A sandbox is never cancelled; shown as what it is if it were.
        ReplayStop::Ended(Outcome::Cancelled) => ("cancelled", None, None),
    };
    Ok(ReplayView {
        replayed: report.replayed,
        total: report.total,
        stop: stop.into(),
        result,
        error,
        log: report
            .log
            .into_iter()
            .map(|l| LogLineView {
                after: l.after,
                level: l.level.into(),
                message: l.message,
            })
            .collect(),
    })
}
