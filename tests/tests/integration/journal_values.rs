//! `GET /v1/executions/{id}/journal?values=true` on both stores: results
//! decoded to JSON, raw bytes as hex, and a large value (kept out of line
//! on Redis) by size and digest, the same digest on both.

use reprise_host::server::config::ServeConfig;
use reprise_tests::server::TestServer;
use reprise_tests::*;
use serde_json::json;

/// Runs the three cases on `store`; returns the large value's digest.
async fn values_on(store: std::sync::Arc<dyn reprise_host::Store>) -> String {
    let calls = Calls::default();
    let mut tools = counting_tools(&calls);
    add_blob_tool(&mut tools, &calls);
    let s = TestServer::start(store, ServeConfig::default(), tools).await;
    s.deploy("sequential", "sequential").await;
    s.deploy("bigresult", "bigresult").await;

    let r = s
        .start_and_wait("sequential", json!({"id": "seq", "input": {"user_id": 5}}))
        .await;
    assert_eq!(r.body["status"], "completed", "{}", r.body);
    let plain = s.get("/v1/executions/seq/journal").await.body;
    assert!(plain["entries"][0].get("result").is_none(), "{plain}");
    let page = s.get("/v1/executions/seq/journal?values=true").await.body;
    let user = &page["entries"][0];
    assert_eq!(user["detail"], "demo/user");
    assert_eq!(user["result"]["json"]["name"], "User 5", "{user}");
    assert_eq!(user["result"]["json"]["id"], 5);
    // The journal keeps a tool's input as a digest only.
    assert_eq!(user["input"]["omitted"], true, "{user}");
    assert_eq!(user["input"]["digest"].as_str().unwrap().len(), 64);
    assert!(user["input"]["size"].as_u64().unwrap() > 0);

    let mut digest = String::new();
    for (id, size) in [("small", 16u64), ("large", 1 << 20)] {
        let r = s
            .start_and_wait("bigresult", json!({"id": id, "input": {"size": size}}))
            .await;
        assert_eq!(r.body["result"]["len"], size, "{}", r.body);
        let page = s
            .get(&format!("/v1/executions/{id}/journal?values=true"))
            .await
            .body;
        let result = &page["entries"][0]["result"];
        assert_eq!(result["size"], size, "{result}");
        if size == 16 {
            // Raw bytes, not MessagePack: hex.
            assert_eq!(
                result["hex"].as_str().unwrap(),
                blob_bytes(size)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                "{result}"
            );
        } else {
            assert_eq!(result["omitted"], true, "{result}");
            assert!(result.get("hex").is_none() && result.get("json").is_none());
            digest = result["digest"].as_str().unwrap().to_string();
        }
    }
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_values_on_both_stores() {
    let (embedded, _g1) = file_store().await;
    let (redis, _g2) = redis_store().await;
    let on_embedded = values_on(embedded).await;
    let on_redis = values_on(redis).await;
    assert_eq!(
        on_embedded, on_redis,
        "one value, one digest, wherever kept"
    );
    assert_eq!(on_embedded.len(), 64);
}
