//! Browsers on other origins (`cors_origins`): a configured origin's
//! preflight is answered without a token and its requests still need one;
//! any other origin, and every origin when none is configured, gets no
//! CORS headers, so a browser keeps its page out.

use reprise_host::ToolRegistry;
use reprise_host::server::config::ServeConfig;
use reprise_tests::server::TestServer;
use reprise_tests::*;
use reqwest::StatusCode;
use serde_json::json;

const TOKEN: &str = "a-token-for-the-cors-test";
const ORIGIN: &str = "http://app.example.test";

async fn server(origins: &[&str]) -> TestServer {
    let mut config = ServeConfig::from_toml(&format!(
        "[[auth.tokens]]\nname = \"app\"\ntoken = \"{TOKEN}\"\nscopes = [\"deploy\", \"invoke\"]\n"
    ))
    .unwrap();
    config.cors_origins = origins.iter().map(|o| o.to_string()).collect();
    let store = std::sync::Arc::new(reprise_host::MemoryStore::new());
    TestServer::start(store, config, ToolRegistry::with_builtins()).await
}

fn preflight(s: &TestServer, origin: &str) -> reqwest::RequestBuilder {
    s.http
        .request(
            reqwest::Method::OPTIONS,
            s.url("/v1/workflows/hello/executions"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
}

fn allowed(r: &reqwest::Response) -> Option<&str> {
    r.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_origin_may_call_with_its_token() {
    let s = server(&[ORIGIN]).await;
    let r = preflight(&s, ORIGIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(allowed(&r), Some(ORIGIN));
    let headers = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"));

    // The request itself: without the token it is refused (with the CORS
    // header, so the page can read why); with it, it runs.
    let start = |token: Option<&str>| {
        let mut req = s
            .http
            .post(s.url("/v1/workflows/hello/executions?wait=10s"))
            .header("origin", ORIGIN)
            .json(&json!({"input": {"name": "cors"}}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let r = start(None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allowed(&r), Some(ORIGIN));
    let r = s
        .http
        .put(s.url("/v1/workflows/hello"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/wasm")
        .body(guest("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = start(Some(TOKEN)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);

    // Another origin gets no CORS headers: its page cannot read anything.
    let r = preflight(&s, "http://elsewhere.test").send().await.unwrap();
    assert_eq!(allowed(&r), None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_origins_the_api_sends_no_cors_headers() {
    let s = server(&[]).await;
    let r = preflight(&s, ORIGIN).send().await.unwrap();
    assert_eq!(allowed(&r), None);
    assert_ne!(r.status(), StatusCode::OK);
    let r = s
        .http
        .get(s.url("/healthz"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed(&r), None);
    s.stop().await;
}

#[test]
fn an_origin_with_a_path_is_refused() {
    for bad in ["app.example.test", "https://app.example.test/ui", "ftp://x"] {
        let config = ServeConfig {
            cors_origins: vec![bad.to_string()],
            ..ServeConfig::default()
        };
        let e = config.cors_origins().unwrap_err().to_string();
        assert!(e.contains(bad), "{e}");
    }
    let config = ServeConfig {
        cors_origins: vec!["*".into(), "https://a.example:8443".into()],
        ..ServeConfig::default()
    };
    config.cors_origins().unwrap();
}
