//! Output streams end to end over loopback HTTP: the window that paces a
//! producer by its consumers, consumer sessions (closed, expired,
//! `continue`), live NDJSON and SSE with `Last-Event-ID`, and the Rust
//! client with drop-to-close, reconnects and a host restart. Every case
//! runs on the embedded store and on Redis.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reprise_host::server::config::ServeConfig;
use reprise_host::{ExecutionId, Outcome, Status, Store, ToolRegistry};
use reprise_tests::proxy::Proxy;
use reprise_tests::server::TestServer;
use reprise_tests::*;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// Short enough that the tests see producers suspend and sessions expire.
fn config() -> ServeConfig {
    let mut c = ServeConfig::default();
    c.stream.hold = Duration::from_millis(200);
    c.stream.session_ttl = Duration::from_secs(2);
    c
}

async fn server(store: Arc<dyn Store>) -> TestServer {
    let s = TestServer::start(store, config(), ToolRegistry::with_builtins()).await;
    s.deploy("producer", "producer").await;
    s
}

/// Starts a producer: 202, or 200 when it ended before the answer (a short
/// one that emits without waiting can).
async fn start(s: &TestServer, body: Value) -> String {
    let r = s.post("/v1/workflows/producer/executions", &body).await;
    assert!(
        [StatusCode::ACCEPTED, StatusCode::OK].contains(&r.status),
        "{}: {}",
        r.status,
        r.body
    );
    r.body["id"].as_str().unwrap().to_string()
}

fn exec_id(id: &str) -> ExecutionId {
    ExecutionId::new(id).unwrap()
}

/// Waits up to 30 s for the execution to end.
async fn ended(s: &TestServer, id: &str) -> reprise_host::ExecutionRecord {
    tokio::time::timeout(Duration::from_secs(30), s.runtime.wait(&exec_id(id)))
        .await
        .expect("the execution ends within 30 s")
        .unwrap()
}

/// Waits up to 10 s until the execution waits for its consumers.
async fn waits_for_consumers(s: &TestServer, id: &str) -> Value {
    for _ in 0..200 {
        let r = s.get(&format!("/v1/executions/{id}")).await;
        if r.body["status"] == "suspended" && r.body["wait"]["kind"] == "consumers" {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {id} never waited for its consumers");
}

on_every_store!(
    a_byte_window,
    a_hundred_thousand_items,
    pipeline_emits_as_it_goes,
    window_holds_the_producer,
    sessions_and_abandonment,
    live_ndjson_and_sse,
    rust_client,
);

/// A consumer that reads in odd batches and pauses: the producer never
/// gets more than the window ahead of what was read, is suspended (no
/// instance alive) while nobody reads, and every item arrives once, in
/// order.
async fn window_holds_the_producer(store: Arc<dyn Store>) {
    let s = server(store).await;
    let window = 20u64;
    let n = 400u64;
    let id = start(
        &s,
        json!({"input": {"n": n, "size": 10}, "stream": {"window": window}}),
    )
    .await;
    let mut after: Option<u64> = None;
    let mut session: Option<String> = None;
    let mut seen = Vec::new();
    let mut paused = false;
    loop {
        let mut path = format!("/v1/executions/{id}/items?max=7&wait=10s");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        if let Some(sid) = &session {
            path.push_str(&format!("&session={sid}"));
        }
        let b = s.get(&path).await;
        assert_eq!(b.status, StatusCode::OK, "{}", b.body);
        let b = b.body;
        let told = after;
        // The session is given on the first read and kept.
        let given = b["session"].as_str().expect("a session").to_string();
        assert_eq!(session.get_or_insert(given.clone()), &given);
        // Reading `after` acknowledged it: the producer is at most the
        // window beyond.
        let acked = after.map_or(0, |a| a + 1);
        let count = b["count"].as_u64().unwrap();
        assert!(
            count <= acked + window,
            "{count} items emitted with {acked} read and a window of {window}"
        );
        for item in b["items"].as_array().unwrap() {
            let offset = item["offset"].as_u64().unwrap();
            assert_eq!(item["item"]["i"], offset, "{item}");
            seen.push(offset);
        }
        after = b["next_after"].as_u64().or(after);
        if !paused && seen.len() >= 100 {
            // Stop reading: the producer fills the window, holds its
            // instance for `hold`, then is suspended.
            paused = true;
            let exec = waits_for_consumers(&s, &id).await;
            assert_eq!(s.runtime.live_instances(), 0, "{exec}");
            // (Read from the runtime: an HTTP read would be a consumer.)
            let page = s.runtime.items(&exec_id(&id), None, 0).await.unwrap();
            // The host knows what the last request said was read.
            assert_eq!(
                page.count,
                told.unwrap() + 1 + window,
                "a full window while paused"
            );
        }
        if let Some(end) = b.get("end") {
            assert_eq!(end["status"], "completed", "{b}");
            break;
        }
    }
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    let done = ended(&s, &id).await;
    assert!(done.invocations > 1, "it was suspended and resumed");
}

/// A window in bytes: items of about 1 KB through 5,000 bytes keep at
/// most 4 unread; an item larger than the whole window still goes out, on
/// its own.
async fn a_byte_window(store: Arc<dyn Store>) {
    let s = server(store).await;
    for (size, most_unread) in [(1000u64, 4u64), (10_000, 1)] {
        let id = start(
            &s,
            json!({"input": {"n": 12, "size": size}, "stream": {"window_bytes": 5000}}),
        )
        .await;
        // Before anyone reads, the producer fills the byte window and waits.
        let exec = waits_for_consumers(&s, &id).await;
        assert_eq!(exec["stream"]["window_bytes"], 5000, "{exec}");
        let page = s.runtime.items(&exec_id(&id), None, 0).await.unwrap();
        assert_eq!(page.count, most_unread);
        let mut after: Option<u64> = None;
        let mut session = String::new();
        let mut n = 0;
        loop {
            let mut path = format!("/v1/executions/{id}/items?max=2&wait=10s");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}&session={session}"));
            }
            let b = s.get(&path).await.body;
            session = b["session"].as_str().unwrap().to_string();
            let read = after.map_or(0, |a| a + 1);
            let count = b["count"].as_u64().unwrap();
            assert!(count <= read + most_unread, "{count} emitted, {read} read");
            n += b["items"].as_array().unwrap().len();
            after = b["next_after"].as_u64().or(after);
            if b.get("end").is_some() {
                break;
            }
        }
        assert_eq!(n, 12);
        assert_eq!(ended(&s, &id).await.status, Status::Completed);
    }
    let r = s
        .post(
            "/v1/workflows/producer/executions",
            &json!({"input": {"n": 1}, "stream": {"window_bytes": 0}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

/// 100,000 items through a window of 100, read in batches of 100 as fast
/// as the consumer goes: the producer never runs more than the window
/// ahead, and every item arrives once, in order.
async fn a_hundred_thousand_items(store: Arc<dyn Store>) {
    let s = server(store).await;
    let (n, window) = (100_000u64, 100u64);
    let id = start(&s, json!({"input": {"n": n}, "stream": {"window": window}})).await;
    let mut after: Option<u64> = None;
    let mut session = String::new();
    let mut next = 0u64;
    let mut most_ahead = 0;
    loop {
        let mut path = format!("/v1/executions/{id}/items?max=100&wait=10s&session={session}");
        if session.is_empty() {
            path = format!("/v1/executions/{id}/items?max=100&wait=10s");
        }
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let b = s.get(&path).await.body;
        session = b["session"].as_str().unwrap().to_string();
        let read = after.map_or(0, |a| a + 1);
        let ahead = b["count"].as_u64().unwrap() - read;
        assert!(ahead <= window, "{ahead} items beyond what was read");
        most_ahead = most_ahead.max(ahead);
        for item in b["items"].as_array().unwrap() {
            assert_eq!(item["offset"], next);
            assert_eq!(item["item"]["i"], next);
            next += 1;
        }
        after = b["next_after"].as_u64().or(after);
        if b.get("end").is_some() {
            assert_eq!(b["end"]["status"], "completed", "{b}");
            break;
        }
    }
    assert_eq!(next, n);
    // Whether the window ever fills depends on who is faster (on Redis,
    // usually the consumer); `window_holds_the_producer` makes it fill.
    assert!(most_ahead > 0);
}

/// The pipeline example: two tool calls per user, a summary emitted per
/// user as it goes, a missing user emitted as an error item.
async fn pipeline_emits_as_it_goes(store: Arc<dyn Store>) {
    let s = server(store).await;
    s.deploy("pipeline", "pipeline").await;
    let client = reprise_client::Client::new(&s.base);
    let exec = client
        .start(
            "pipeline",
            &json!({"user_ids": [3, 0, 5]}),
            reprise_client::Start::stream().window(1),
        )
        .await
        .unwrap();
    let got: Vec<Value> = client
        .stream::<Value>(&exec.id)
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0]["name"], "User 3");
    assert_eq!(got[0]["posts"], 3);
    assert_eq!(got[0]["first_title"], "Post 1 by user 3");
    assert_eq!(got[1]["id"], 0);
    assert!(
        got[1]["error"].as_str().unwrap().contains("not-found"),
        "{got:?}"
    );
    assert_eq!(got[2]["name"], "User 5");
    let done = client.status(&exec.id).await.unwrap();
    assert_eq!(done.result, Some(json!(2)));
}

/// Closing the last session cancels the producer; so does letting it
/// expire; `continue` runs to the end with nobody reading; a stream
/// nobody has read yet waits for its first consumer; bad requests.
async fn sessions_and_abandonment(store: Arc<dyn Store>) {
    let s = server(store).await;

    // Close the only session: cancelled.
    let id = start(&s, json!({"input": {"n": 100000}, "stream": {"window": 5}})).await;
    let b = s
        .get(&format!("/v1/executions/{id}/items?max=2&wait=10s"))
        .await;
    let sid = b.body["session"].as_str().unwrap().to_string();
    assert_eq!(
        b.headers.get("reprise-session").unwrap().to_str().unwrap(),
        sid
    );
    let listed = s.get(&format!("/v1/executions/{id}/sessions")).await.body;
    assert_eq!(listed["sessions"][0]["session"], sid.as_str());
    assert_eq!(listed["sessions"][0]["live"], true);
    let closed = s
        .send(
            s.http
                .delete(s.url(&format!("/v1/executions/{id}/sessions/{sid}"))),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    assert_eq!(closed.body["closed"], true);
    let done = ended(&s, &id).await;
    assert_eq!(done.outcome, Some(Outcome::Cancelled));
    assert!(done.journal_len < 20, "{} steps", done.journal_len);
    // The closed session reads no more; an unknown one cannot be closed.
    let r = s
        .get(&format!("/v1/executions/{id}/items?session={sid}"))
        .await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    assert_eq!(r.problem_type(), "urn:reprise:problem:session-closed");
    let r = s
        .send(
            s.http
                .delete(s.url(&format!("/v1/executions/{id}/sessions/nope"))),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // A consumer that stops reading expires after the TTL: cancelled.
    let id = start(&s, json!({"input": {"n": 100000}, "stream": {"window": 5}})).await;
    let b = s
        .get(&format!("/v1/executions/{id}/items?max=1&wait=10s"))
        .await;
    assert!(b.body["session"].is_string(), "{}", b.body);
    let done = ended(&s, &id).await;
    assert_eq!(done.outcome, Some(Outcome::Cancelled));
    let listed = s.get(&format!("/v1/executions/{id}/sessions")).await.body;
    assert_eq!(listed["sessions"][0]["live"], false, "{listed}");

    // `continue`: once the consumer leaves, the producer runs to its end
    // and every item stays readable.
    let id = start(
        &s,
        json!({"input": {"n": 30}, "stream": {"window": 3, "on_abandon": "continue"}}),
    )
    .await;
    let b = s
        .get(&format!("/v1/executions/{id}/items?max=1&wait=10s"))
        .await;
    let sid = b.body["session"].as_str().unwrap().to_string();
    let closed = s
        .send(
            s.http
                .delete(s.url(&format!("/v1/executions/{id}/sessions/{sid}"))),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK);
    let done = ended(&s, &id).await;
    assert_eq!(done.status, Status::Completed);
    let all = s
        .get(&format!("/v1/executions/{id}/items?max=100&session=late"))
        .await
        .body;
    assert_eq!(all["items"].as_array().unwrap().len(), 30, "{all}");
    assert_eq!(all["end"]["status"], "completed");

    // Nobody has read yet: the window counts from the first item and the
    // producer waits, neither running on nor cancelled.
    let id = start(&s, json!({"input": {"n": 30}, "stream": {"window": 3}})).await;
    let exec = waits_for_consumers(&s, &id).await;
    assert_eq!(exec["stream"]["on_abandon"], "cancel", "{exec}");
    let page = s.runtime.items(&exec_id(&id), None, 0).await.unwrap();
    assert_eq!(page.count, 3);
    // An explicit session, then reading everything through it.
    let opened = s
        .post(&format!("/v1/executions/{id}/sessions"), &json!({}))
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let sid = opened.body["session"].as_str().unwrap().to_string();
    let mut after = None::<u64>;
    let mut n = 0;
    loop {
        let mut path = format!("/v1/executions/{id}/items?session={sid}&wait=10s");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let b = s.get(&path).await.body;
        n += b["items"].as_array().unwrap().len();
        after = b["next_after"].as_u64();
        if b.get("end").is_some() {
            break;
        }
    }
    assert_eq!(n, 30);

    // Bad requests.
    for (body, what) in [
        (
            json!({"input": {"n": 1}, "stream": {"window": 0}}),
            "window",
        ),
        (
            json!({"input": {"n": 1}, "stream": {"on_abandon": "later"}}),
            "on_abandon",
        ),
        (
            json!({"input": {"n": 1}, "stream": {"windows": 3}}),
            "windows",
        ),
    ] {
        let r = s.post("/v1/workflows/producer/executions", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(
            r.body["detail"].as_str().unwrap().contains(what),
            "{}",
            r.body
        );
    }
    let r = s
        .get(&format!("/v1/executions/{id}/items?session=no%20spaces"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

/// One server-sent event.
#[derive(Debug, Default, Clone)]
struct Event {
    id: Option<String>,
    event: String,
    data: String,
}

/// Reads events from an SSE response until `stop` says so or it ends.
async fn read_events(resp: reqwest::Response, stop: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), body.next())
        .await
        .expect("an event within 20 s")
    {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut e = Event::default();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    e.id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("event:") {
                    e.event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    e.data.push_str(v.trim_start());
                }
            }
            if !e.event.is_empty() {
                events.push(e);
                if stop(&events) {
                    return events;
                }
            }
        }
    }
    events
}

/// Every event of an execution's stream, read as SSE from the start.
async fn all_events(s: &TestServer, id: &str) -> Vec<Event> {
    let resp = s
        .http
        .get(s.url(&format!("/v1/executions/{id}/items")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    read_events(resp, |_| false).await
}

/// NDJSON to the end; SSE read in part, dropped, and resumed with
/// `Last-Event-ID` exactly after the last item seen; a failed workflow's
/// SSE ends with a typed error event after all its items.
async fn live_ndjson_and_sse(store: Arc<dyn Store>) {
    let s = server(store).await;

    // NDJSON, live while the producer sleeps between items.
    let id = start(&s, json!({"input": {"n": 5, "sleep_ms": 20}})).await;
    let resp = s
        .http
        .get(s.url(&format!("/v1/executions/{id}/items")))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/x-ndjson"
    );
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v.get("heartbeat").is_none())
        .collect();
    let offsets: Vec<u64> = lines.iter().filter_map(|l| l["offset"].as_u64()).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4], "{text}");
    assert_eq!(
        lines.last().unwrap()["end"]["status"],
        "completed",
        "{text}"
    );

    // SSE on a paced stream: read six items, drop the connection, resume.
    let id = start(
        &s,
        json!({"input": {"n": 12}, "stream": {"window": 4, "on_abandon": "continue"}}),
    )
    .await;
    let url = s.url(&format!("/v1/executions/{id}/items?max=3"));
    let resp = s
        .http
        .get(&url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let session = resp
        .headers()
        .get("reprise-session")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let first = read_events(resp, |e| e.len() == 6).await;
    let ids: Vec<&str> = first.iter().map(|e| e.id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4", "5"]);
    assert!(first.iter().all(|e| e.event == "item"));
    let item: Value = serde_json::from_str(&first[5].data).unwrap();
    assert_eq!(item["i"], 5);
    let resp = s
        .http
        .get(format!("{url}&session={session}"))
        .header("accept", "text/event-stream")
        .header("last-event-id", "5")
        .send()
        .await
        .unwrap();
    let rest = read_events(resp, |e| e.last().is_some_and(|e| e.event != "item")).await;
    let ids: Vec<&str> = rest.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(ids, ["6", "7", "8", "9", "10", "11"], "{rest:?}");
    let end = rest.last().unwrap();
    assert_eq!(end.event, "end");
    assert_eq!(
        serde_json::from_str::<Value>(&end.data).unwrap()["status"],
        "completed"
    );

    // A live reader keeps its session alive through a quiet spell longer
    // than the session TTL (the producer sleeps 2.5 s between items):
    // the producer is not cancelled.
    let id = start(
        &s,
        json!({"input": {"n": 2, "sleep_ms": 2500}, "stream": {"window": 1}}),
    )
    .await;
    let events = all_events(&s, &id).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["item", "item", "end"], "{events:?}");

    // A failure: every item, then a typed error event.
    let id = start(&s, json!({"input": {"n": 3, "fail": true}})).await;
    let events = all_events(&s, &id).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["item", "item", "item", "error"], "{events:?}");
    let error: Value = serde_json::from_str(&events[3].data).unwrap();
    assert_eq!(error["status"], "failed");
    assert_eq!(error["error"]["kind"], "workflow-error");

    // A Last-Event-ID that is not an offset.
    let r = s
        .send(
            s.http
                .get(s.url(&format!("/v1/executions/{id}/items")))
                .header("accept", "text/event-stream")
                .header("last-event-id", "yesterday"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[derive(Debug, Deserialize)]
struct Item {
    i: u64,
}

/// The Rust client: a whole stream, a failed one, drop-to-close, and a
/// read that survives severed connections and a host restart.
async fn rust_client(store: Arc<dyn Store>) {
    use reprise_client::{Client, Error, ExecutionStatus, FailureKind, Start, StreamOptions};
    let s = server(store.clone()).await;
    let client = Client::new(&s.base);

    let exec = client
        .start("producer", &json!({"n": 60}), Start::stream().window(10))
        .await
        .unwrap();
    let items: Vec<u64> = client
        .stream_with::<Item>(
            &exec.id,
            StreamOptions {
                batch: 16,
                ..Default::default()
            },
        )
        .map(|i| i.unwrap().i)
        .collect()
        .await;
    assert_eq!(items, (0..60).collect::<Vec<_>>());

    let exec = client
        .start("producer", &json!({"n": 3, "fail": true}), Start::default())
        .await
        .unwrap();
    let got: Vec<Result<Item, Error>> = client.stream(&exec.id).collect().await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got[..3].iter().all(|r| r.is_ok()));
    match &got[3] {
        Err(Error::Failed { kind, .. }) => assert_eq!(*kind, FailureKind::WorkflowError),
        other => panic!("expected the failure, got {other:?}"),
    }

    // The typed calls: deploy, status, signal, cancel, and the host's
    // problems as errors.
    let d = client
        .deploy("producer-2", guest("producer"))
        .await
        .unwrap();
    assert_eq!((d.name.as_str(), d.version), ("producer-2", 1));
    let exec = client
        .start(
            "producer-2",
            &json!({"n": 5, "sleep_ms": 60000}),
            Start::default().id("c-1"),
        )
        .await
        .unwrap();
    assert_eq!(exec.id, "c-1");
    client
        .signal("c-1", "ignored", &json!({"a": 1}))
        .await
        .unwrap();
    let cancelled = client.cancel("c-1").await.unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(
        client.status("c-1").await.unwrap().status,
        ExecutionStatus::Cancelled
    );
    match client.status("nope").await {
        Err(Error::Api { status, kind, .. }) => {
            assert_eq!(status, 404);
            assert!(kind.ends_with("execution-not-found"), "{kind}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }

    // Dropping the stream closes its session: the producer is cancelled.
    let exec = client
        .start("producer", &json!({"n": 100000}), Start::stream().window(5))
        .await
        .unwrap();
    let mut stream = client.stream_with::<Item>(
        &exec.id,
        StreamOptions {
            batch: 2,
            ..Default::default()
        },
    );
    for want in 0..3 {
        assert_eq!(stream.next().await.unwrap().unwrap().i, want);
    }
    drop(stream);
    let done = ended(&s, &exec.id).await;
    assert_eq!(done.outcome, Some(Outcome::Cancelled));

    // Through a proxy that drops every connection, then a new host on the
    // same store: every item once, in order.
    let proxy = Proxy::start(&s.base).await;
    let client = Client::new(&proxy.url);
    let exec = client
        .start("producer", &json!({"n": 40}), Start::stream().window(8))
        .await
        .unwrap();
    let mut stream = client.stream_with::<Item>(
        &exec.id,
        StreamOptions {
            batch: 5,
            retry_delay: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let mut got = Vec::new();
    while got.len() < 10 {
        got.push(stream.next().await.unwrap().unwrap().i);
    }
    proxy.sever();
    while got.len() < 20 {
        got.push(stream.next().await.unwrap().unwrap().i);
    }
    waits_for_consumers(&s, &exec.id).await;
    s.stop().await;
    proxy.sever();
    let s = server(store).await;
    proxy.retarget(&s.base);
    while let Some(item) = stream.next().await {
        got.push(item.unwrap().i);
    }
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert_eq!(stream.last_offset(), Some(39));
    ended(&s, &exec.id).await;
}
