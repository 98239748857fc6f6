//! Extractors that run before any body is read, and rejections in the
//! API's own error format.
//!
//! Axum runs a handler's extractors in order and only the last one may
//! read the body, so a handler that takes [`Invoker`], [`Deployer`] or
//! [`Reader`] (and, for starts, [`Admitted`]) before its body has checked
//! the token and the host's admission before one byte of the body is
//! read, and before `100 Continue` is sent to a client that asked for it.
//! [`Path`] and [`Query`] are axum's, answering `application/problem+json`
//! instead of plain text when the request does not parse.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::config::Scope;
use super::problem::Problem;

/// The request carries a token with the `invoke` scope (or the host has no
/// tokens).
pub struct Invoker;

/// The request carries a token with the `deploy` scope (or the host has no
/// tokens).
pub struct Deployer;

/// The request carries any valid token (or the host has no tokens).
pub struct Reader;

/// The host takes new work: it is not shutting down nor saturated.
pub struct Admitted;

/// Each extractor is one check of the shared state on the request's head.
macro_rules! checked_on_the_head {
    ($($extractor:ident => |$parts:ident, $state:ident| $check:expr;)*) => {$(
        impl FromRequestParts<Arc<AppState>> for $extractor {
            type Rejection = Problem;

            async fn from_request_parts(
                $parts: &mut Parts,
                $state: &Arc<AppState>,
            ) -> Result<Self, Problem> {
                $check.map(|()| Self)
            }
        }
    )*};
}

checked_on_the_head! {
    Invoker => |parts, state| state.authorize(&parts.headers, Scope::Invoke);
    Deployer => |parts, state| state.authorize(&parts.headers, Scope::Deploy);
    Reader => |parts, state| state.authorize_any(&parts.headers);
    Admitted => |_parts, state| state.admit();
}

/// Axum's `Path`, rejected as a problem.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::new(
                rejection.status(),
                "bad-request",
                "Bad request",
                format!("the path does not parse: {}", rejection.body_text()),
            )),
        }
    }
}

/// Axum's `Query`, rejected as a problem.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::bad_request(format!(
                "the query string does not parse: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// The W3C `traceparent` the request carries, if it is valid (a malformed
/// one is ignored, as tracers do): the trace a start continues.
pub struct Traced(pub Option<crate::telemetry::TraceParent>);

impl<S: Send + Sync> FromRequestParts<S> for Traced {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::telemetry::TraceParent::parse),
        ))
    }
}
