//! The HTTP API over loopback: every route, bad input, admission, auth,
//! graceful shutdown. Route tests run on the embedded store and on Redis.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use reprise_host::server::config::ServeConfig;
use reprise_host::{Store, ToolRegistry};
use reprise_tests::server::TestServer;
use reprise_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn config() -> ServeConfig {
    ServeConfig::default()
}

/// Deploy, start and wait, read the execution, its journal in pages, the
/// lists of workflows and executions.
async fn routes_end_to_end(store: Arc<dyn Store>) {
    let s = TestServer::start(store, config(), ToolRegistry::with_builtins()).await;
    let d = s.deploy("sequential", "sequential").await;
    assert_eq!(d["name"], "sequential");
    assert_eq!(d["version"], 1);
    assert_eq!(d["digest"].as_str().unwrap().len(), 64);
    assert!(
        d["imports"]
            .as_array()
            .unwrap()
            .contains(&json!("reprise:workflow/host@0.3.0")),
        "{d}"
    );

    let r = s
        .start_and_wait("sequential", json!({"input": {"user_id": 7}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["result"]["user"]["name"], "User 7");
    assert_eq!(r.body["steps"], 3);
    assert_eq!(r.body["digest"], d["digest"]);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("/v1/executions/{id}")
    );

    let e = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(e.status, StatusCode::OK);
    assert_eq!(e.body["result"], r.body["result"]);
    assert!(e.body["created_at_ms"].as_u64().unwrap() <= e.body["updated_at_ms"].as_u64().unwrap());

    // The journal, one entry per page.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let p = s
            .get(&format!(
                "/v1/executions/{id}/journal?after={after}&limit=1"
            ))
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_eq!(p.body["total"], 3);
        for entry in p.body["entries"].as_array().unwrap() {
            seen.push(entry["detail"].as_str().unwrap().to_string());
        }
        match p.body["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, ["demo/user", "demo/posts", "demo/comments"]);

    // A second execution, then the lists.
    s.start_and_wait("sequential", json!({"input": {"user_id": 8}}))
        .await;
    let w = s.get("/v1/workflows").await;
    assert_eq!(w.body["workflows"][0]["name"], "sequential");
    let w = s.get("/v1/workflows/sequential").await;
    assert_eq!(w.body["current"]["version"], 1);
    assert_eq!(w.body["versions"].as_array().unwrap().len(), 1);

    let all = s
        .get("/v1/executions?workflow=sequential&status=completed")
        .await;
    assert_eq!(
        all.body["executions"].as_array().unwrap().len(),
        2,
        "{}",
        all.body
    );
    let none = s.get("/v1/executions?status=failed").await;
    assert!(none.body["executions"].as_array().unwrap().is_empty());
    // Paging: one per page, two pages, no repeats.
    let p1 = s.get("/v1/executions?limit=1").await;
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_string();
    let p2 = s
        .get(&format!("/v1/executions?limit=1&cursor={cursor}"))
        .await;
    assert!(p2.body.get("next_cursor").is_none(), "{}", p2.body);
    assert_ne!(
        p1.body["executions"][0]["id"],
        p2.body["executions"][0]["id"]
    );
    // Newest first by default, oldest first on request; the time range
    // filters on the last status change.
    let ids = |body: &Value| -> Vec<String> {
        body["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let newest = ids(&s.get("/v1/executions").await.body);
    let mut oldest = ids(&s.get("/v1/executions?order=oldest").await.body);
    oldest.reverse();
    assert_eq!(newest, oldest);
    assert_eq!(ids(&p1.body), newest[..1]);
    let later = reprise_host::store::now_ms() + 60_000;
    let future = s
        .get(&format!("/v1/executions?changed_since_ms={later}"))
        .await;
    assert!(ids(&future.body).is_empty(), "{}", future.body);
    let past = s
        .get(&format!("/v1/executions?changed_before_ms={later}"))
        .await;
    assert_eq!(ids(&past.body), newest);
    for bad in [
        "order=sideways",
        "cursor=nonsense",
        "changed_since_ms=soon",
        "changed_since_ms=9223372036854775808",
        "changed_before_ms=253402300800000",
    ] {
        let r = s.get(&format!("/v1/executions?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    s.stop().await;
}

/// The same id starts once; another input under it is a conflict.
async fn idempotent_start(store: Arc<dyn Store>) {
    let calls = Calls::default();
    let s = TestServer::start(store, config(), counting_tools(&calls)).await;
    s.deploy("steps", "steps").await;
    let body = json!({"id": "order-1", "input": {"n": 5}});
    let first = s.start_and_wait("steps", body.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let again = s.start_and_wait("steps", body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], "order-1");
    assert_eq!(again.body["invocations"], first.body["invocations"]);
    assert_eq!(calls.total(), 5, "the second start ran nothing");

    let conflict = s
        .post(
            "/v1/workflows/steps/executions",
            &json!({"id": "order-1", "input": {"n": 6}}),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.problem_type(), "urn:reprise:problem:id-conflict");
    s.stop().await;
}

/// `?wait` that runs out gives 202 with the state; a signal wait returns
/// at once; a signal to a missing execution is a 404.
async fn wait_timeout_and_signals(store: Arc<dyn Store>) {
    let s = TestServer::start(store, config(), ToolRegistry::with_builtins()).await;
    s.deploy("signals", "signals").await;
    // A 2 s timer: the 300 ms wait runs out first.
    let r = s
        .post(
            "/v1/workflows/signals/executions?wait=300ms",
            &json!({"input": {"sleep_ms": 2000}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "suspended");
    assert_eq!(r.body["wait"]["kind"], "timer");
    let id = r.body["id"].as_str().unwrap().to_string();

    // No timer: the start returns as soon as it waits for the signal.
    let started = std::time::Instant::now();
    let r2 = s
        .post(
            "/v1/workflows/signals/executions?wait=30s",
            &json!({"input": {"sleep_ms": 0}}),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(25));
    assert_eq!(r2.status, StatusCode::ACCEPTED);
    assert_eq!(r2.body["wait"]["kind"], "signal");
    assert_eq!(r2.body["wait"]["signal"], "approve");
    let id2 = r2.body["id"].as_str().unwrap();

    let sig = s
        .post(
            &format!("/v1/executions/{id2}/signals/approve"),
            &json!({"payload": {"by": "ann"}}),
        )
        .await;
    assert_eq!(sig.status, StatusCode::ACCEPTED, "{}", sig.body);
    let done = wait(&s.runtime, &reprise_host::ExecutionId::new(id2).unwrap()).await;
    assert_eq!(result::<Value>(&done)["approved_by"], "ann");

    // The first one: signal it before its timer ends; it finishes after.
    s.post(
        &format!("/v1/executions/{id}/signals/approve"),
        &json!({"payload": {"by": "bob"}}),
    )
    .await;
    let done = wait(&s.runtime, &reprise_host::ExecutionId::new(&id).unwrap()).await;
    assert_eq!(result::<Value>(&done)["approved_by"], "bob");

    let missing = s
        .post("/v1/executions/nope/signals/approve", &json!({}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.problem_type(),
        "urn:reprise:problem:execution-not-found"
    );
    let ended = s
        .post(&format!("/v1/executions/{id}/signals/approve"), &json!({}))
        .await;
    assert_eq!(ended.status, StatusCode::CONFLICT);
    assert_eq!(ended.problem_type(), "urn:reprise:problem:execution-ended");
    s.stop().await;
}

/// Re-deploying adds a version; a running execution stays on its digest.
async fn pinned_across_redeploy(store: Arc<dyn Store>) {
    let s = TestServer::start(store, config(), ToolRegistry::with_builtins()).await;
    let v1 = s.deploy("flow", "signals").await;
    let r = s
        .start_and_wait("flow", json!({"input": {"sleep_ms": 0}}))
        .await;
    assert_eq!(r.body["wait"]["kind"], "signal");
    let id = r.body["id"].as_str().unwrap().to_string();

    let v2 = s.deploy("flow", "hello").await;
    assert_eq!(v2["version"], 2);
    assert_ne!(v2["digest"], v1["digest"]);
    // The same bytes again add no version.
    assert_eq!(s.deploy("flow", "hello").await["version"], 2);
    let w = s.get("/v1/workflows/flow").await;
    assert_eq!(w.body["current"]["digest"], v2["digest"]);
    assert_eq!(w.body["versions"].as_array().unwrap().len(), 2);

    s.post(
        &format!("/v1/executions/{id}/signals/approve"),
        &json!({"payload": {"by": "pinned"}}),
    )
    .await;
    let done = wait(&s.runtime, &reprise_host::ExecutionId::new(&id).unwrap()).await;
    assert_eq!(done.digest.to_hex(), v1["digest"].as_str().unwrap());
    assert_eq!(result::<Value>(&done)["approved_by"], "pinned");

    let new = s
        .start_and_wait("flow", json!({"input": {"name": "there"}}))
        .await;
    assert_eq!(new.body["digest"], v2["digest"]);
    assert_eq!(new.body["status"], "completed", "{}", new.body);
    s.stop().await;
}

/// Cancelling a suspended execution is final and recorded.
async fn cancel_suspended(store: Arc<dyn Store>) {
    let s = TestServer::start(store, config(), ToolRegistry::with_builtins()).await;
    s.deploy("signals", "signals").await;
    let r = s
        .start_and_wait("signals", json!({"input": {"sleep_ms": 0}}))
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let c = s
        .send(s.http.delete(s.url(&format!("/v1/executions/{id}"))))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.body["status"], "cancelled");
    let again = s
        .send(s.http.delete(s.url(&format!("/v1/executions/{id}"))))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.problem_type(), "urn:reprise:problem:execution-ended");
    let sig = s
        .post(&format!("/v1/executions/{id}/signals/approve"), &json!({}))
        .await;
    assert_eq!(sig.status, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(e.body["status"], "cancelled");
    assert_eq!(e.body["steps"], 3, "the guest did not run again");
    let missing = s.send(s.http.delete(s.url("/v1/executions/missing"))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// MessagePack in and out.
async fn msgpack_bodies(store: Arc<dyn Store>) {
    let s = TestServer::start(store, config(), ToolRegistry::with_builtins()).await;
    s.deploy("hello", "hello").await;
    let body = rmp_serde::to_vec_named(&json!({"input": {"name": "msgpack"}})).unwrap();
    let r = s
        .http
        .post(s.url("/v1/workflows/hello/executions?wait=30s"))
        .header("content-type", "application/msgpack")
        .header("accept", "application/msgpack")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/msgpack");
    let v: Value = rmp_serde::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["status"], "completed", "{v}");
    assert!(v["result"].as_str().unwrap().contains("msgpack"), "{v}");
    s.stop().await;
}

reprise_tests::on_every_store!(
    routes_end_to_end,
    idempotent_start,
    wait_timeout_and_signals,
    pinned_across_redeploy,
    cancel_suspended,
    msgpack_bodies,
    graceful_shutdown_loses_nothing,
    items_in_batches,
);

/// The output stream in batches: every item once and in order across
/// invocations (2 steps each), paging with `after`/`max`, the end after
/// the last item (completed, failed with its error, or empty), a long poll
/// that returns when an item arrives, and bad requests.
async fn items_in_batches(store: Arc<dyn Store>) {
    let mut cfg = config();
    cfg.limits.max_steps_per_invocation = Some(2);
    let s = TestServer::start(store, cfg, ToolRegistry::with_builtins()).await;
    s.deploy("producer", "producer").await;
    let s = &s;
    let start = |input: Value| async move {
        let r = s
            .post(
                "/v1/workflows/producer/executions",
                &json!({"input": input}),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    };
    let items = |id: &str, query: &str| {
        let path = format!("/v1/executions/{id}/items{query}");
        async move { s.get(&path).await }
    };
    let offsets = |b: &Value| -> Vec<u64> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["offset"].as_u64().unwrap())
            .collect()
    };

    // Seven items over four invocations; read them all after the end.
    let id = start(json!({"n": 7, "size": 3})).await;
    let first = items(&id, "?wait=30s").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let done = s
        .runtime
        .wait(&reprise_host::ExecutionId::new(id.as_str()).unwrap())
        .await
        .unwrap();
    assert!(done.invocations >= 4, "{} invocations", done.invocations);
    let all = items(&id, "").await.body;
    assert_eq!(offsets(&all), (0..7).collect::<Vec<u64>>());
    assert_eq!(all["items"][3]["item"], json!({"i": 3, "pad": "xxx"}));
    assert_eq!(
        (all["count"].clone(), all["next_after"].clone()),
        (json!(7), json!(6))
    );
    assert_eq!(all["end"], json!({"status": "completed"}));
    // Paging.
    let page = items(&id, "?after=1&max=2").await.body;
    assert_eq!(offsets(&page), vec![2, 3]);
    assert_eq!(page["next_after"], 3);
    assert!(page.get("end").is_none(), "{page}");
    let tail = items(&id, "?after=6").await.body;
    assert_eq!(offsets(&tail), Vec::<u64>::new());
    assert_eq!(
        (tail["next_after"].clone(), tail["end"]["status"].clone()),
        (json!(6), json!("completed"))
    );

    // A failure ends the stream with its error, after every item.
    let id = start(json!({"n": 3, "fail": true})).await;
    s.runtime
        .wait(&reprise_host::ExecutionId::new(id.as_str()).unwrap())
        .await
        .unwrap();
    let b = items(&id, "?max=2").await.body;
    assert_eq!(offsets(&b), vec![0, 1]);
    assert!(b.get("end").is_none(), "the end before the last item: {b}");
    let b = items(&id, "?after=1").await.body;
    assert_eq!(offsets(&b), vec![2]);
    assert_eq!(b["end"]["status"], "failed");
    assert_eq!(b["end"]["error"]["kind"], "workflow-error");

    // Nothing emitted: empty, then the end.
    let id = start(json!({"n": 0})).await;
    let b = items(&id, "?wait=30s").await.body;
    assert_eq!(
        (b["count"].clone(), b["end"]["status"].clone()),
        (json!(0), json!("completed"))
    );
    assert!(b.get("next_after").is_none(), "{b}");

    // A long poll returns when the next item arrives (each comes after a
    // 300 ms durable timer), never with an empty batch before the end.
    let id = start(json!({"n": 3, "sleep_ms": 300})).await;
    let mut after: Option<u64> = None;
    let mut seen = Vec::new();
    loop {
        let q = match after {
            Some(a) => format!("?wait=30s&after={a}"),
            None => "?wait=30s".to_string(),
        };
        let b = items(&id, &q).await.body;
        seen.extend(offsets(&b));
        if b.get("end").is_some() {
            assert_eq!(b["end"]["status"], "completed");
            break;
        }
        assert!(
            !b["items"].as_array().unwrap().is_empty(),
            "empty batch before the end: {b}"
        );
        after = b["next_after"].as_u64();
    }
    assert_eq!(seen, vec![0, 1, 2]);

    // Bad requests.
    assert_eq!(items("nope", "").await.status, StatusCode::NOT_FOUND);
    let r = items(&id, "?wait=soon").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = items(&id, "?max=0").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

/// SIGTERM-style shutdown while a workflow runs: the step in progress
/// finishes and is recorded, the execution is left runnable, and a new host
/// on the same store finishes it without running any step twice.
async fn graceful_shutdown_loses_nothing(store: Arc<dyn Store>) {
    let calls = Calls::default();
    let slow_echo = |calls: &Calls| {
        let mut tools = ToolRegistry::with_builtins();
        let calls = calls.clone();
        tools.register_fn(
            "builtin",
            "echo",
            move |call: reprise_host::tools::ToolCall| {
                calls.record(&call);
                async move {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    Ok(call.input)
                }
            },
        );
        tools
    };
    let mut cfg = config();
    cfg.shutdown_grace = Duration::from_secs(10);
    let s = TestServer::start(store.clone(), cfg.clone(), slow_echo(&calls)).await;
    s.deploy("steps", "steps").await;
    let r = s
        .post(
            "/v1/workflows/steps/executions",
            &json!({"id": "long", "input": {"n": 60}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = reprise_host::ExecutionId::new("long").unwrap();
    s.runtime
        .wait_until(&id, |r| r.journal_len >= 5)
        .await
        .unwrap();
    let runtime = s.runtime.clone();
    s.stop().await;
    assert_eq!(runtime.live_instances(), 0);
    let rec = store.get_execution(&id).await.unwrap();
    assert!(!rec.status.is_terminal(), "{rec:?}");
    assert!(rec.lease.is_none(), "the lease was released: {rec:?}");
    assert!(rec.journal_len < 60, "shut down mid-run");
    assert_eq!(
        calls.total() as u64,
        rec.journal_len,
        "every step that ran was recorded"
    );
    drop(runtime);

    let s2 = TestServer::start(store.clone(), cfg, slow_echo(&calls)).await;
    let done = wait(&s2.runtime, &id).await;
    assert_eq!(result::<Value>(&done)["steps"], 60);
    assert_eq!(calls.total(), 60);
    assert_eq!(calls.max_per_key(), 1, "no step ran twice");
    s2.stop().await;
}

/// The OpenAPI document lists exactly the routes the server serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_matches_routes() {
    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, config(), ToolRegistry::with_builtins()).await;
    let doc = s.get("/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("PUT", "/v1/workflows/{name}"),
        ("GET", "/v1/workflows"),
        ("GET", "/v1/workflows/{name}"),
        ("POST", "/v1/workflows/{name}/executions"),
        ("GET", "/v1/executions"),
        ("GET", "/v1/executions/{id}"),
        ("DELETE", "/v1/executions/{id}"),
        ("GET", "/v1/executions/{id}/journal"),
        ("GET", "/v1/executions/{id}/items"),
        ("POST", "/v1/executions/{id}/sessions"),
        ("GET", "/v1/executions/{id}/sessions"),
        ("DELETE", "/v1/executions/{id}/sessions/{session}"),
        ("POST", "/v1/executions/{id}/signals/{name}"),
        ("GET", "/v1/executions/{id}/replay"),
        ("GET", "/v1/counts"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(documented, expected);
    // Every documented operation is served: no "no route" and no 405.
    for (method, path) in &documented {
        let concrete = path
            .replace("{name}", "x")
            .replace("{id}", "x")
            .replace("{session}", "x");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = s
            .send(
                s.http
                    .request(method.clone(), s.url(&concrete))
                    .header("content-type", "application/json")
                    .body("{}"),
            )
            .await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(
            r.body["type"], "urn:reprise:problem:not-found",
            "{method} {path} is documented but not served"
        );
    }
    assert!(doc.body["components"]["schemas"]["ExecutionView"].is_object());
    // What the document promises beyond the routes (the schemathesis run in
    // the test command checks the server against all of it): every
    // operation lists the errors any route can give, as problems; JSON
    // values are any value; ids and names carry their patterns.
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in ["400", "401", "403", "503"] {
                let answer = &op["responses"][status];
                assert!(
                    answer["content"]["application/problem+json"].is_object(),
                    "{method} {path} does not document {status}: {answer}"
                );
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" && p["name"] != "name" {
                    assert!(p["schema"]["pattern"].is_string(), "{method} {path}: {p}");
                }
            }
        }
    }
    let schemas = &doc.body["components"]["schemas"];
    for (schema, field) in [
        ("StartRequest", "input"),
        ("SignalRequest", "payload"),
        ("ExecutionView", "result"),
        ("ItemView", "item"),
    ] {
        let value = &schemas[schema]["properties"][field];
        assert!(value.is_object(), "{schema}.{field}");
        assert!(
            value.get("type").is_none(),
            "{schema}.{field} is typed: {value}"
        );
    }
    s.stop().await;
}

/// Health, readiness and the metrics that count what ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, config(), ToolRegistry::with_builtins()).await;
    assert_eq!(s.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(s.get("/readyz").await.status, StatusCode::OK);
    s.deploy("steps", "steps").await;
    s.start_and_wait("steps", json!({"input": {"n": 4}})).await;
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    };
    assert_eq!(value("reprise_invocations_total"), 1.0);
    assert_eq!(value("reprise_steps_total"), 4.0);
    assert_eq!(
        value("reprise_tool_call_seconds_count{category=\"builtin\"}"),
        4.0
    );
    assert_eq!(value("reprise_executions{status=\"completed\"}"), 1.0);
    assert_eq!(
        value("reprise_executions_finished_total{status=\"completed\"}"),
        1.0
    );
    assert_eq!(value("reprise_live_instances"), 0.0);
    assert!(text.contains("reprise_replay_seconds"), "{text}");
    s.stop().await;
}

/// `GET /v1/executions/{id}?wait=` holds the request until the execution
/// settles (it ends, or waits on someone outside); the Rust client's
/// `wait`, journal, list and workflow calls read the same documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_waits_until_an_execution_settles() {
    use reprise_client::{Client, ExecutionStatus, ListParams, Start, WaitKind};
    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, ServeConfig::default(), ToolRegistry::with_builtins()).await;
    let client = Client::new(&s.base);
    client.deploy("signals", guest("signals")).await.unwrap();
    // A 300 ms timer first (the execution suspends on it: not settled),
    // then a signal wait (settled: only a signal moves it on).
    let started = client
        .start(
            "signals",
            &json!({"sleep_ms": 300}),
            Start::default().id("w-1"),
        )
        .await
        .unwrap();
    assert!(!started.is_settled(), "{started:?}");
    let waiting = client.wait("w-1", Duration::from_secs(30)).await.unwrap();
    assert_eq!(waiting.status, ExecutionStatus::Suspended, "{waiting:?}");
    let wait = waiting.wait.as_ref().unwrap();
    assert_eq!(
        (wait.kind, wait.signal.as_deref()),
        (WaitKind::Signal, Some("approve"))
    );
    assert_eq!(wait.to_string(), "signal \"approve\"");
    // The same through the raw route: a settled execution answers at once.
    let r = s.get("/v1/executions/w-1?wait=30s").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["wait"]["kind"], "signal");
    let r = s.get("/v1/executions/w-1?wait=soon").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    client
        .signal("w-1", "approve", &json!({"by": "ann"}))
        .await
        .unwrap();
    let done = client.wait("w-1", Duration::from_secs(30)).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    assert_eq!(done.result.as_ref().unwrap()["approved_by"], "ann");

    let journal = client.journal_all("w-1").await.unwrap();
    assert_eq!(journal.len() as u64, done.steps);
    assert_eq!(journal.last().unwrap().kind, "signal");
    let page = client.journal("w-1", 1, 1).await.unwrap();
    assert_eq!((page.entries.len(), page.entries[0].index), (1, 1));
    let listed = client
        .list_all(&ListParams {
            workflow: Some("signals".into()),
            limit: Some(1),
            ..ListParams::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "w-1");
    let workflows = client.workflows().await.unwrap();
    assert_eq!(workflows.workflows.len(), 1);
    let wf = client.workflow("signals").await.unwrap();
    assert_eq!(wf.current.short_digest(), &wf.current.digest[..12]);
    s.stop().await;
}
