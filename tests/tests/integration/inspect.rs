//! What the dashboard reads besides the journal, over real HTTP on every
//! store: counts by status, an execution's input, a stream watched without
//! a session, and the sandboxed replay of the time-travel view (which must
//! run no tool and write nothing).

use std::sync::Arc;

use reprise_host::Store;
use reprise_host::server::config::ServeConfig;
use reprise_tests::server::TestServer;
use reprise_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_every_store!(
    counts_by_status_and_the_input,
    replay_to_an_entry_shows_the_log_up_to_there,
    a_sandboxed_replay_runs_no_tool_and_writes_nothing,
    a_stream_watched_without_a_session,
);

async fn server(store: Arc<dyn Store>) -> (TestServer, Calls) {
    let calls = Calls::default();
    let s = TestServer::start(store, ServeConfig::default(), counting_tools(&calls)).await;
    (s, calls)
}

async fn counts_by_status_and_the_input(store: Arc<dyn Store>) {
    let (s, _) = server(store).await;
    s.deploy("sequential", "sequential").await;
    s.deploy("approval", "approval").await;
    for i in 1..=3 {
        let r = s
            .start_and_wait("sequential", json!({"input": {"user_id": i}}))
            .await;
        assert_eq!(r.body["status"], "completed", "{}", r.body);
    }
    let r = s
        .start_and_wait(
            "approval",
            json!({"id": "waits", "input": {"deadline_ms": 3_600_000}}),
        )
        .await;
    assert_eq!(r.body["status"], "suspended", "{}", r.body);
    let c = s.get("/v1/counts").await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    for (status, n) in [
        ("running", 0),
        ("suspended", 1),
        ("completed", 3),
        ("failed", 0),
        ("cancelled", 0),
    ] {
        assert_eq!(c.body[status], n, "{status}: {}", c.body);
    }
    assert!(c.body["at_ms"].as_u64().unwrap() > 0);
    // The Rust client reads the same.
    let counts = reprise_client::Client::new(&s.base).counts().await.unwrap();
    assert_eq!((counts.completed, counts.suspended), (3, 1));

    // The input is in the answer about one execution, not in lists.
    let one = s.get("/v1/executions/waits").await;
    assert_eq!(one.body["input"], json!({"deadline_ms": 3_600_000}));
    let list = s.get("/v1/executions?workflow=approval").await;
    assert_eq!(list.body["executions"][0]["id"], "waits");
    assert!(list.body["executions"][0].get("input").is_none());
}

async fn replay_to_an_entry_shows_the_log_up_to_there(store: Arc<dyn Store>) {
    let (s, _) = server(store).await;
    s.deploy("sequential", "sequential").await;
    let done = s
        .start_and_wait("sequential", json!({"id": "seq", "input": {"user_id": 7}}))
        .await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);

    let r = s.get("/v1/executions/seq/replay?to=0").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"replayed": 0, "total": 3, "stop": "reached", "log": []})
    );

    let r = s.get("/v1/executions/seq/replay?to=1").await;
    let client = reprise_client::Client::new(&s.base);
    let view = client.replay("seq", 1).await.unwrap();
    assert_eq!(serde_json::to_value(&view).unwrap(), r.body);
    assert_eq!(
        (r.body["replayed"].clone(), r.body["stop"].clone()),
        (json!(1), json!("reached"))
    );
    assert_eq!(
        r.body["log"],
        json!([{"after": 1, "level": "info", "message": "user 7 is User 7"}])
    );

    // Past the end: the whole journal, and the workflow's own result again.
    let r = s.get("/v1/executions/seq/replay?to=99").await;
    assert_eq!(r.body["replayed"], 3);
    assert_eq!(r.body["stop"], "completed");
    assert_eq!(r.body["result"], done.body["result"]);
    let lines: Vec<(u64, String)> = r.body["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["after"].as_u64().unwrap(),
                l["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], (1, "user 7 is User 7".to_string()));
    assert!(
        lines[1].0 == 2 && lines[1].1.ends_with(" posts"),
        "{lines:?}"
    );
    assert!(
        lines[2].0 == 3 && lines[2].1.ends_with(" comments"),
        "{lines:?}"
    );

    // Bad requests are problems, not panics.
    let r = s.get("/v1/executions/nope/replay?to=1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.problem_type(), "urn:reprise:problem:execution-not-found");
    let r = s.get("/v1/executions/seq/replay?to=-1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = s.get("/v1/executions/seq/replay").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = s.get("/v1/executions/seq/replay?to=4294967296").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("out of range"));
    let r = s.get("/v1/executions/seq/replay?to=4294967295").await;
    assert_eq!(r.body["replayed"], 3, "{}", r.body);
}

async fn a_sandboxed_replay_runs_no_tool_and_writes_nothing(store: Arc<dyn Store>) {
    let (s, calls) = server(store).await;
    s.deploy("steps", "steps").await;
    let done = s
        .start_and_wait(
            "steps",
            json!({"id": "fan", "input": {"n": 4, "parallel": true}}),
        )
        .await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    assert_eq!(calls.total(), 4);
    let before = s.get("/v1/executions/fan/journal?limit=1000").await.body;
    let kinds: Vec<&str> = before["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(&kinds[..4], ["start"; 4], "{kinds:?}");

    // Cut after the starts: their calls have no completion in the replayed
    // entries, which in a real resume would run them again. Not here.
    for to in [1, 4, 5] {
        let r = s.get(&format!("/v1/executions/fan/replay?to={to}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["replayed"], to, "{}", r.body);
        assert_eq!(r.body["stop"], "reached", "{}", r.body);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(calls.total(), 4, "a sandboxed replay called a tool");
    let after = s.get("/v1/executions/fan/journal?limit=1000").await.body;
    assert_eq!(before, after, "a sandboxed replay changed the journal");
    let rec = s.get("/v1/executions/fan").await.body;
    assert_eq!(
        (rec["status"].clone(), rec["invocations"].clone()),
        (
            done.body["status"].clone(),
            done.body["invocations"].clone()
        )
    );
}

async fn a_stream_watched_without_a_session(store: Arc<dyn Store>) {
    let (s, _) = server(store).await;
    s.deploy("producer", "producer").await;
    let r = s
        .start_and_wait(
            "producer",
            json!({"id": "p", "input": {"n": 5}, "stream": {"window": 10}}),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{}", r.body);
    let watched = s.get("/v1/executions/p/items?observe=true").await;
    assert_eq!(watched.status, StatusCode::OK, "{}", watched.body);
    assert_eq!(watched.body["items"].as_array().unwrap().len(), 5);
    assert_eq!(watched.body.get("session"), None);
    assert!(watched.headers.get("reprise-session").is_none());
    let sessions = s.get("/v1/executions/p/sessions").await;
    assert_eq!(sessions.body["sessions"], Value::Array(vec![]));

    // A consumer's read opens one, as before.
    let read = s.get("/v1/executions/p/items").await;
    assert!(read.body["session"].is_string(), "{}", read.body);
    let r = s
        .get("/v1/executions/p/items?observe=true&session=abc")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["detail"].as_str().unwrap().contains("observe"),
        "{}",
        r.body
    );
}
