//! Errors as `application/problem+json` (RFC 9457).
//!
//! Every error the API returns has a stable `type`
//! (`urn:reprise:problem:<kind>`) that clients branch on, a short `title`
//! per type, and a `detail` that says what was wrong with this request.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::runtime::RuntimeError;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    /// Stable identifier of the kind of problem, e.g.
    /// `urn:reprise:problem:unknown-workflow`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What was wrong with this request.
    pub detail: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// An error response.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<u64>,
    bearer_challenge: bool,
}

impl Problem {
    /// A problem of `kind` (the last part of its `type`).
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            retry_after: None,
            bearer_challenge: false,
        }
    }

    /// Adds `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400 `bad-request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is malformed",
            detail,
        )
    }

    /// 401 `unauthorized`, with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or invalid bearer token",
            detail,
        );
        p.bearer_challenge = true;
        p
    }

    /// 404 `not-found` for a path no route serves.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such resource",
            format!("nothing is served at {path}; the API is under /v1 (see /v1/openapi.json)"),
        )
    }

    /// 503 `shutting-down`.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "The host is shutting down",
            "this host is shutting down and takes no new work; retry on another host",
        )
        .retry_after(1)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The full `type` URI.
    pub fn type_uri(&self) -> String {
        format!("urn:reprise:problem:{}", self.kind)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: self.type_uri(),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            instance: None,
        };
        let json = serde_json::to_vec(&body).expect("a problem always serializes");
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read, so the connection cannot
            // carry another request: say so, or a client that reuses it
            // sees its next request cut off.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.bearer_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"reprise\""),
            );
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        let detail = e.to_string();
        match e {
            StoreError::NotFound(_) => Self::new(
                StatusCode::NOT_FOUND,
                "execution-not-found",
                "No such execution",
                detail,
            ),
            StoreError::Terminal { .. } => Self::new(
                StatusCode::CONFLICT,
                "execution-ended",
                "The execution has ended",
                detail,
            ),
            StoreError::Active { .. } => Self::new(
                StatusCode::CONFLICT,
                "execution-active",
                "The execution has not ended",
                detail,
            ),
            StoreError::Unavailable(_) | StoreError::LeaseHeld { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The journal store is unavailable",
                detail,
            )
            .retry_after(1),
            StoreError::LeaseLost(_)
            | StoreError::Conflict { .. }
            | StoreError::Invalid(_)
            | StoreError::Corrupt(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store-error",
                "The journal store failed",
                detail,
            ),
        }
    }
}

impl From<RuntimeError> for Problem {
    fn from(e: RuntimeError) -> Self {
        let detail = e.to_string();
        match e {
            RuntimeError::UnknownWorkflow(_) => Self::new(
                StatusCode::NOT_FOUND,
                "unknown-workflow",
                "No such workflow",
                detail,
            ),
            RuntimeError::InvalidName(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-name",
                "Invalid workflow name",
                detail,
            ),
            RuntimeError::InvalidId(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-id",
                "Invalid execution id",
                detail,
            ),
            RuntimeError::IdConflict(_) => Self::new(
                StatusCode::CONFLICT,
                "id-conflict",
                "The execution id is taken",
                detail,
            ),
            RuntimeError::Compile(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-component",
                "The component cannot be deployed",
                detail,
            ),
            RuntimeError::ReservedSignal(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "reserved-signal",
                "Reserved signal name",
                detail,
            ),
            RuntimeError::SessionClosed(_) => Self::new(
                StatusCode::GONE,
                "session-closed",
                "The consumer session is closed",
                detail,
            ),
            RuntimeError::NoSession(_) => Self::new(
                StatusCode::NOT_FOUND,
                "no-session",
                "No such consumer session",
                detail,
            ),
            RuntimeError::Store(e) => e.into(),
            RuntimeError::Queue(q) if q.is_retriable() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The journal store is unavailable",
                detail,
            )
            .retry_after(1),
            RuntimeError::Queue(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store-error",
                "The journal store failed",
                detail,
            ),
            RuntimeError::Internal(_) | RuntimeError::NoAsyncRuntime => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "The host failed",
                detail,
            ),
        }
    }
}
