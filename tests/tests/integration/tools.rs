//! Configured tools against an HTTP server the test starts: webhooks
//! (success, tool error, timeout, retry then success, idempotency keys) and
//! the allow-listed `http/request` tool.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use reprise_host::server::config::ServeConfig;
use reprise_host::server::tools_from;
use reprise_tests::server::TestServer;
use reprise_tests::*;
use serde_json::{Value, json};

/// What the test webhook server saw: (path, Idempotency-Key header, body).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Starts the receiving server; returns its base URL.
async fn receiver(seen: Seen) -> String {
    async fn record(seen: &Seen, path: &str, headers: &HeaderMap, body: &Value) -> usize {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut seen = seen.lock().unwrap();
        seen.push((path.to_string(), key, body.clone()));
        seen.iter().filter(|(p, ..)| p == path).count()
    }
    let app = axum::Router::new()
        .route(
            "/ok",
            post(|State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                record(&seen, "/ok", &headers, &body).await;
                Json(json!({"doubled": body["input"]["n"].as_i64().unwrap_or(0) * 2, "tool": body["name"]}))
            }),
        )
        .route(
            "/err",
            post(|State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                record(&seen, "/err", &headers, &body).await;
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({"code": "card-declined", "message": "insufficient funds"})),
                )
            }),
        )
        .route(
            "/slow",
            post(|State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                record(&seen, "/slow", &headers, &body).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(json!("too late"))
            }),
        )
        .route(
            "/flaky",
            post(|State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                let n = record(&seen, "/flaky", &headers, &body).await;
                if n < 3 {
                    (StatusCode::SERVICE_UNAVAILABLE, Json(json!("busy")))
                } else {
                    (StatusCode::OK, Json(json!({"attempt": n})))
                }
            }),
        )
        .route("/page", get(|| async { Json(json!({"hello": "world"})) }))
        .route("/big", get(|| async { "x".repeat(10_000) }))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_tools() {
    let seen = Seen::default();
    let base = receiver(seen.clone()).await;
    let cfg = ServeConfig::from_toml(&format!(
        r#"
        [tools.webhook.billing]
        url = "{base}/ok"
        [tools.webhook.payments]
        url = "{base}/err"
        [tools.webhook.slowpoke]
        url = "{base}/slow"
        timeout = "200ms"
        retries = 1
        backoff = "10ms"
        [tools.webhook.flaky]
        url = "{base}/flaky"
        retries = 3
        backoff = "10ms"
        "#
    ))
    .unwrap();
    let tools = tools_from(&cfg.tools).unwrap();
    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, cfg, tools).await;
    s.deploy("caller", "caller").await;
    let calls = json!({"calls": [
        {"category": "billing", "name": "double", "input": {"n": 21}},
        {"category": "payments", "name": "charge", "input": {"cents": 500}},
        {"category": "slowpoke", "name": "wait", "input": null},
        {"category": "flaky", "name": "retry", "input": [1, 2]},
    ]});
    let r = s
        .start_and_wait("caller", json!({"id": "hooks", "input": calls}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let out = &r.body["result"];
    assert_eq!(out[0]["ok"], json!({"doubled": 42, "tool": "double"}));
    assert_eq!(out[1]["err"]["code"], "card-declined");
    assert_eq!(out[1]["err"]["message"], "insufficient funds");
    assert_eq!(out[2]["err"]["code"], "timeout", "{}", out[2]);
    assert!(
        out[2]["err"]["message"]
            .as_str()
            .unwrap()
            .contains("2 attempts"),
        "{}",
        out[2]
    );
    assert_eq!(out[3]["ok"], json!({"attempt": 3}));

    let seen = seen.lock().unwrap().clone();
    let attempts = |path: &str| seen.iter().filter(|(p, ..)| p == path).count();
    assert_eq!(
        (
            attempts("/ok"),
            attempts("/err"),
            attempts("/slow"),
            attempts("/flaky")
        ),
        (1, 1, 2, 3)
    );
    // Every attempt of a step carries the step's key, in the header and the
    // body: the execution and the journal index.
    for (i, path) in ["/ok", "/err", "/slow", "/flaky"].iter().enumerate() {
        for (p, header_key, body) in seen.iter().filter(|(p, ..)| p == path) {
            assert_eq!(header_key, &format!("hooks:{i}"), "{p}");
            assert_eq!(body["idempotency_key"], format!("hooks:{i}"));
            assert_eq!(body["execution_id"], "hooks");
        }
    }
    // The journal holds each result once: replay does not call again.
    let journal = s.get("/v1/executions/hooks/journal").await;
    assert_eq!(journal.body["total"], 4);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tool_is_limited_to_its_allow_list() {
    let base = receiver(Seen::default()).await;
    let authority = base.trim_start_matches("http://").to_string();
    let cfg = ServeConfig::from_toml(&format!(
        r#"
        [tools.http]
        allow = ["{authority}"]
        max_response_bytes = 1000
        "#
    ))
    .unwrap();
    let tools = tools_from(&cfg.tools).unwrap();
    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, cfg, tools).await;
    s.deploy("caller", "caller").await;
    let other_port = "http://127.0.0.1:1/page";
    let calls = json!({"calls": [
        {"category": "http", "name": "request", "input": {"url": format!("{base}/page")}},
        {"category": "http", "name": "request", "input": {"url": other_port}},
        {"category": "http", "name": "request", "input": {"url": "http://example.com/"}},
        {"category": "http", "name": "request", "input": {"url": format!("{base}/big")}},
        {"category": "http", "name": "request", "input": {"url": format!("{base}/missing")}},
        {"category": "http", "name": "request", "input": {"url": "ftp://x/"}},
    ]});
    let r = s.start_and_wait("caller", json!({"input": calls})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let out = &r.body["result"];
    assert_eq!(out[0]["ok"]["status"], 200);
    assert_eq!(out[0]["ok"]["json"], json!({"hello": "world"}));
    assert_eq!(out[1]["err"]["code"], "forbidden-host", "{}", out[1]);
    assert_eq!(out[2]["err"]["code"], "forbidden-host");
    assert_eq!(out[3]["err"]["code"], "too-large");
    assert_eq!(out[4]["ok"]["status"], 404, "any status is a result");
    assert_eq!(out[5]["err"]["code"], "bad-input");
    s.stop().await;
}

#[test]
fn tool_config_errors_are_clear() {
    let text = "[tools.webhook.pay]\nurl = \"http://x\"\nheaders_from_env = { Authorization = \"PAY_AUTH\" }\n";
    // Not resolved: the library reads no environment of its own.
    let cfg = ServeConfig::from_toml(text).unwrap();
    let err = tools_from(&cfg.tools).err().unwrap().to_string();
    assert!(err.contains("PAY_AUTH"), "{err}");
    // Resolved by a lookup that does not know the name.
    let mut cfg = ServeConfig::from_toml(text).unwrap();
    let err = cfg.resolve_env(|_| None).unwrap_err().to_string();
    assert!(err.contains("PAY_AUTH") && err.contains("not set"), "{err}");
    // Resolved: the header is built from the value given.
    let mut cfg = ServeConfig::from_toml(text).unwrap();
    cfg.resolve_env(|var| (var == "PAY_AUTH").then(|| "Bearer secret".to_string()))
        .unwrap();
    assert_eq!(
        cfg.tools.webhook["pay"].headers["Authorization"],
        "Bearer secret"
    );
    assert!(tools_from(&cfg.tools).is_ok());
    let cfg = ServeConfig::from_toml("[tools.webhook.builtin]\nurl = \"http://x\"\n").unwrap();
    let err = tools_from(&cfg.tools).err().unwrap().to_string();
    assert!(err.contains("reserved"), "{err}");
    let cfg = ServeConfig::from_toml("[tools.webhook.pay]\nurl = \"file:///etc\"\n").unwrap();
    let err = tools_from(&cfg.tools).err().unwrap().to_string();
    assert!(err.contains("http"), "{err}");
}

/// A webhook down for 5 s. With `on_unavailable = "retry"` the call keeps
/// trying: the execution shows the retrying call (tool, attempts, last
/// error, next attempt) through the API and the metrics, and completes
/// with one journal entry once the webhook is back. With the default
/// (`fail`) the call's result is the tool error `unavailable` after its
/// retries, as the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_waited_out_visibly_or_fails_as_configured() {
    // A port with nothing listening: connections are refused.
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let cfg = ServeConfig::from_toml(&format!(
        r#"
        [tools.webhook.crm]
        url = "http://{addr}/hook"
        on_unavailable = "retry"
        retry_for = "1m"
        backoff = "100ms"
        max_backoff = "400ms"
        [tools.webhook.ledger]
        url = "http://{addr}/hook"
        retries = 1
        backoff = "10ms"
        "#
    ))
    .unwrap();
    let tools = tools_from(&cfg.tools).unwrap();
    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, cfg, tools).await;
    s.deploy("caller", "caller").await;

    // The default mode: the outage is the call's result.
    let calls = json!({"calls": [{"category": "ledger", "name": "post", "input": {}}]});
    let r = s
        .start_and_wait("caller", json!({"id": "fails", "input": calls}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let err = &r.body["result"][0]["err"];
    assert_eq!(err["code"], "unavailable", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("after 2 attempts"),
        "{err}"
    );

    // The retry mode: the execution waits, and says why.
    let down = std::time::Instant::now();
    let calls = json!({"calls": [{"category": "crm", "name": "lookup", "input": {"id": 7}}]});
    let r = s
        .post(
            "/v1/workflows/caller/executions",
            &json!({"id": "waits", "input": calls}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let mut view = Value::Null;
    for _ in 0..200 {
        view = s.get("/v1/executions/waits").await.body;
        if view["retrying"][0]["attempts"].as_u64() >= Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["status"], "running", "{view}");
    assert_eq!(
        view["steps"], 0,
        "nothing is journaled while it retries: {view}"
    );
    let retrying = &view["retrying"][0];
    assert_eq!(retrying["tool"], "crm/lookup", "{view}");
    assert_eq!(retrying["index"], 0);
    assert_eq!(retrying["last_error"]["code"], "unavailable", "{view}");
    assert!(
        retrying["next_attempt_at_ms"].as_u64() > retrying["failing_since_ms"].as_u64(),
        "{view}"
    );
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("reprise_tool_calls_retrying 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reprise_tool_retries_total{category=\"crm\"}"),
        "{metrics}"
    );

    // Back after 5 s.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(down.elapsed())).await;
    let app = axum::Router::new().route(
        "/hook",
        post(|Json(body): Json<Value>| async move { Json(json!({"got": body["input"]})) }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let view = s.get("/v1/executions/waits?wait=20s").await.body;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["result"][0]["ok"], json!({"got": {"id": 7}}));
    assert_eq!(view["steps"], 1, "one entry for the whole outage: {view}");
    assert!(view.get("retrying").is_none(), "{view}");
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("reprise_tool_calls_retrying 0"),
        "{metrics}"
    );
}
