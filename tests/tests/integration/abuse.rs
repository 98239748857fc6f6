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
