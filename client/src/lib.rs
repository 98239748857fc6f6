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

mod stream;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use stream::{ItemStream, StreamOptions};

/// What can go wrong talking to a host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host could not be reached, or the connection broke.
    #[error("cannot reach the host: {0}")]
    Http(#[from] reqwest::Error),
    /// The host refused the request (an RFC 9457 problem).
    #[error("{status}: {title}: {detail}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Problem type, e.g. `not-found`.
        kind: String,
        /// Short summary.
        title: String,
        /// What happened.
        detail: String,
    },
    /// A reply (or an item) did not have the expected shape.
    #[error("unexpected reply: {0}")]
    Decode(String),
    /// The workflow failed; every item it emitted came before this.
    #[error("the workflow failed ({kind}): {message}")]
    Failed {
        /// Failure kind, e.g. `workflow-error` or `trap`.
        kind: String,
        /// What happened.
        message: String,
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

/// A deployed workflow version.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Deployment {
    /// Workflow name.
    pub name: String,
    /// Version under that name, from 1.
    pub version: u32,
    /// sha256 of the component, hex.
    pub digest: String,
}

/// Why an execution failed.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ExecutionError {
    /// Failure kind.
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// An execution's state, as the host reports it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Execution {
    /// Execution id.
    pub id: String,
    /// Workflow name.
    pub workflow: String,
    /// `running`, `suspended`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The result, once completed.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// The failure, once failed.
    #[serde(default)]
    pub error: Option<ExecutionError>,
    /// Journal entries recorded.
    pub steps: u64,
    /// Invocations so far.
    pub invocations: u64,
}

impl Execution {
    /// Completed, failed or cancelled.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// What happens to a streaming execution once every consumer has left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnAbandon {
    /// Cancel it (the default).
    Cancel,
    /// Let it finish.
    Continue,
}

/// Options of [`Client::start`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct Start {
    /// Execution id; starting twice with one id starts once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Start as a stream paced by its consumers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamStart>,
}

/// The stream part of [`Start`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamStart {
    /// Most items emitted beyond what every consumer has read (default:
    /// the host's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// What happens when every consumer left (default: cancel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_abandon: Option<OnAbandon>,
    /// Bound the window in bytes of items too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_bytes: Option<u64>,
}

impl Start {
    /// A streaming start with the host's defaults.
    pub fn stream() -> Self {
        Self {
            id: None,
            stream: Some(StreamStart::default()),
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
                title: text("title"),
                detail: match text("detail") {
                    d if d.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
                    d => d,
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Deploys `component` (a wasm component's bytes) as workflow `name`.
    pub async fn deploy(&self, name: &str, component: Vec<u8>) -> Result<Deployment, Error> {
        let req = self
            .request(reqwest::Method::PUT, &format!("/v1/workflows/{name}"))
            .header("content-type", "application/wasm")
            .body(component);
        self.send(req).await
    }

    /// Starts workflow `workflow` on `input`.
    pub async fn start(
        &self,
        workflow: &str,
        input: &impl Serialize,
        options: Start,
    ) -> Result<Execution, Error> {
        #[derive(Serialize)]
        struct Body<'a, I: Serialize> {
            input: &'a I,
            #[serde(flatten)]
            options: Start,
        }
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/workflows/{workflow}/executions"),
            )
            .json(&Body { input, options });
        self.send(req).await
    }

    /// An execution's state.
    pub async fn status(&self, id: &str) -> Result<Execution, Error> {
        self.send(self.request(reqwest::Method::GET, &format!("/v1/executions/{id}")))
            .await
    }

    /// Waits up to `wait` for the execution to finish or wait for a signal;
    /// returns its state then.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Execution, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let exec = self.status(id).await?;
            if exec.is_finished() || tokio::time::Instant::now() >= deadline {
                return Ok(exec);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends signal `name` with `payload`.
    pub async fn signal(
        &self,
        id: &str,
        name: &str,
        payload: &impl Serialize,
    ) -> Result<(), Error> {
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/executions/{id}/signals/{name}"),
            )
            .json(&serde_json::json!({ "payload": payload }));
        self.send::<serde_json::Value>(req).await.map(|_| ())
    }

    /// Cancels an execution.
    pub async fn cancel(&self, id: &str) -> Result<Execution, Error> {
        self.send(self.request(reqwest::Method::DELETE, &format!("/v1/executions/{id}")))
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

    /// Closes consumer session `session` of execution `id`.
    pub async fn close_session(&self, id: &str, session: &str) -> Result<(), Error> {
        let req = self.request(
            reqwest::Method::DELETE,
            &format!("/v1/executions/{id}/sessions/{session}"),
        );
        self.send::<serde_json::Value>(req).await.map(|_| ())
    }
}
