//! Reading an execution's output stream a batch at a time (the live
//! forms are in `live`).

use super::live::{Live, live_pieces, ndjson_response, sse_response};
use super::*;

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
/// the consumer has read (see the `sessions` routes); with `observe=true`
/// it records nothing, and the reader is not a consumer.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/items",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ItemsParams),
    responses(
        (status = 200, body = ItemsBatch),
        (status = 404, description = "No such execution", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]))
)]
pub async fn items(
    State(state): Shared,
    _: Invoker,
    Path(id): Path<String>,
    Query(params): Query<ItemsParams>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response, Problem> {
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
        Some(_) if params.observe => {
            return Err(Problem::bad_request(
                "observe=true reads without a session: do not pass `session` with it",
            ));
        }
        Some(s) => Some(session_id(&s)?),
        None if record.stream.is_some() && !params.observe => Some(new_session_id()),
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
            let read_all = next_after.map_or(0, |o| o.saturating_add(1)) >= page.count;
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

pub(super) fn set_session_header(response: &mut Response, session: Option<&str>) {
    if let Some(v) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
}

/// How a stream ended, from its record (which has ended).
pub(super) fn stream_end(record: &ExecutionRecord) -> StreamEnd {
    let error = match &record.outcome {
        Some(Outcome::Failed(f)) => Some(error_view(f)),
        _ => None,
    };
    StreamEnd {
        status: wire_status(record.status),
        error,
    }
}

pub(super) fn session_id(text: &str) -> Result<String, Problem> {
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

pub(super) fn new_session_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}
