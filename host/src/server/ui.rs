//! The dashboard at `/ui`: three static files embedded in the binary
//! (`ui/index.html`, `ui/app.js`, `ui/style.css`: plain modules, no build
//! step, so nothing but this crate is needed to serve them).
//!
//! The files hold no data and are served without a token; everything the
//! page shows it reads from `/v1` with the token the user enters, so the
//! dashboard can see and do exactly what that token can, never more. The
//! content security policy allows only this origin's scripts, styles and
//! API, and the page builds its DOM from text, never from HTML, so a value
//! a workflow returns cannot run as script.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let digest = hex::encode(&Sha256::digest(self.body.as_bytes())[..12]);
            HeaderValue::from_str(&format!("\"{digest}\"")).expect("hex is a valid header")
        })
    }

    /// The file, or 304 when the browser has this version. `no-cache`: it
    /// checks on every load, so a host upgrade shows at once.
    fn serve(&self, headers: &HeaderMap) -> Response {
        let etag = self.etag().clone();
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes());
        let common = [
            (header::ETAG, etag),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        let mut response = (common, self.body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        response
    }
}

/// Only this origin, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

static INDEX: Asset = Asset::new(include_str!("ui/index.html"), "text/html; charset=utf-8");
static APP: Asset = Asset::new(include_str!("ui/app.js"), "text/javascript; charset=utf-8");
static STYLE: Asset = Asset::new(include_str!("ui/style.css"), "text/css; charset=utf-8");

/// The dashboard's routes; `/` leads to it.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|h: HeaderMap| async move { INDEX.serve(&h) }))
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { APP.serve(&h) }),
        )
        .route(
            "/ui/style.css",
            get(|h: HeaderMap| async move { STYLE.serve(&h) }),
        )
}
