//! A `reprise serve` host in the test process, on a loopback port of its
//! own, and a small HTTP client for it.

use std::sync::Arc;

use reprise_host::server::config::ServeConfig;
use reprise_host::server::{Server, runtime_config};
use reprise_host::{Runtime, Store, ToolRegistry};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// A running host.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The runtime behind it.
    pub runtime: Arc<Runtime>,
    /// A client; send the token yourself when the config has one.
    pub http: reqwest::Client,
    /// Where its traces go (the config's `[telemetry]`).
    pub telemetry: reprise_host::telemetry::Telemetry,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A reply: status, headers and the body as JSON (`Null` if empty or not
/// JSON).
pub struct Reply {
    /// The HTTP status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` if empty or not JSON).
    pub body: Value,
}

impl Reply {
    /// The problem `type` of an error reply, checking its content type.
    pub fn problem_type(&self) -> &str {
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "an error reply is problem+json: {:?}",
            self.body
        );
        assert_eq!(self.body["status"], self.status.as_u16(), "{}", self.body);
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            self.body
        );
        self.body["type"].as_str().unwrap_or("")
    }
}

impl TestServer {
    /// Starts a host on `store` with `tools` (the config's `tools` section
    /// is ignored; build them with `reprise_host::server::tools_from`), and
    /// recovers what the store holds, as `reprise serve` does.
    pub async fn start(
        store: Arc<dyn Store>,
        mut config: ServeConfig,
        tools: ToolRegistry,
    ) -> Self {
        config.listen = "127.0.0.1:0".parse().unwrap();
        let telemetry = config.telemetry.telemetry().expect("telemetry config");
        let runtime = Arc::new(
            Runtime::builder(crate::engine(), store)
                .tools(tools)
                .config(runtime_config(&config))
                .telemetry(telemetry.clone())
                .build()
                .expect("runtime"),
        );
        runtime.recover().await.expect("recovering");
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = Server::new(config, runtime.clone()).expect("server config");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            runtime,
            telemetry,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts the host down gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `req` and reads the reply.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let r = req
            .send()
            .await
            .expect("sending a request to the test host");
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    /// POST JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// Deploys guest `guest` as `name`; panics unless it is accepted.
    pub async fn deploy(&self, name: &str, guest: &str) -> Value {
        self.deploy_bytes(name, guest, crate::guest(guest)).await
    }

    /// Deploys a component's bytes under `name` (`guest` names it in a
    /// failure).
    pub async fn deploy_bytes(&self, name: &str, guest: &str, bytes: Vec<u8>) -> Value {
        let r = self
            .send(
                self.http
                    .put(self.url(&format!("/v1/workflows/{name}")))
                    .header("content-type", "application/wasm")
                    .body(bytes),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "deploying {guest}: {}",
            r.body
        );
        r.body
    }

    /// Starts `workflow` with `input` and waits up to 60 s for it to end
    /// or wait for a signal.
    pub async fn start_and_wait(&self, workflow: &str, body: Value) -> Reply {
        self.post(
            &format!("/v1/workflows/{workflow}/executions?wait=60s"),
            &body,
        )
        .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
