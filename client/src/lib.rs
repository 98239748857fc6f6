//! A typed client of a Reprise host's HTTP API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), reprise_client::Error> {
//! use futures_util::StreamExt;
//! use reprise_client::{Client, Start};
//!
//! let client = Client::new("http://127.0.0.1:8080");
//! let exec = client
//!     .start("producer", &serde_json::json!({"n": 10}), Start::stream())
//!     .await?;
//! let mut items = client.stream::<serde_json::Value>(&exec.id);
//! while let Some(item) = items.next().await {
//!     println!("{}", item?);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`Client::stream`] reads an execution's output stream in batches: one
//! batch is fetched ahead while the caller works through the current one,
//! a dropped connection is retried from the last offset read, and dropping
//! the stream closes its consumer session, which (for a stream started with
//! `on_abandon: cancel`) cancels the producer once no consumer is left.

#![deny(missing_docs)]

mod stream;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use reprise_api as api;
pub use reprise_api::{
    DeploymentView, EntryView, ErrorView, ExecutionList, ExecutionStatus, ExecutionView,
    FailureKind, JournalPage, ListParams, OnAbandon, SessionList, SessionView, SignalAccepted,
    WaitKind, WaitView, WorkflowList, WorkflowView,
};
pub use stream::{ItemStream, StreamOptions};

/// What can go wrong talking to a host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host could not be reached, or the connection broke.
    #[error("cannot reach the host: {}", error_chain(.0))]
    Http(#[from] reqwest::Error),
    /// The host refused the request (an RFC 9457 problem).
    #[error("{title} ({status}): {detail}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Problem type, e.g. `urn:reprise:problem:execution-not-found`
        /// (empty if the reply was not a problem document).
        kind: String,
        /// Short summary.
        title: String,
        /// What happened (the reply's body if it was not a problem).
        detail: String,
    },
    /// A reply (or an item) did not have the expected shape.
    #[error("unexpected reply: {0}")]
    Decode(String),
    /// The workflow failed; every item it emitted came before this.
    #[error("the workflow failed ({kind}): {message}")]
    Failed {
        /// The cause.
        kind: FailureKind,
        /// What happened.
        message: String,
        /// For a `workflow-error`: the workflow's code.
        code: Option<String>,
        /// For a `workflow-error`: its details, as JSON.
        details: Option<serde_json::Value>,
    },
    /// The execution was cancelled before its stream ended.
    #[error("the execution was cancelled")]
    Cancelled,
}

impl Error {
    /// Whether retrying later may succeed (the host was unreachable, or
    /// answered 5xx / 429).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http(_) => true,
            Error::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own message leaves
/// out why a connection failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Options of [`Client::start`].
#[derive(Clone, Debug, Default)]
pub struct Start {
    /// Execution id; starting twice with one id starts once.
    pub id: Option<String>,
    /// Start as a stream paced by its consumers.
    pub stream: Option<api::StreamOptions>,
    /// Wait up to this long (capped by the host below its request
    /// timeout) for the execution to settle before the reply.
    pub wait: Option<Duration>,
    /// A W3C `traceparent`: the execution's spans continue this trace.
    pub traceparent: Option<String>,
}

impl Start {
    /// A streaming start with the host's defaults.
    pub fn stream() -> Self {
        Self {
            stream: Some(api::StreamOptions::default()),
            ..Self::default()
        }
    }

    /// Sets the execution id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the stream window (makes this a streaming start).
    pub fn window(mut self, window: u64) -> Self {
        self.stream.get_or_insert_with(Default::default).window = Some(window);
        self
    }

    /// Bounds the window in bytes too (makes this a streaming start).
    pub fn window_bytes(mut self, bytes: u64) -> Self {
        self.stream
            .get_or_insert_with(Default::default)
            .window_bytes = Some(bytes);
        self
    }

    /// Sets what happens when every consumer left (makes this a streaming
    /// start).
    pub fn on_abandon(mut self, on_abandon: OnAbandon) -> Self {
        self.stream.get_or_insert_with(Default::default).on_abandon = Some(on_abandon);
        self
    }

    /// Waits up to `wait` for the execution to settle (see
    /// [`ExecutionView::is_settled`]) before replying.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }
}

/// Longest `?wait=` one request asks for: below the host's default request
/// timeout (60 s), so a long wait is several requests.
const MAX_WAIT_PER_REQUEST: Duration = Duration::from_secs(20);

/// `?wait=` for up to `left`, at most [`MAX_WAIT_PER_REQUEST`].
fn wait_param(left: Duration) -> String {
    format!("{}ms", left.min(MAX_WAIT_PER_REQUEST).as_millis())
}

/// A client of one host. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the host at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Below the host's `header_timeout` (10 s by default), after
            // which it closes an idle connection: reusing one it is closing
            // would fail the request.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("a default HTTP client builds");
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            token: None,
            http,
        }
    }

    /// Sends `token` as a bearer token with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The host's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let resp = req.header("accept", "application/json").send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
            return Err(Error::Api {
                status: status.as_u16(),
                kind: text("type"),
                title: match text("title") {
                    t if t.is_empty() => "the host refused the request".to_string(),
                    t => t,
                },
                detail: match text("detail") {
                    d if d.is_empty() => String::from_utf8_lossy(&bytes).trim().to_string(),
                    d => d,
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Deploys `component` (a wasm component's bytes) as workflow `name`.
    pub async fn deploy(&self, name: &str, component: Vec<u8>) -> Result<DeploymentView, Error> {
        let req = self
            .request(reqwest::Method::PUT, &format!("/v1/workflows/{name}"))
            .header("content-type", "application/wasm")
            .body(component);
        self.send(req).await
    }

    /// The deployed workflows, each at its current version.
    pub async fn workflows(&self) -> Result<WorkflowList, Error> {
        self.send(self.request(reqwest::Method::GET, "/v1/workflows"))
            .await
    }

    /// Workflow `name` with every version deployed under it.
    pub async fn workflow(&self, name: &str) -> Result<WorkflowView, Error> {
        self.send(self.request(reqwest::Method::GET, &format!("/v1/workflows/{name}")))
            .await
    }

    /// Starts workflow `workflow` on `input`.
    pub async fn start(
        &self,
        workflow: &str,
        input: &impl Serialize,
        options: Start,
    ) -> Result<ExecutionView, Error> {
        #[derive(Serialize)]
        struct Body<'a, I: Serialize> {
            input: &'a I,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            stream: Option<api::StreamOptions>,
        }
        let mut req = self.request(
            reqwest::Method::POST,
            &format!("/v1/workflows/{workflow}/executions"),
        );
        if let Some(wait) = options.wait.filter(|w| !w.is_zero()) {
            req = req.query(&[("wait", wait_param(wait))]);
        }
        if let Some(tp) = &options.traceparent {
            req = req.header("traceparent", tp);
        }
        let body = Body {
            input,
            id: options.id,
            stream: options.stream,
        };
        self.send(req.json(&body)).await
    }

    /// An execution's state.
    pub async fn status(&self, id: &str) -> Result<ExecutionView, Error> {
        self.send(self.request(reqwest::Method::GET, &format!("/v1/executions/{id}")))
            .await
    }

    /// Waits up to `wait` for the execution to settle (finish, or wait for
    /// a signal or its consumers: see [`ExecutionView::is_settled`]) and
    /// returns its state then. The host holds each request until the
    /// execution settles (`?wait=`), so this costs a request per 20 s, not
    /// a poll loop.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<ExecutionView, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut req = self.request(reqwest::Method::GET, &format!("/v1/executions/{id}"));
            if !left.is_zero() {
                req = req.query(&[("wait", wait_param(left))]);
            }
            let exec: ExecutionView = self.send(req).await?;
            if exec.is_settled() || tokio::time::Instant::now() >= deadline {
                return Ok(exec);
            }
        }
    }

    /// A page of executions (newest filters and paging in `params`).
    pub async fn list(&self, params: &ListParams) -> Result<ExecutionList, Error> {
        self.send(
            self.request(reqwest::Method::GET, "/v1/executions")
                .query(params),
        )
        .await
    }

    /// Every execution matching `params`' filters, fetched a page at a time.
    pub async fn list_all(&self, params: &ListParams) -> Result<Vec<ExecutionView>, Error> {
        let mut params = params.clone();
        let mut all = Vec::new();
        loop {
            let page = self.list(&params).await?;
            all.extend(page.executions);
            match page.next_cursor {
                Some(c) => params.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// A page of an execution's journal: up to `limit` entries from index
    /// `after` on.
    pub async fn journal(&self, id: &str, after: u64, limit: usize) -> Result<JournalPage, Error> {
        self.journal_page(
            id,
            &api::JournalParams {
                after: Some(after),
                limit: Some(limit),
                values: false,
            },
        )
        .await
    }

    /// A page of an execution's journal, as `params` asks (with
    /// `values`, each entry's input and value).
    pub async fn journal_page(
        &self,
        id: &str,
        params: &api::JournalParams,
    ) -> Result<JournalPage, Error> {
        self.send(
            self.request(
                reqwest::Method::GET,
                &format!("/v1/executions/{id}/journal"),
            )
            .query(params),
        )
        .await
    }

    /// An execution's whole journal, fetched a page at a time.
    pub async fn journal_all(&self, id: &str) -> Result<Vec<EntryView>, Error> {
        self.journal_all_with(id, false).await
    }

    /// [`Client::journal_all`], with each entry's input and value when
    /// `values` is set.
    pub async fn journal_all_with(&self, id: &str, values: bool) -> Result<Vec<EntryView>, Error> {
        let mut entries = Vec::new();
        let mut after = 0;
        loop {
            let params = api::JournalParams {
                after: Some(after),
                limit: Some(1000),
                values,
            };
            let page = self.journal_page(id, &params).await?;
            entries.extend(page.entries);
            match page.next_after {
                Some(next) => after = next,
                None => return Ok(entries),
            }
        }
    }

    /// Sends signal `name` with `payload`.
    pub async fn signal(
        &self,
        id: &str,
        name: &str,
        payload: &impl Serialize,
    ) -> Result<SignalAccepted, Error> {
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/executions/{id}/signals/{name}"),
            )
            .json(&serde_json::json!({ "payload": payload }));
        self.send(req).await
    }

    /// Cancels an execution.
    pub async fn cancel(&self, id: &str) -> Result<ExecutionView, Error> {
        self.cancel_with(id, false).await
    }

    /// Cancels an execution; with `keep_children`, its unfinished child
    /// executions are left running instead of cancelled with it.
    pub async fn cancel_with(&self, id: &str, keep_children: bool) -> Result<ExecutionView, Error> {
        let path = match keep_children {
            true => format!("/v1/executions/{id}?keep_children=true"),
            false => format!("/v1/executions/{id}"),
        };
        self.send(self.request(reqwest::Method::DELETE, &path))
            .await
    }

    /// The execution's output stream, item by item, decoded as `T`, read in
    /// batches with [`StreamOptions::default`].
    pub fn stream<T: DeserializeOwned + Send + 'static>(&self, id: &str) -> ItemStream<T> {
        self.stream_with(id, StreamOptions::default())
    }

    /// [`Client::stream`] with options.
    pub fn stream_with<T: DeserializeOwned + Send + 'static>(
        &self,
        id: &str,
        options: StreamOptions,
    ) -> ItemStream<T> {
        ItemStream::open(self.clone(), id.to_string(), options)
    }

    /// Opens a consumer session of execution `id`'s output stream.
    pub async fn open_session(&self, id: &str) -> Result<SessionView, Error> {
        self.send(self.request(
            reqwest::Method::POST,
            &format!("/v1/executions/{id}/sessions"),
        ))
        .await
    }

    /// The consumer sessions of execution `id`, closed and expired ones
    /// included.
    pub async fn sessions(&self, id: &str) -> Result<SessionList, Error> {
        self.send(self.request(
            reqwest::Method::GET,
            &format!("/v1/executions/{id}/sessions"),
        ))
        .await
    }

    /// Executions in the host's store by status.
    pub async fn counts(&self) -> Result<api::StatusCounts, Error> {
        self.send(self.request(reqwest::Method::GET, "/v1/counts"))
            .await
    }

    /// Execution `id` replayed in a sandbox over its first `to` journal
    /// entries, with what the workflow logged (no tool runs, nothing is
    /// written).
    pub async fn replay(&self, id: &str, to: u64) -> Result<api::ReplayView, Error> {
        let req = self
            .request(reqwest::Method::GET, &format!("/v1/executions/{id}/replay"))
            .query(&[("to", to)]);
        self.send(req).await
    }

    /// Closes consumer session `session` of execution `id`.
    pub async fn close_session(&self, id: &str, session: &str) -> Result<SessionView, Error> {
        let req = self.request(
            reqwest::Method::DELETE,
            &format!("/v1/executions/{id}/sessions/{session}"),
        );
        self.send(req).await
    }
}
