//! What a client without a token, a misbehaving client, or a hostile guest
//! cannot do to a host: exhaust its memory, connections or instance slots,
//! spin it on a bad offset, or flood its log.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::execution::{FailureKind, Outcome, Status};
use reprise_host::server::config::ServeConfig;
use reprise_host::{
    EngineConfig, ExecutionRecord, Limits, Runtime, RuntimeConfig, Store, ToolRegistry,
    WorkflowEngine,
};
use reprise_tests::server::TestServer;
use reprise_tests::*;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

reprise_tests::on_every_store!(offsets_at_the_end_of_u64);

/// `u64::MAX` as an offset, on every route that takes one, ends at once:
/// the batch says `end`, the live forms send their end, the journal an
/// empty page. (`u64::MAX + 1` wrapped to 0, so a live read of an ended
/// stream spun until the client left, and the batch never said `end`.)
async fn offsets_at_the_end_of_u64(store: Arc<dyn Store>) {
    let s = TestServer::start(store, ServeConfig::default(), ToolRegistry::with_builtins()).await;
    s.deploy("producer", "producer").await;
    let r = s
        .post(
            "/v1/workflows/producer/executions?wait=20s",
            &json!({"input": {"n": 3}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let max = u64::MAX;
    let soon = Duration::from_secs(5);

    let r = tokio::time::timeout(
        soon,
        s.get(&format!("/v1/executions/{id}/items?after={max}&wait=2s")),
    )
    .await
    .expect("a batch read past the end answers at once");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"], json!([]), "{}", r.body);
    assert_eq!(r.body["end"]["status"], "completed", "{}", r.body);

    for (accept, query, last_event_id) in [
        ("application/x-ndjson", format!("?after={max}"), None),
        ("text/event-stream", format!("?after={max}"), None),
        ("text/event-stream", String::new(), Some(max.to_string())),
    ] {
        let mut req = s
            .http
            .get(s.url(&format!("/v1/executions/{id}/items{query}")))
            .header("accept", accept);
        if let Some(last) = &last_event_id {
            req = req.header("last-event-id", last);
        }
        let text = tokio::time::timeout(soon, async {
            req.send().await.unwrap().text().await.unwrap()
        })
        .await
        .unwrap_or_else(|_| panic!("a live {accept} read past the end ends at once"));
        assert!(!text.contains("\"offset\""), "{accept}: {text}");
        assert!(
            text.contains("\"end\"") || text.contains("event: end"),
            "{accept}: {text}"
        );
    }

    let r = s
        .get(&format!("/v1/executions/{id}/journal?after={max}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["entries"], json!([]), "{}", r.body);
    assert_eq!(r.body["total"], 3, "{}", r.body);
    assert_eq!(r.body.get("next_after"), None, "{}", r.body);
    s.stop().await;
}

/// A runtime of its own engine with `slots` instance slots, and guests
/// held to one second without progress.
async fn strict_runtime(slots: u32) -> (Runtime, Guard) {
    let engine = WorkflowEngine::new(EngineConfig {
        max_instances: slots,
        max_memory_bytes: 64 << 20,
        ..EngineConfig::default()
    })
    .unwrap();
    let (store, guard) = memory_store().await;
    let config = RuntimeConfig {
        limits: Limits {
            memory_bytes: 32 << 20,
            time_without_progress: Duration::from_secs(1),
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(
        Arc::new(engine),
        store,
        ToolRegistry::with_builtins(),
        config,
    );
    for name in ["spin", "hello"] {
        deploy(&rt, name).await;
    }
    (rt, guard)
}

/// Waits at most `secs` for the end: past that, a limit did not hold.
async fn ended_within(rt: &Runtime, id: &reprise_host::ExecutionId, secs: u64) -> ExecutionRecord {
    tokio::time::timeout(Duration::from_secs(secs), rt.wait(id))
        .await
        .unwrap_or_else(|_| panic!("{id} still running after {secs} s"))
        .unwrap()
}

fn time_limit_hit(rec: &ExecutionRecord) -> bool {
    matches!(&rec.outcome, Some(Outcome::Failed(f)) if f.kind == FailureKind::TimeLimit)
}

/// Guests blocked in a WASI sleep (60 s each, more of them than there are
/// instance slots) fail at the one-second limit, each freeing its slot;
/// a healthy start behind them waits for a slot instead of retrying in a
/// loop, and completes in one invocation.
#[tokio::test]
async fn a_guest_asleep_in_wasi_fails_at_its_limit_and_frees_its_slot() {
    let (rt, _guard) = strict_runtime(2).await;
    let mut sleepers = Vec::new();
    for _ in 0..4 {
        let input = encode(&json!({"sleep_secs": 60}));
        sleepers.push(rt.start("spin", input, None).await.unwrap());
    }
    let healthy = rt
        .start("hello", encode(&json!({"name": "slot"})), None)
        .await
        .unwrap();
    for id in &sleepers {
        let rec = ended_within(&rt, id, 30).await;
        assert!(time_limit_hit(&rec), "{rec:?}");
        assert!(
            matches!(&rec.outcome, Some(Outcome::Failed(f)) if f.message.contains("WASI")),
            "{rec:?}"
        );
        assert_eq!(rec.invocations, 1, "a failed execution is final: {rec:?}");
    }
    let rec = ended_within(&rt, &healthy, 30).await;
    assert_eq!(rec.status, Status::Completed, "{rec:?}");
    assert_eq!(
        rec.invocations, 1,
        "the healthy start waited for a slot without retrying"
    );
}

/// A guest that only logs makes no progress and hits its time limit; a
/// flood of log lines is cut to the allowance and what was dropped is
/// counted.
#[tokio::test]
async fn guest_logs_are_not_progress_and_are_rate_limited() {
    let (rt, _guard) = strict_runtime(4).await;
    let forever = rt
        .start("spin", encode(&json!({"log_forever": true})), None)
        .await
        .unwrap();
    let flood = rt
        .start(
            "spin",
            encode(&json!({"logs": 20_000, "log_bytes": 1000})),
            None,
        )
        .await
        .unwrap();
    let rec = ended_within(&rt, &flood, 30).await;
    assert_eq!(result::<u64>(&rec), 20_000);
    let dropped = rt.metrics().guest_log_dropped.get();
    let burst = u64::from(Limits::default().log_burst);
    assert!(
        (20_000 - 2 * burst..20_000).contains(&dropped),
        "{dropped} of 20000 lines dropped (allowance {burst})"
    );
    let rec = ended_within(&rt, &forever, 30).await;
    assert!(time_limit_hit(&rec), "{rec:?}");
}

const TOKEN: &str = "deploy-invoke-0123456789";

fn with_token() -> ServeConfig {
    let mut c = ServeConfig::from_toml(&format!(
        "[[auth.tokens]]\nname = \"t\"\ntoken = \"{TOKEN}\"\nscopes = [\"deploy\", \"invoke\"]\n"
    ))
    .unwrap();
    c.max_component_bytes = 48 << 20;
    c
}

/// Sends `head` (and nothing more) on a fresh connection and reads the
/// answer (see [`read_answer`]).
async fn exchange(s: &TestServer, head: &str, within: Duration) -> String {
    let addr = s.base.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    read_answer(&mut tcp, within).await
}

/// What comes back on `tcp` within `within`: one whole answer (head, and
/// a body of its Content-Length; a `100 Continue` alone is not one), or
/// what came before the connection closed or the time ran out.
async fn read_answer(tcp: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n")
                    && !head.starts_with("HTTP/1.1 100")
                {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A body is never read before the token, the admission and its declared
/// length are checked: a 6 MB upload (under the limit) with a wrong token or
/// none, or a declared length over the limit, is answered at once, without
/// `100 Continue` and without the server waiting for a byte of the body.
/// (Before, the body was read first: 30 such uploads took 1.2 GB.)
#[tokio::test]
async fn bodies_are_not_read_before_the_token_and_the_limit() {
    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, with_token(), ToolRegistry::with_builtins()).await;
    let soon = Duration::from_secs(5);
    let cases = [
        (
            "PUT /v1/workflows/w HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token-0000000000\r\nContent-Type: application/wasm\r\nContent-Length: 6000000\r\nExpect: 100-continue\r\n\r\n".to_string(),
            "401",
        ),
        (
            "PUT /v1/workflows/w HTTP/1.1\r\nHost: x\r\nContent-Type: application/wasm\r\nContent-Length: 6000000\r\n\r\n".to_string(),
            "401",
        ),
        (
            format!("PUT /v1/workflows/w HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/wasm\r\nContent-Length: 60000000\r\nExpect: 100-continue\r\n\r\n"),
            "413",
        ),
        (
            "POST /v1/workflows/w/executions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token-0000000000\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n".to_string(),
            "401",
        ),
        (
            format!("POST /v1/executions/x/signals/s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 60000000\r\n\r\n"),
            "413",
        ),
    ];
    let answers =
        futures_util::future::join_all(cases.iter().map(|(head, _)| exchange(&s, head, soon)))
            .await;
    for ((head, status), answer) in cases.iter().zip(answers) {
        let first = answer.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("HTTP/1.1 {status}")),
            "{head:?} got {answer:?} within {soon:?}"
        );
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
    }
    // A client that sends its whole body at once (no `Expect`) reads the
    // answer, not a broken pipe: the unread rest is drained, not kept.
    for _ in 0..3 {
        for (token, bytes, status) in [
            ("wrong-token-0000000000", 40 << 20, StatusCode::UNAUTHORIZED),
            (TOKEN, 60 << 20, StatusCode::PAYLOAD_TOO_LARGE),
        ] {
            let r = s
                .send(
                    s.http
                        .put(s.url("/v1/workflows/w"))
                        .bearer_auth(token)
                        .header("content-type", "application/wasm")
                        .body(vec![0u8; bytes]),
                )
                .await;
            assert_eq!(r.status, status, "{}", r.body);
        }
    }
    s.stop().await;
}

/// A client that sends its request head a byte at a time, or opens a
/// connection and says nothing, is disconnected after `header_timeout`,
/// and `/healthz` answers all the while; at `max_connections` new
/// connections wait until one of those is cut.
#[tokio::test]
async fn slow_heads_are_cut_and_connections_capped() {
    let (store, _guard) = memory_store().await;
    let cfg = ServeConfig {
        header_timeout: Duration::from_secs(1),
        max_connections: 12,
        ..ServeConfig::default()
    };
    let s = TestServer::start(store, cfg, ToolRegistry::with_builtins()).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // Ten slow clients: a byte every 200 ms, for ever.
    let slow: Vec<_> = (0..10)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(&addr).await.unwrap();
                let started = tokio::time::Instant::now();
                for b in b"GET /healthz HTTP/1.1\r\nX-Slow: "
                    .iter()
                    .chain(std::iter::repeat(&b'a'))
                {
                    if tcp.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    let mut buf = [0u8; 256];
                    if let Ok(Ok(0) | Err(_)) =
                        tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await
                    {
                        break;
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        return None;
                    }
                }
                Some(started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = tokio::time::timeout(Duration::from_secs(2), s.get("/healthz"))
        .await
        .expect("/healthz answers while slow clients hold connections");
    assert_eq!(r.status, StatusCode::OK);
    for task in slow {
        let held = task.await.unwrap().expect("a slow client was never cut");
        assert!(held < Duration::from_secs(10), "{held:?}");
    }
    // At the cap: twelve silent connections, then one that asks.
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let head = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let waiting = exchange(&s, head, Duration::from_millis(500)).await;
    assert_eq!(waiting, "", "a connection past the cap was served at once");
    let later = exchange(&s, head, Duration::from_secs(10)).await;
    assert!(later.starts_with("HTTP/1.1 200"), "{later:?}");
    drop(silent);
    s.stop().await;
}

/// A body that trickles in is cut at `request_timeout` with a problem,
/// and the connection is not held beyond it.
#[tokio::test]
async fn slow_bodies_are_cut_at_the_request_timeout() {
    let (store, _guard) = memory_store().await;
    let cfg = ServeConfig {
        request_timeout: Duration::from_secs(2),
        ..ServeConfig::default()
    };
    let s = TestServer::start(store, cfg, ToolRegistry::with_builtins()).await;
    s.deploy("hello", "hello").await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let head = "POST /v1/workflows/hello/executions HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if tcp.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let answer = read_answer(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    s.stop().await;
}

/// The framework's own rejections are problems like every other error.
#[tokio::test]
async fn rejections_are_problems() {
    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, ServeConfig::default(), ToolRegistry::with_builtins()).await;
    for path in [
        "/v1/executions?limit=-1",
        "/v1/executions?limit=many",
        "/v1/executions/x/items?after=-5",
        "/v1/executions/x/journal?after=1e3",
        "/v1/executions/%FF%FE",
        "/v1/workflows/%C3%28",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        assert_eq!(
            r.problem_type(),
            "urn:reprise:problem:bad-request",
            "{path}"
        );
    }
    s.stop().await;
}

/// `bytes` with a custom section `name` of `len` bytes appended (a custom
/// section may end a component).
fn with_custom_section(mut bytes: Vec<u8>, name: &str, len: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.resize(body.len() + len, 0xab);
    bytes.push(0);
    leb(body.len(), &mut bytes);
    bytes.extend_from_slice(&body);
    bytes
}

/// A component whose custom sections are over `max_custom_section_bytes`
/// is refused at deploy with a clear error and stored nowhere; one under it
/// deploys and runs.
#[tokio::test]
async fn custom_sections_count_against_a_limit() {
    let (store, _guard) = memory_store().await;
    let engine = WorkflowEngine::new(EngineConfig {
        max_instances: 4,
        max_custom_section_bytes: 1 << 20,
        ..EngineConfig::default()
    })
    .unwrap();
    let rt = Runtime::new(
        Arc::new(engine),
        store.clone(),
        ToolRegistry::with_builtins(),
        RuntimeConfig::default(),
    );
    let big = with_custom_section(guest("hello"), "padding", 2 << 20);
    let err = rt.deploy("big", big).await.unwrap_err().to_string();
    assert!(err.contains("max_custom_section_bytes"), "{err}");
    assert_eq!(store.get_deployment("big").await.unwrap(), None);
    assert_eq!(store.list_deployments().await.unwrap().len(), 0);
    let small = with_custom_section(guest("hello"), "padding", 100 << 10);
    rt.deploy("small", small).await.unwrap();
    let rec = run_to_end(&rt, "small", json!({"name": "pad"})).await;
    assert_eq!(rec.status, Status::Completed, "{rec:?}");
}

/// The compiled-component cache keeps at most `cache_components`
/// components and `cache_bytes` of code, least recently used out; an
/// evicted component is compiled again from the store when it runs.
#[tokio::test]
async fn the_component_cache_is_bounded() {
    let (store, _guard) = memory_store().await;
    let engine = Arc::new(
        WorkflowEngine::new(EngineConfig {
            max_instances: 4,
            cache_components: 2,
            ..EngineConfig::default()
        })
        .unwrap(),
    );
    let rt = Runtime::new(
        engine.clone(),
        store.clone(),
        ToolRegistry::with_builtins(),
        RuntimeConfig::default(),
    );
    for name in ["hello", "steps", "signals"] {
        deploy(&rt, name).await;
        assert!(engine.cache_size().0 <= 2, "{:?}", engine.cache_size());
    }
    assert_eq!(engine.cache_size().0, 2);
    // `hello` was the least recently used: gone, and compiled again to run.
    let rec = run_to_end(&rt, "hello", json!({"name": "again"})).await;
    assert_eq!(rec.status, Status::Completed, "{rec:?}");
    assert_eq!(engine.cache_size().0, 2);

    // A byte bound below one component's code keeps only the newest.
    let tight = Arc::new(
        WorkflowEngine::new(EngineConfig {
            max_instances: 4,
            cache_bytes: 1,
            ..EngineConfig::default()
        })
        .unwrap(),
    );
    let rt = Runtime::new(
        tight.clone(),
        store,
        ToolRegistry::with_builtins(),
        RuntimeConfig::default(),
    );
    for name in ["hello", "steps"] {
        deploy(&rt, name).await;
    }
    let (count, bytes) = tight.cache_size();
    assert_eq!(count, 1);
    assert!(bytes > 1, "the compiled code is counted: {bytes}");
}
