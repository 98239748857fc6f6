//! What the API refuses, and that refusing changes nothing: malformed and
//! oversize requests, a saturated host (429), bearer tokens and scopes,
//! token configs that cannot work.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::server::config::ServeConfig;
use reprise_host::{Store, ToolRegistry};
use reprise_tests::server::TestServer;
use reprise_tests::*;
use reqwest::StatusCode;
use serde_json::json;

fn config() -> ServeConfig {
    ServeConfig::default()
}

reprise_tests::on_every_store!(bad_input_changes_nothing);

/// Every kind of bad request gets a clear problem, and the store is as it
/// was.
async fn bad_input_changes_nothing(store: Arc<dyn Store>) {
    let mut cfg = config();
    cfg.max_request_bytes = 1024;
    cfg.max_component_bytes = 8 << 20;
    let s = TestServer::start(store.clone(), cfg, ToolRegistry::with_builtins()).await;
    let put = |name: &str, bytes: Vec<u8>, ct: &str| {
        s.http
            .put(s.url(&format!("/v1/workflows/{name}")))
            .header("content-type", ct)
            .body(bytes)
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str, &str)> = vec![
        (
            put("w", b"not wasm at all".to_vec(), "application/wasm"),
            StatusCode::BAD_REQUEST,
            "invalid-component",
            "",
        ),
        (
            put("w", guest("wrongworld"), "application/wasm"),
            StatusCode::BAD_REQUEST,
            "invalid-component",
            "no export `run`",
        ),
        (
            put("w", Vec::new(), "application/wasm"),
            StatusCode::BAD_REQUEST,
            "invalid-component",
            "empty",
        ),
        (
            put("w", guest("hello"), "text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "application/wasm",
        ),
        (
            put("w", vec![0; 9 << 20], "application/wasm"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "",
        ),
        (
            put("bad name!", guest("hello"), "application/wasm"),
            StatusCode::BAD_REQUEST,
            "invalid-name",
            "",
        ),
        (
            s.http
                .post(s.url("/v1/workflows/nothing/executions"))
                .json(&json!({"input": 1})),
            StatusCode::NOT_FOUND,
            "unknown-workflow",
            "nothing",
        ),
        (
            s.http
                .post(s.url("/v1/workflows/nothing/executions"))
                .header("content-type", "application/json")
                .body("{\"input\": "),
            StatusCode::BAD_REQUEST,
            "bad-request",
            "JSON",
        ),
        (
            s.http
                .post(s.url("/v1/workflows/nothing/executions"))
                .json(&json!({"inptu": 1})),
            StatusCode::BAD_REQUEST,
            "bad-request",
            "inptu",
        ),
        (
            s.http
                .post(s.url("/v1/workflows/nothing/executions"))
                .header("content-type", "text/plain")
                .body("hi"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "",
        ),
        (
            s.http
                .post(s.url("/v1/workflows/nothing/executions"))
                .json(&json!({"input": "x".repeat(2000)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "",
        ),
        (
            s.http
                .post(s.url("/v1/workflows/nothing/executions?wait=soon"))
                .json(&json!({})),
            StatusCode::BAD_REQUEST,
            "bad-request",
            "soon",
        ),
        (
            s.http.get(s.url("/v1/executions?status=sleeping")),
            StatusCode::BAD_REQUEST,
            "bad-request",
            "sleeping",
        ),
        (
            s.http.get(s.url("/v1/executions/a%20b")),
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "",
        ),
        (
            s.http.get(s.url("/v1/workflows/nothing")),
            StatusCode::NOT_FOUND,
            "unknown-workflow",
            "",
        ),
        (
            s.http.get(s.url("/v2/anything")),
            StatusCode::NOT_FOUND,
            "not-found",
            "/v1",
        ),
        (
            s.http.patch(s.url("/v1/workflows")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "PATCH",
        ),
    ];
    for (req, status, kind, mentions) in cases {
        let r = s.send(req).await;
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(
            r.problem_type(),
            format!("urn:reprise:problem:{kind}"),
            "{}",
            r.body
        );
        assert!(
            r.body["detail"].as_str().unwrap().contains(mentions),
            "{} should mention {mentions:?}",
            r.body
        );
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The unread body leaves the connection unusable: the server
            // says so, and the client does not reuse it.
            assert_eq!(r.headers["connection"], "close");
        }
    }
    assert!(store.list_deployments().await.unwrap().is_empty());
    assert!(store.list_executions(None).await.unwrap().is_empty());
    s.stop().await;
}

/// Starts beyond `max_active` get 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_host_answers_429() {
    let (store, _guard) = memory_store().await;
    let calls = Calls::default();
    let go = Arc::new(tokio::sync::Notify::new());
    let (tools, mut stalled) = stalling_tools(&calls, 0, go.clone());
    let mut cfg = config();
    cfg.max_active = 1;
    let s = TestServer::start(store, cfg, tools).await;
    s.deploy("steps", "steps").await;
    let first = s
        .post(
            "/v1/workflows/steps/executions",
            &json!({"input": {"n": 2}}),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    stalled.recv().await.unwrap();
    let second = s
        .post(
            "/v1/workflows/steps/executions",
            &json!({"input": {"n": 2}}),
        )
        .await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.problem_type(), "urn:reprise:problem:saturated");
    assert_eq!(second.headers["retry-after"], "1");
    go.notify_one();
    let id = reprise_host::ExecutionId::new(first.body["id"].as_str().unwrap()).unwrap();
    wait(&s.runtime, &id).await;
    // Once it is done (its driver lets go just after the record says so),
    // starts are admitted again.
    let mut third = s.start_and_wait("steps", json!({"input": {"n": 1}})).await;
    for _ in 0..100 {
        if third.status != StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        third = s.start_and_wait("steps", json!({"input": {"n": 1}})).await;
    }
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);
    s.stop().await;
}

/// Tokens: none, wrong, and a token without the scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_and_scopes() {
    let (store, _guard) = memory_store().await;
    let cfg = ServeConfig::from_toml(
        r#"
        [[auth.tokens]]
        name = "ci"
        token = "deploy-token-0123456789"
        scopes = ["deploy"]
        [[auth.tokens]]
        name = "app"
        token = "invoke-token-0123456789"
        scopes = ["invoke"]
        "#,
    )
    .unwrap();
    let s = TestServer::start(store.clone(), cfg, ToolRegistry::with_builtins()).await;
    let deploy = |token: Option<&str>| {
        let mut r = s
            .http
            .put(s.url("/v1/workflows/hello"))
            .header("content-type", "application/wasm")
            .body(guest("hello"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    };
    let none = s.send(deploy(None)).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.problem_type(), "urn:reprise:problem:unauthorized");
    assert!(none.headers.contains_key("www-authenticate"));
    let wrong = s.send(deploy(Some("not-a-token-at-all"))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let scope = s.send(deploy(Some("invoke-token-0123456789"))).await;
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    assert_eq!(scope.problem_type(), "urn:reprise:problem:forbidden");
    assert!(store.list_deployments().await.unwrap().is_empty());

    let ok = s.send(deploy(Some("deploy-token-0123456789"))).await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let start = |token: &str| {
        s.http
            .post(s.url("/v1/workflows/hello/executions?wait=30s"))
            .bearer_auth(token)
            .json(&json!({"input": "x"}))
    };
    assert_eq!(
        s.send(start("deploy-token-0123456789")).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(store.list_executions(None).await.unwrap().is_empty());
    assert_eq!(
        s.send(start("invoke-token-0123456789")).await.status,
        StatusCode::OK
    );
    // Operators' endpoints need no token.
    assert_eq!(s.get("/healthz").await.status, StatusCode::OK);
    s.stop().await;
}

/// Token configs that cannot work are refused when the server is built.
#[test]
fn bad_token_config_is_refused() {
    let short = ServeConfig::from_toml(
        "[[auth.tokens]]\nname = \"x\"\ntoken = \"short\"\nscopes = [\"invoke\"]\n",
    )
    .unwrap();
    assert!(short.tokens().unwrap_err().to_string().contains("16"));
    let text = "[[auth.tokens]]\nname = \"x\"\ntoken_env = \"APP_TOKEN\"\nscopes = [\"invoke\"]\n";
    let unresolved = ServeConfig::from_toml(text).unwrap();
    assert!(
        unresolved
            .tokens()
            .unwrap_err()
            .to_string()
            .contains("APP_TOKEN")
    );
    let mut unset = ServeConfig::from_toml(text).unwrap();
    let err = unset.resolve_env(|_| None).unwrap_err().to_string();
    assert!(err.contains("APP_TOKEN"), "{err}");
    let mut set = ServeConfig::from_toml(text).unwrap();
    set.resolve_env(|var| (var == "APP_TOKEN").then(|| "a-token-of-16-chars".to_string()))
        .unwrap();
    let tokens = set.tokens().unwrap();
    assert_eq!(tokens[0].1, "a-token-of-16-chars");
}
