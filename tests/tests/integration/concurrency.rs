//! Work started without waiting (WIT 0.2.0): fan-out, deadlines, retries,
//! crashes with calls in flight, nondeterminism of starts, misuse of
//! handles, and components built against 0.1.0.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reprise_host::execution::{ExecutionRecord, FailureKind, Outcome, Status, Wait};
use reprise_host::journal::{EntryKind, Started};
use reprise_host::store::now_ms;
use reprise_host::tools::{ToolCall, ToolError};
use reprise_host::{
    Budget, EmbeddedStore, ExecutionId, Limits, Runtime, RuntimeConfig, Store, ToolRegistry,
};
use reprise_tests::*;
use serde_json::{Value, json};

on_every_store!(
    fanout_runs_calls_together_and_replays_their_order,
    approval_before_the_deadline,
    approval_after_the_deadline,
    retries_are_one_entry_with_their_attempts,
    starting_calls_in_another_order_is_nondeterminism,
    misusing_handles_fails_that_execution_only,
    components_built_against_0_1_0_still_run,
);

/// How many calls run at once, and the most that ever did.
#[derive(Clone, Default)]
struct Peak(Arc<(AtomicUsize, AtomicUsize)>);

impl Peak {
    fn enter(&self) {
        let now = self.0.0.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.1.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
    fn max(&self) -> usize {
        self.0.1.load(Ordering::SeqCst)
    }
}

/// The built-in tools with every `demo` tool taking `delay`, counting its
/// calls by idempotency key and how many run at once; a `demo/user` call
/// for an id in `hang` never answers.
fn slow_demo(delay: Duration, calls: &Calls, peak: &Peak, hang: &[u64]) -> ToolRegistry {
    let builtins = ToolRegistry::with_builtins();
    let mut tools = ToolRegistry::with_builtins();
    for name in ["user", "posts", "comments"] {
        let inner = builtins.get("demo", name).unwrap();
        let (calls, peak, hang) = (calls.clone(), peak.clone(), hang.to_vec());
        tools.register_fn("demo", name, move |call: ToolCall| {
            calls.record(&call);
            let (inner, peak) = (inner.clone(), peak.clone());
            let hangs = name == "user"
                && rmp_serde::from_slice::<Value>(&call.input)
                    .ok()
                    .and_then(|v| v["id"].as_u64())
                    .is_some_and(|id| hang.contains(&id));
            async move {
                peak.enter();
                tokio::time::sleep(delay).await;
                if hangs {
                    std::future::pending::<()>().await;
                }
                let result = inner.call(call).await;
                peak.leave();
                result
            }
        });
    }
    tools
}

/// What `fanout` returns for these users, computed from the demo API's
/// rules (3 posts per user, 2 comments per post; user 0 is not found).
fn expected_fanout(user_ids: &[u64]) -> Value {
    let summaries: Vec<Value> = user_ids
        .iter()
        .map(|&id| {
            if id == 0 {
                return json!({"id": 0, "name": null, "posts": 0, "comments": 0, "checksum": 0});
            }
            let checksum: u64 = (1..=3)
                .map(|i| id * 10 + i)
                .map(|post| (post * 100 + 1) + (post * 100 + 2))
                .sum();
            json!({"id": id, "name": format!("User {id}"), "posts": 3, "comments": 6, "checksum": checksum})
        })
        .collect();
    Value::Array(summaries)
}

/// Checks a finished journal: every start has exactly one completion, and
/// every completion follows its start.
fn check_pairs(journal: &[reprise_host::journal::Entry]) {
    let mut starts = 0;
    let mut completed: HashMap<u64, usize> = HashMap::new();
    for (i, e) in journal.iter().enumerate() {
        match &e.kind {
            EntryKind::Started(_) => starts += 1,
            EntryKind::Completed { handle, .. } => {
                assert!((*handle as usize) < i, "completion {i} before its start");
                assert!(
                    matches!(journal[*handle as usize].kind, EntryKind::Started(_)),
                    "completion {i} names entry {handle}, which is not a start"
                );
                *completed.entry(*handle).or_default() += 1;
            }
            _ => {}
        }
    }
    assert_eq!(completed.len(), starts, "every start completed");
    assert!(completed.values().all(|n| *n == 1), "each completed once");
}

async fn fanout_runs_calls_together_and_replays_their_order(store: Arc<dyn Store>) {
    let (calls, peak) = (Calls::default(), Peak::default());
    let tools = slow_demo(Duration::from_millis(100), &calls, &peak, &[]);
    let rt = Runtime::new(engine(), store.clone(), tools, RuntimeConfig::default());
    deploy(&rt, "fanout").await;
    let users: Vec<u64> = (1..=20).collect();
    let rec = run_to_end(&rt, "fanout", json!({ "user_ids": users })).await;
    assert_eq!(result::<Value>(&rec), expected_fanout(&users));
    // 20 lookups, then 20 posts calls, then 60 comments calls: each stage
    // ran all its calls at once.
    assert!(peak.max() >= 20, "at most {} calls ran at once", peak.max());
    assert_eq!(calls.total(), 100);
    assert_eq!(calls.max_per_key(), 1);
    let journal = rt.journal(&rec.id).await.unwrap();
    assert_eq!(journal.len(), 200, "a start and a completion per call");
    check_pairs(&journal);

    // With one new step per invocation, every invocation replays all the
    // completions before it in the order first observed.
    let budget = RuntimeConfig {
        budget: Budget {
            max_steps: Some(1),
            max_time: None,
        },
        ..RuntimeConfig::default()
    };
    let (calls, peak) = (Calls::default(), Peak::default());
    let tools = slow_demo(Duration::from_millis(1), &calls, &peak, &[]);
    let rt = Runtime::new(engine(), store, tools, budget);
    let rec = run_to_end(&rt, "fanout", json!({ "user_ids": [3, 0, 1, 2] })).await;
    assert_eq!(result::<Value>(&rec), expected_fanout(&[3, 0, 1, 2]));
    // 16 calls: one invocation per start at least (the completions of a
    // stage are journaled together, by its `join_all`).
    assert!(rec.invocations >= 16, "{} invocations", rec.invocations);
    // Calls still running when an invocation ends run again on resume,
    // with the same key; each is journaled once.
    assert_eq!(calls.distinct(), 4 + 3 + 9);
    check_pairs(&rt.journal(&rec.id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_calls_in_flight_reruns_only_those_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let users: Vec<u64> = (1..=10).collect();
    let hang: Vec<u64> = (5..=10).collect();
    let first = Calls::default();
    let id = {
        let store = Arc::new(EmbeddedStore::open(&path).unwrap());
        let tools = slow_demo(Duration::ZERO, &first, &Peak::default(), &hang);
        let rt = Runtime::new(engine(), store.clone(), tools, RuntimeConfig::default());
        deploy(&rt, "fanout").await;
        let id = rt
            .start("fanout", encode(&json!({ "user_ids": users })), None)
            .await
            .unwrap();
        // 10 starts and the 4 lookups that answered: 6 still in flight.
        tokio::time::timeout(Duration::from_secs(60), async {
            while store.get_execution(&id).await.unwrap().journal_len < 14 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the four quick lookups were journaled");
        assert_eq!(first.total(), 10, "every lookup started");
        rt.shutdown().await;
        id
    };
    // The first runtime's tasks were aborted; the last of them lets go of
    // the store (and redb of its file lock) when the scheduler next runs it.
    let store = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match EmbeddedStore::open(&path) {
                Ok(store) => break Arc::new(store),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("reopening the store file");
    let calls = Calls::default();
    let tools = slow_demo(Duration::ZERO, &calls, &Peak::default(), &[]);
    let rt = Runtime::new(engine(), store, tools, RuntimeConfig::default());
    rt.resume(&id).await.unwrap();
    let rec = wait(&rt, &id).await;
    assert_eq!(result::<Value>(&rec), expected_fanout(&users));
    let journal = rt.journal(&id).await.unwrap();
    check_pairs(&journal);
    // Only the six lookups not journaled ran again, under the same keys as
    // before; then the later stages ran once each.
    let user_keys: Vec<u64> = journal
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(&e.kind, EntryKind::Started(Started::Tool { name, .. }) if name == "user"))
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(user_keys, (0..10).collect::<Vec<_>>());
    assert_eq!(calls.total(), 6 + 10 + 30);
    assert_eq!(calls.max_per_key(), 1);
    assert_eq!(first.distinct() + calls.distinct(), 10 + 6 + 10 + 30);
}

async fn approval_before_the_deadline(store: Arc<dyn Store>) {
    let (rt, calls) = runtime(store, RuntimeConfig::default());
    deploy(&rt, "approval").await;
    let id = rt
        .start("approval", encode(&json!({"deadline_ms": 3_600_000})), None)
        .await
        .unwrap();
    let rec = wait_for(&rt, &id, |r| {
        r.status == Status::Suspended && r.wait.is_some_and_any()
    })
    .await;
    let Some(Wait::Any {
        signals,
        wake_at_ms: Some(at),
    }) = &rec.wait
    else {
        panic!("{:?}", rec.wait)
    };
    assert_eq!(signals[0].name, "approve");
    assert!(*at > now_ms() + 3_000_000, "the deadline is an hour away");
    assert_eq!(rt.live_instances(), 0, "waiting holds no instance");
    rt.signal(&id, "approve", encode(&json!({"by": "ada"})))
        .await
        .unwrap();
    let rec = wait(&rt, &id).await;
    assert_eq!(result::<Value>(&rec), json!({"approved": {"by": "ada"}}));
    assert_eq!(calls.total(), 0, "no escalation");
}

async fn approval_after_the_deadline(store: Arc<dyn Store>) {
    let (rt, calls) = runtime(store, RuntimeConfig::default());
    deploy(&rt, "approval").await;
    let id = rt
        .start("approval", encode(&json!({"deadline_ms": 400})), None)
        .await
        .unwrap();
    wait_for(&rt, &id, |r| {
        r.status == Status::Suspended && r.wait.is_some_and_any()
    })
    .await;
    assert_eq!(rt.live_instances(), 0, "waiting holds no instance");
    let rec = wait(&rt, &id).await;
    assert_eq!(
        result::<Value>(&rec),
        json!({"escalated": {"reason": "no approval within 400 ms"}})
    );
    assert_eq!(calls.total(), 1, "escalated once");
    // A late approval is buffered for nobody, and changes nothing.
    assert!(
        rt.signal(&id, "approve", encode(&json!({"by": "late"})))
            .await
            .is_err()
    );
}

trait WaitAny {
    fn is_some_and_any(&self) -> bool;
}

impl WaitAny for Option<Wait> {
    fn is_some_and_any(&self) -> bool {
        matches!(self, Some(Wait::Any { .. }))
    }
}

/// Adds `test/flaky`: its input `{fail: n, code, sleep_ms}` fails the
/// first `n` attempts of each idempotency key with `code` (each after
/// `sleep_ms`), then returns `"ok"`.
fn flaky_tools(calls: &Calls) -> ToolRegistry {
    let mut tools = ToolRegistry::with_builtins();
    let calls = calls.clone();
    tools.register_fn("test", "flaky", move |call: ToolCall| {
        calls.record(&call);
        let key = (
            call.idempotency_key.execution.to_string(),
            call.idempotency_key.index,
        );
        let attempt = calls.of(&key);
        async move {
            let plan: Value = rmp_serde::from_slice(&call.input).unwrap();
            let sleep = plan["sleep_ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(sleep)).await;
            if u64::from(attempt) <= plan["fail"].as_u64().unwrap_or(0) {
                let code = plan["code"].as_str().unwrap_or("unavailable");
                return Err(ToolError::new(code, format!("attempt {attempt} failed")));
            }
            Ok(rmp_serde::to_vec("ok").unwrap())
        }
    });
    tools
}

/// The attempts the one completion of a finished `flaky` run records.
async fn attempts(rt: &Runtime, rec: &ExecutionRecord) -> u32 {
    let journal = rt.journal(&rec.id).await.unwrap();
    let completions: Vec<u32> = journal
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::Completed { attempts, .. } => Some(attempts),
            _ => None,
        })
        .collect();
    assert_eq!(
        journal.len(),
        2,
        "one start and one completion: {journal:?}"
    );
    completions[0]
}

async fn retries_are_one_entry_with_their_attempts(store: Arc<dyn Store>) {
    let calls = Calls::default();
    let rt = Runtime::new(
        engine(),
        store,
        flaky_tools(&calls),
        RuntimeConfig::default(),
    );
    deploy(&rt, "flaky").await;

    let input = json!({"attempts": 5, "plan": {"fail": 2, "code": "unavailable"}});
    let rec = run_to_end(&rt, "flaky", input).await;
    assert_eq!(result::<Value>(&rec), json!({"ok": "ok"}));
    assert_eq!(attempts(&rt, &rec).await, 3);
    assert_eq!(calls.total(), 3);
    assert_eq!(calls.distinct(), 1, "every attempt had the same key");

    let input = json!({"attempts": 5, "retry_on": ["unavailable"],
                       "plan": {"fail": 9, "code": "bad-input"}});
    let rec = run_to_end(&rt, "flaky", input).await;
    assert_eq!(
        result::<Value>(&rec),
        json!({"failed": {"code": "bad-input", "message": "attempt 1 failed"}})
    );
    assert_eq!(
        attempts(&rt, &rec).await,
        1,
        "not retriable: failed at once"
    );

    let input = json!({"attempts": 2, "attempt_timeout_ms": 50, "plan": {"sleep_ms": 10_000}});
    let rec = run_to_end(&rt, "flaky", input).await;
    let out = result::<Value>(&rec);
    assert_eq!(out["failed"]["code"], "timeout", "{out}");
    assert_eq!(attempts(&rt, &rec).await, 2);
}

async fn starting_calls_in_another_order_is_nondeterminism(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "fanout").await;
    let original = run_to_end(&rt, "fanout", json!({"user_ids": [1, 2]})).await;
    let journal = rt.journal(&original.id).await.unwrap();
    // The same journal under an execution whose input starts the lookups
    // the other way round.
    let id = ExecutionId::new("reordered").unwrap();
    let input = encode(&json!({"user_ids": [2, 1]}));
    with_journal(&store, "fanout", input, &id, &journal).await;
    rt.resume(&id).await.unwrap();
    let rec = wait(&rt, &id).await;
    let Some(Outcome::Failed(failure)) = &rec.outcome else {
        panic!("{rec:?}")
    };
    assert_eq!(failure.kind, FailureKind::Nondeterminism);
    for needle in [
        "journal entry 0",
        "recorded `start-tool demo/user",
        "now calls `start-tool demo/user",
    ] {
        assert!(failure.message.contains(needle), "{}", failure.message);
    }
}

async fn misusing_handles_fails_that_execution_only(store: Arc<dyn Store>) {
    let config = RuntimeConfig {
        limits: Limits {
            max_handles: 10,
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    };
    let (rt, _) = runtime(store, config);
    deploy(&rt, "misuse").await;
    deploy(&rt, "sequential").await;
    let healthy = rt
        .start("sequential", encode(&json!({"user_id": 7})), None)
        .await
        .unwrap();
    for (input, needle) in [
        (
            json!({"mode": "unknown"}),
            "await-any on handle 999999, which this execution never started",
        ),
        (json!({"mode": "twice"}), "already spent"),
        (json!({"mode": "all_twice"}), "or lists twice"),
        (json!({"mode": "empty"}), "await-any was given no handle"),
        (
            json!({"mode": "many", "n": 11}),
            "holds 10 handles, the most allowed",
        ),
        (
            json!({"mode": "zero_attempts"}),
            "max-attempts must be at least 1",
        ),
    ] {
        let rec = run_to_end(&rt, "misuse", input.clone()).await;
        let Some(Outcome::Failed(failure)) = &rec.outcome else {
            panic!("{input}: {rec:?}")
        };
        assert_eq!(failure.kind, FailureKind::InvalidCall, "{input}");
        assert!(
            failure.message.contains(needle),
            "{input}: {}",
            failure.message
        );
    }
    // Ten handles are allowed, and left pending at the end they are dropped.
    let rec = run_to_end(&rt, "misuse", json!({"mode": "many", "n": 10})).await;
    assert_eq!(result::<u32>(&rec), 10);
    let rec = wait(&rt, &healthy).await;
    assert_eq!(rec.status, Status::Completed, "{rec:?}");
}

async fn components_built_against_0_1_0_still_run(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store, RuntimeConfig::default());
    rt.deploy("old-sequential", fixture("0.1.0", "sequential"))
        .await
        .unwrap();
    rt.deploy("old-signals", fixture("0.1.0", "signals"))
        .await
        .unwrap();
    deploy(&rt, "sequential").await;
    let old = run_to_end(&rt, "old-sequential", json!({"user_id": 3})).await;
    let new = run_to_end(&rt, "sequential", json!({"user_id": 3})).await;
    assert_eq!(result::<Value>(&old), result::<Value>(&new));
    assert_eq!(
        rt.journal(&old.id).await.unwrap().len(),
        3,
        "three journaled tool calls"
    );

    let id = rt
        .start("old-signals", encode(&json!({"sleep_ms": 200})), None)
        .await
        .unwrap();
    wait_for(&rt, &id, |r| matches!(r.wait, Some(Wait::Signal { .. }))).await;
    rt.signal(&id, "approve", encode(&json!({"by": "old"})))
        .await
        .unwrap();
    let rec = wait(&rt, &id).await;
    assert_eq!(result::<Value>(&rec)["approved_by"], "old");
}
