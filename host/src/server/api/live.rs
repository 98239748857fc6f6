//! An output stream read live: NDJSON lines or server-sent events, with
//! heartbeats, until the stream ends or the client goes away.

use super::items::stream_end;
use super::*;

/// A live response to a read of the output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Live {
    /// `application/x-ndjson`: one JSON object per line.
    Ndjson,
    /// `text/event-stream`: server-sent events.
    Sse,
}

impl Live {
    pub(super) fn asked(headers: &HeaderMap) -> Option<Self> {
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
pub(super) enum Piece {
    Item(u64, Vec<u8>),
    End(StreamEnd),
    /// Nothing new for a while: tells the client (and the session) that
    /// the reader is still there.
    Heartbeat,
}

/// Where a live read stands.
pub(super) struct LiveRead {
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
pub(super) enum Woke {
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
pub(super) fn live_pieces(
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
            if record.status.is_terminal()
                && r.after.map_or(0, |o| o.saturating_add(1)) >= page.count
            {
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

pub(super) fn ndjson_response(
    pieces: impl futures_util::Stream<Item = Piece> + Send + 'static,
) -> Response {
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

pub(super) fn sse_response(
    pieces: impl futures_util::Stream<Item = Piece> + Send + 'static,
) -> Response {
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
