//! What a client without a token, a misbehaving client, or a hostile guest
//! cannot do to a host: exhaust its memory, connections or instance slots,
//! spin it on a bad offset, or flood its log.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::server::config::ServeConfig;
use reprise_host::{Store, ToolRegistry};
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
