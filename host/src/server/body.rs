//! Request and response bodies: JSON by default, MessagePack when the
//! client says so (`Content-Type` for requests, `Accept` for responses:
//! `application/msgpack`, `application/x-msgpack` or
//! `application/vnd.msgpack`); and the middleware that bounds request
//! bodies before they are read (`declared_length`) and drains what an
//! answered request left unread (`drain_unread`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::problem::Problem;

const MSGPACK: &str = "application/msgpack";

fn is_msgpack(media: &str) -> bool {
    let media = media.split(';').next().unwrap_or("").trim();
    matches!(
        media.to_ascii_lowercase().as_str(),
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack"
    )
}

/// The encoding of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/msgpack`.
    MsgPack,
}

impl Format {
    /// The response format a request asks for with `Accept`.
    pub fn accepted(headers: &HeaderMap) -> Self {
        let wants = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(is_msgpack);
        if wants { Self::MsgPack } else { Self::Json }
    }

    /// `value` in this format, with `status`.
    pub fn reply<T: Serialize>(self, status: StatusCode, value: &T) -> Response {
        let (bytes, media) = match self {
            Self::Json => (
                serde_json::to_vec(value).map_err(|e| e.to_string()),
                "application/json",
            ),
            Self::MsgPack => (
                rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
                MSGPACK,
            ),
        };
        match bytes {
            Ok(bytes) => {
                let mut r = (status, bytes).into_response();
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
                r
            }
            Err(e) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                format!("cannot encode the response: {e}"),
            )
            .into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Format {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::accepted(&parts.headers))
    }
}

/// A request body decoded from JSON or MessagePack by its `Content-Type`.
/// An empty body without a content type decodes as if it were `{}`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_rejection(rejection.status(), rejection.body_text()))?;
        let value = match content_type.as_deref() {
            None if bytes.is_empty() => serde_json::from_slice(b"{}"),
            Some(ct) if is_msgpack(ct) => {
                return rmp_serde::from_slice(&bytes).map(Body).map_err(|e| {
                    Problem::bad_request(format!("the body is not the expected MessagePack: {e}"))
                });
            }
            Some(ct) if is_json(ct) => serde_json::from_slice(&bytes),
            None => {
                return Err(unsupported("none"));
            }
            Some(other) => return Err(unsupported(other)),
        };
        value
            .map(Body)
            .map_err(|e| Problem::bad_request(format!("the body is not the expected JSON: {e}")))
    }
}

fn is_json(media: &str) -> bool {
    let media = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}

fn unsupported(given: &str) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported content type",
        format!(
            "content type {given:?} is not accepted here; send application/json or application/msgpack"
        ),
    )
}

/// The problem for a body axum could not read (too large, broken stream).
pub fn body_rejection(status: StatusCode, text: String) -> Problem {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            status,
            "payload-too-large",
            "The request body is too large",
            format!("{text}; see max_request_bytes and max_component_bytes in the host config"),
        )
    } else {
        Problem::bad_request(format!("cannot read the request body: {text}"))
    }
}

/// Longest an unread request body is drained after the answer was sent.
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// Most bytes of an unread request body drained (and thrown away).
const DRAIN_BYTES: usize = 64 << 20;

/// A request body whose unread rest can be taken back once the handler is
/// done: the handler reads through the shared slot, and reading to the end
/// empties it.
struct Unread(Arc<std::sync::Mutex<Option<axum::body::BodyDataStream>>>);

impl futures_util::Stream for Unread {
    type Item = Result<axum::body::Bytes, axum::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let mut slot = self.0.lock().expect("body slot poisoned");
        let Some(body) = slot.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let next = std::pin::Pin::new(body).poll_next(cx);
        if let std::task::Poll::Ready(None) = next {
            *slot = None;
        }
        next
    }
}

/// After a request was answered without reading its whole body (refused
/// before it: a bad token, a declared length over the limit, a body over
/// it), reads the rest and throws it away, for a bounded time and size,
/// instead of closing at once: a client that sends its body without
/// waiting for `100 Continue` then reads the answer instead of a broken
/// pipe. What is drained is never kept, so it costs no memory; a client
/// that asked for `100 Continue` is not sent it, and nothing is drained.
pub(super) async fn drain_unread(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if !has_body || headers.contains_key(header::EXPECT) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let slot = Arc::new(std::sync::Mutex::new(Some(body.into_data_stream())));
    let req = Request::from_parts(parts, axum::body::Body::from_stream(Unread(slot.clone())));
    let response = next.run(req).await;
    let rest = slot.lock().expect("body slot poisoned").take();
    if let Some(mut rest) = rest {
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut left = DRAIN_BYTES;
            let drain = async {
                while let Some(Ok(chunk)) = rest.next().await {
                    match left.checked_sub(chunk.len()) {
                        Some(l) => left = l,
                        None => return,
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        });
    }
    response
}

/// Refuses a body whose declared `Content-Length` is over `limit` before
/// reading any of it (and before `100 Continue`); a body without one is
/// cut at the limit as it is read.
pub(super) async fn declared_length(
    State(limit): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => body_rejection(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the declared body of {n} bytes is over the limit of {limit} bytes"),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}
