//! JavaScript workflows (`guests/js`, built with `guest-sdk/js`): the
//! seed's generator protocol and the idiomatic `ctx` form run as ordinary
//! components, replay through fresh instances, journal time and randomness,
//! and fail clearly. Every case runs on the embedded store and on Redis.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::execution::{FailureKind, Outcome, Status, Wait};
use reprise_host::server::config::ServeConfig;
use reprise_host::tools::ToolCall;
use reprise_host::{Budget, ExecutionId, Runtime, RuntimeConfig, Store, ToolRegistry};
use reprise_tests::js::js_guest;
use reprise_tests::server::TestServer;
use reprise_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_every_store!(
    seed_example_and_its_error_branch,
    a_budget_of_one_step_replays_every_invocation,
    time_and_randomness_replay_identically,
    changed_code_fails_with_nondeterminism,
    an_unknown_request_fails_naming_it,
    a_signal_wait,
    a_stream_paced_by_a_window,
);

/// The seed's `api` tools (`user`, `posts`, `comments` on `postIds`),
/// counting their calls, next to the built-in ones.
fn api_tools(calls: &Calls) -> ToolRegistry {
    let mut tools = counting_tools(calls);
    for name in ["user", "posts", "comments"] {
        let calls = calls.clone();
        tools.register_fn("api", name, move |call: ToolCall| {
            calls.record(&call);
            async move {
                let input: Value = rmp_serde::from_slice(&call.input)
                    .map_err(|e| reprise_host::ToolError::new("bad-input", e.to_string()))?;
                let out = match name {
                    "user" => match input["id"].as_u64() {
                        Some(0) | None => {
                            return Err(reprise_host::ToolError::new(
                                "not-found",
                                "no user with id 0",
                            ));
                        }
                        Some(id) => json!({"id": id, "name": format!("User {id}")}),
                    },
                    "posts" => {
                        let uid = input["uid"].as_u64().unwrap();
                        json!([{"id": uid * 10 + 1}, {"id": uid * 10 + 2}])
                    }
                    _ => {
                        let ids = input["postIds"].as_array().unwrap();
                        Value::Array(ids.iter().map(|id| json!({"post": id})).collect())
                    }
                };
                Ok(encode(&out))
            }
        });
    }
    tools
}

fn with_budget(steps: u32) -> RuntimeConfig {
    RuntimeConfig {
        budget: Budget {
            max_steps: Some(steps),
            max_time: None,
        },
        ..RuntimeConfig::default()
    }
}

async fn js_runtime(store: Arc<dyn Store>, config: RuntimeConfig, guest: &str) -> (Runtime, Calls) {
    let calls = Calls::default();
    let rt = Runtime::new(engine(), store, api_tools(&calls), config);
    rt.deploy(guest, js_guest(guest))
        .await
        .unwrap_or_else(|e| panic!("deploying {guest}.js: {e}"));
    (rt, calls)
}

fn failure(rec: &reprise_host::ExecutionRecord) -> &reprise_host::execution::Failure {
    assert_eq!(rec.status, Status::Failed, "{rec:?}");
    match &rec.outcome {
        Some(Outcome::Failed(f)) => f,
        other => panic!("{other:?}"),
    }
}

async fn seed_example_and_its_error_branch(store: Arc<dyn Store>) {
    let (rt, calls) = js_runtime(store, RuntimeConfig::default(), "seed").await;
    let rec = run_to_end(&rt, "seed", json!({"userId": 7})).await;
    assert_eq!(
        result::<Value>(&rec),
        json!({
            "user": {"id": 7, "name": "User 7"},
            "posts": [{"id": 71}, {"id": 72}],
            "comments": [{"post": 71}, {"post": 72}],
        })
    );
    assert_eq!(rec.journal_len, 3);
    // A tool error is a value the generator branches on.
    let rec = run_to_end(&rt, "seed", json!({"userId": 0})).await;
    assert_eq!(
        result::<Value>(&rec),
        json!({"failed": true, "reason": "no user with id 0"})
    );
    assert_eq!(calls.total(), 4);
}

async fn a_budget_of_one_step_replays_every_invocation(store: Arc<dyn Store>) {
    let (rt, calls) = js_runtime(store.clone(), with_budget(1), "seed").await;
    let rec = run_to_end(&rt, "seed", json!({"userId": 3})).await;
    assert_eq!(
        result::<Value>(&rec)["comments"],
        json!([{"post": 31}, {"post": 32}])
    );
    // Three invocations (one new step each) and a fourth to return: each
    // tool ran once, the later invocations replayed the earlier steps.
    assert_eq!((calls.total(), calls.max_per_key()), (3, 1));
    assert!(rec.invocations >= 3, "{} invocations", rec.invocations);

    let (rt, calls) = js_runtime(store.clone(), with_budget(1), "steps").await;
    let rec = run_to_end(&rt, "steps", json!({"n": 40})).await;
    let out = result::<Value>(&rec);
    let checksum = (0..40u64).fold(0u64, |c, i| (c * 31 + i) % 1_000_000_007);
    assert_eq!(out, json!({"steps": 40, "checksum": checksum}));
    assert_eq!((calls.total(), calls.max_per_key()), (40, 1));

    // An array of calls runs them in parallel: one start per call, then
    // their completions, journaled together. (Without a budget: calls in
    // flight when a budget ends an invocation run again, at least once.)
    let (rt, calls) = js_runtime(store.clone(), RuntimeConfig::default(), "steps").await;
    let rec = run_to_end(&rt, "steps", json!({"n": 40, "parallel": true})).await;
    assert_eq!(
        result::<Value>(&rec),
        json!({"steps": 40, "checksum": checksum})
    );
    assert_eq!((calls.total(), calls.max_per_key()), (40, 1));
    let journal = rt.journal(&rec.id).await.unwrap();
    let starts = journal.iter().filter(|e| e.kind.label() == "start").count();
    assert_eq!((starts, journal.len()), (40, 80));
}

async fn time_and_randomness_replay_identically(store: Arc<dyn Store>) {
    // A budget of one step: `Date.now()`, `Math.random()` and `new Date()`
    // are each read in one invocation and replayed in every later one.
    let (rt, _) = js_runtime(store, with_budget(1), "clock").await;
    let rec = run_to_end(&rt, "clock", json!({})).await;
    let out = result::<Value>(&rec);
    assert_eq!(out["same"], true, "{out}");
    assert_eq!(out["first"], out["echoed"]);
    let random = out["first"]["random"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&random), "{out}");
    let journal = rt.journal(&rec.id).await.unwrap();
    let kinds: Vec<&str> = journal.iter().map(|e| e.kind.label()).collect();
    assert_eq!(
        kinds,
        [
            "now",
            "random",
            "now",
            "tool",
            "now",
            "random",
            "checkpoint"
        ],
        "{out}"
    );
    let reprise_host::journal::EntryKind::Now { value: now } = journal[0].kind else {
        panic!("{:?}", journal[0])
    };
    assert_eq!(out["first"]["now"], now, "Date.now() is the journaled time");
}

async fn changed_code_fails_with_nondeterminism(store: Arc<dyn Store>) {
    let (rt, _) = js_runtime(store.clone(), RuntimeConfig::default(), "steps").await;
    rt.deploy("clock", js_guest("clock")).await.unwrap();
    // A journal written by `steps` (a tool call first), resumed by code
    // that reads the time first.
    let original = run_to_end(&rt, "steps", json!({"n": 2})).await;
    let journal = rt.journal(&original.id).await.unwrap();
    let id = ExecutionId::new("changed-js").unwrap();
    with_journal(&store, "clock", encode(&json!({})), &id, &journal).await;
    rt.resume(&id).await.unwrap();
    let rec = wait(&rt, &id).await;
    let f = failure(&rec);
    assert_eq!(f.kind, FailureKind::Nondeterminism, "{}", f.message);
    for needle in ["journal entry 0", "call-tool builtin/echo", "now"] {
        assert!(f.message.contains(needle), "{}", f.message);
    }
}

async fn an_unknown_request_fails_naming_it(store: Arc<dyn Store>) {
    let (rt, _) = js_runtime(store, RuntimeConfig::default(), "clock").await;
    let rec = run_to_end(&rt, "clock", json!({"yield": {"tool": "api/user"}})).await;
    let f = failure(&rec);
    assert_eq!(f.kind, FailureKind::Workflow);
    assert_eq!(f.code.as_deref(), Some("bad-yield"));
    assert!(
        f.message.contains(r#"{"tool":"api/user"}"#),
        "{}",
        f.message
    );
    // A bare value is not a request either.
    let rec = run_to_end(&rt, "clock", json!({"yield": 42})).await;
    assert!(failure(&rec).message.contains("got 42"), "{rec:?}");
}

async fn a_signal_wait(store: Arc<dyn Store>) {
    let (rt, calls) = js_runtime(store, RuntimeConfig::default(), "signal").await;
    let id = rt
        .start("signal", encode(&json!({"order": 12})), None)
        .await
        .unwrap();
    wait_for(&rt, &id, |r| matches!(r.wait, Some(Wait::Signal { .. }))).await;
    assert_eq!(rt.live_instances(), 0, "nothing held while it waits");
    rt.signal(
        &id,
        "approve",
        encode(&json!({"approved": true, "by": "ada"})),
    )
    .await
    .unwrap();
    let rec = wait(&rt, &id).await;
    assert_eq!(
        result::<Value>(&rec),
        json!({"order": 12, "by": "ada", "approved": true})
    );
    assert_eq!(calls.total(), 2);
    let kinds: Vec<&str> = rt
        .journal(&id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.label())
        .collect();
    assert_eq!(kinds, ["tool", "sleep", "signal", "tool"]);

    // A refusal: the workflow throws a `WorkflowError`, which is the
    // execution's structured failure.
    let id = rt
        .start("signal", encode(&json!({"order": 13})), None)
        .await
        .unwrap();
    rt.signal(
        &id,
        "approve",
        encode(&json!({"approved": false, "by": "bob"})),
    )
    .await
    .unwrap();
    let rec = wait(&rt, &id).await;
    let f = failure(&rec);
    assert_eq!(f.kind, FailureKind::Workflow);
    assert_eq!(f.code.as_deref(), Some("rejected"));
    assert_eq!(f.message, "order 13 was rejected");
    let details: Value = rmp_serde::from_slice(f.details.as_deref().unwrap()).unwrap();
    assert_eq!(details, json!({"by": "bob"}));
}

/// A JS producer read over HTTP through a window of 5: never more than the
/// window ahead of what was read, every item once and in order.
async fn a_stream_paced_by_a_window(store: Arc<dyn Store>) {
    let mut config = ServeConfig::default();
    config.stream.hold = Duration::from_millis(200);
    let s = TestServer::start(store, config, ToolRegistry::with_builtins()).await;
    s.deploy_bytes("stream", "stream.js", js_guest("stream"))
        .await;
    let (count, window) = (35u64, 5u64);
    let r = s
        .post(
            "/v1/workflows/stream/executions",
            &json!({"input": {"count": count}, "stream": {"window": window}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let (mut after, mut session, mut seen) = (None::<u64>, None::<String>, Vec::new());
    loop {
        let mut path = format!("/v1/executions/{id}/items?max=3&wait=10s");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        if let Some(sid) = &session {
            path.push_str(&format!("&session={sid}"));
        }
        let b = s.get(&path).await;
        assert_eq!(b.status, StatusCode::OK, "{}", b.body);
        session = b.body["session"].as_str().map(str::to_string);
        let acked = after.map_or(0, |a| a + 1);
        let emitted = b.body["count"].as_u64().unwrap();
        assert!(emitted <= acked + window, "{emitted} emitted, {acked} read");
        for item in b.body["items"].as_array().unwrap() {
            let i = item["offset"].as_u64().unwrap();
            assert_eq!(item["item"], json!({"i": i, "square": i * i}));
            seen.push(i);
        }
        after = b.body["next_after"].as_u64().or(after);
        if b.body.get("end").is_some() {
            break;
        }
    }
    assert_eq!(seen, (0..count).collect::<Vec<_>>());
    let rec = tokio::time::timeout(
        Duration::from_secs(30),
        s.runtime.wait(&ExecutionId::new(&id).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(result::<Value>(&rec), json!({"emitted": count}));
}
