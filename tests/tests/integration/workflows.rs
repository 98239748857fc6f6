//! Workflows run end to end: results, exactly-once steps, budgets, signals,
//! timers, determinism of std time and randomness.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::execution::{Status, Wait};
use reprise_host::{Budget, ExecutionId, RuntimeConfig, RuntimeError, Store};
use reprise_tests::*;
use serde_json::{Value, json};

on_every_store!(
    examples_return_their_results,
    sequential_chains_user_posts_comments,
    hundred_steps_call_each_tool_once,
    a_one_step_budget_resumes_in_fresh_instances,
    draining_a_budgeted_run_leaves_it_ready_and_unleased,
    timers_and_signals_suspend_without_an_instance,
    a_signal_sent_before_the_wait_is_not_lost,
    cancelling_a_suspended_execution_is_final,
    starting_with_an_id_is_idempotent,
    a_resume_racing_the_start_joins_its_first_invocation,
    std_time_and_randomness_replay_identically,
    finished_executions_expire_after_the_retention_time,
);

/// Ends every invocation after one new step, so the rest is replay.
fn one_step_per_invocation() -> RuntimeConfig {
    RuntimeConfig {
        budget: Budget {
            max_steps: Some(1),
            max_time: None,
        },
        ..RuntimeConfig::default()
    }
}

async fn examples_return_their_results(store: Arc<dyn Store>) {
    let cases: &[(&str, Value, Value)] = &[
        ("hello", json!({"name": "Ada"}), json!("Hello, Ada!")),
        ("hello", json!({}), json!("Hello, world!")),
        (
            "tool_errors",
            Value::Null,
            json!({
                "missing_user": "not-found",
                "fallback_user": "User 1",
                "custom_error": "quota-exceeded: try tomorrow",
            }),
        ),
    ];
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    for (guest, input, expected) in cases {
        deploy(&rt, guest).await;
        let rec = run_to_end(&rt, guest, input.clone()).await;
        assert_eq!(&result::<Value>(&rec), expected, "{guest} {input}");
    }
}

async fn sequential_chains_user_posts_comments(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "sequential").await;
    let rec = run_to_end(&rt, "sequential", json!({"user_id": 123})).await;
    let out: Value = result(&rec);
    assert_eq!(out["user"]["name"], "User 123");
    let post_ids: Vec<u64> = out["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(post_ids, [1231, 1232, 1233]);
    assert_eq!(out["comments"].as_array().unwrap().len(), 6);
    let journal = rt.journal(&rec.id).await.unwrap();
    let labels: Vec<&str> = journal.iter().map(|e| e.kind.label()).collect();
    assert_eq!(labels, ["tool", "tool", "tool"]);
    // A missing user is a tool error the workflow returns as its failure.
    let rec = run_to_end(&rt, "sequential", json!({"user_id": 0})).await;
    assert_eq!(rec.status, Status::Failed);
}

async fn hundred_steps_call_each_tool_once(store: Arc<dyn Store>) {
    let (rt, calls) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "steps").await;
    let rec = run_to_end(&rt, "steps", json!({"n": 100, "size": 64})).await;
    let out: Value = result(&rec);
    assert_eq!(out["steps"], 100);
    assert_eq!(calls.total(), 100);
    assert_eq!(calls.distinct(), 100);
    assert_eq!(rec.journal_len, 100);
    assert_eq!(rec.invocations, 1);
}

/// The steps guest fails a run in an instance that ran one before, so this
/// also checks that pooled slots are reset: with small payloads (a few
/// pages written, reset in place) and with 16 KiB ones (the guest grows its
/// memory, and writes more than a slot keeps resident). With 100 KB ones
/// the host keeps no journal between invocations (each loads it).
async fn a_one_step_budget_resumes_in_fresh_instances(store: Arc<dyn Store>) {
    for size in [16, 16384, 100_000] {
        let input = json!({"n": 20, "size": size});
        let (free, free_calls) = runtime(store.clone(), RuntimeConfig::default());
        deploy(&free, "steps").await;
        let unbounded = run_to_end(&free, "steps", input.clone()).await;

        let (rt, calls) = runtime(store.clone(), one_step_per_invocation());
        deploy(&rt, "steps").await;
        let budgeted = run_to_end(&rt, "steps", input).await;
        assert_eq!(
            budgeted.status,
            Status::Completed,
            "size {size}: {budgeted:?}"
        );
        // Each step spends its invocation's budget and is seen on replay
        // in the next one: the 21st replays all 20 and returns.
        assert_eq!(budgeted.invocations, 21);
        assert_eq!(calls.total(), 20, "each step runs once despite replays");
        assert_eq!(calls.max_per_key(), 1);
        assert_eq!(free_calls.total(), 20);
        assert_eq!(result::<Value>(&budgeted), result::<Value>(&unbounded));

        // Three steps an invocation: two written as they run, the third
        // with the next start, which begins from the journal this host
        // kept (replayed entries and new ones) without loading it.
        let (rt, calls) = runtime(
            store.clone(),
            RuntimeConfig {
                budget: Budget {
                    max_steps: Some(3),
                    max_time: None,
                },
                ..RuntimeConfig::default()
            },
        );
        deploy(&rt, "steps").await;
        let budgeted = run_to_end(&rt, "steps", json!({"n": 20, "size": size})).await;
        assert_eq!(
            budgeted.status,
            Status::Completed,
            "size {size}: {budgeted:?}"
        );
        assert_eq!(budgeted.invocations, 7, "steps 3, 6, ... 18 spend one");
        assert_eq!(calls.total(), 20);
        assert_eq!(calls.max_per_key(), 1);
        assert_eq!(result::<Value>(&budgeted), result::<Value>(&unbounded));
        assert_eq!(
            rt.journal(&budgeted.id).await.unwrap().len(),
            20,
            "every step is in the journal once"
        );
    }
}

/// Without a queue, a host runs an execution's continuation itself and
/// keeps its lease in between (no suspension is written); a drain must
/// still leave it ready and unleased, for the next process at once.
async fn draining_a_budgeted_run_leaves_it_ready_and_unleased(store: Arc<dyn Store>) {
    let (leaving, before) = runtime(store.clone(), one_step_per_invocation());
    deploy(&leaving, "steps").await;
    let id = leaving
        .start("steps", encode(&json!({"n": 1000})), None)
        .await
        .unwrap();
    wait_for(&leaving, &id, |r| r.journal_len >= 3).await;
    assert_eq!(leaving.drain(Duration::from_secs(10)).await, 0);
    let left = store.get_execution(&id).await.unwrap();
    assert_eq!(left.status, Status::Suspended, "{left:?}");
    assert_eq!(left.wait, Some(Wait::Ready));
    assert_eq!(left.lease, None, "the drained host's lease is released");

    let (staying, after) = runtime(store.clone(), RuntimeConfig::default());
    assert_eq!(staying.recover().await.unwrap(), 1);
    let rec = wait(&staying, &id).await;
    assert_eq!(result::<Value>(&rec)["steps"], 1000);
    assert_eq!(before.total() + after.total(), 1000, "each step runs once");
    assert!(left.invocations >= 3, "{} invocations", left.invocations);
}

async fn timers_and_signals_suspend_without_an_instance(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "signals").await;
    let id = rt
        .start("signals", encode(&json!({"sleep_ms": 400})), None)
        .await
        .unwrap();
    let rec = wait_for(&rt, &id, |r| {
        matches!(r.wait, Some(Wait::Timer { .. })) && r.status == Status::Suspended
    })
    .await;
    assert_eq!(rec.status, Status::Suspended);
    assert_eq!(rt.live_instances(), 0, "a timer wait holds no instance");

    let rec = wait_for(&rt, &id, |r| {
        matches!(r.wait, Some(Wait::Signal { .. })) && r.status == Status::Suspended
    })
    .await;
    assert_eq!(
        rec.wait,
        Some(Wait::Signal {
            name: "approve".into()
        })
    );
    assert_eq!(rt.live_instances(), 0, "a signal wait holds no instance");
    let invocations = rec.invocations;
    assert!(invocations >= 2, "the timer resumed in a new invocation");

    rt.signal(&id, "approve", encode(&json!({"by": "grace"})))
        .await
        .unwrap();
    let rec = wait(&rt, &id).await;
    let out: Value = result(&rec);
    assert_eq!(out["approved_by"], "grace");
    assert!(out["slept_ms"].as_u64().unwrap() >= 400, "{out}");
    assert!(rec.invocations > invocations);
}

async fn a_signal_sent_before_the_wait_is_not_lost(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "signals").await;
    let id = rt
        .start("signals", encode(&json!({"sleep_ms": 500})), None)
        .await
        .unwrap();
    wait_for(&rt, &id, |r| matches!(r.wait, Some(Wait::Timer { .. }))).await;
    rt.signal(&id, "approve", encode(&json!({"by": "early"})))
        .await
        .unwrap();
    let rec = wait(&rt, &id).await;
    assert_eq!(result::<Value>(&rec)["approved_by"], "early");
    let journal = rt.journal(&id).await.unwrap();
    let labels: Vec<&str> = journal.iter().map(|e| e.kind.label()).collect();
    assert_eq!(labels, ["now", "sleep", "now", "signal"]);
}

async fn cancelling_a_suspended_execution_is_final(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "signals").await;
    let id = rt
        .start("signals", encode(&json!({"sleep_ms": 0})), None)
        .await
        .unwrap();
    wait_for(&rt, &id, |r| matches!(r.wait, Some(Wait::Signal { .. }))).await;
    let rec = rt.cancel(&id).await.unwrap();
    assert_eq!(rec.status, Status::Cancelled);
    let err = rt.signal(&id, "approve", encode(&json!({"by": "x"}))).await;
    assert!(
        matches!(err, Err(RuntimeError::Store(_))),
        "signal after cancel: {err:?}"
    );
    let invocations = rt.status(&id).await.unwrap().invocations;
    rt.resume(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rec = rt.status(&id).await.unwrap();
    assert_eq!(rec.status, Status::Cancelled);
    assert_eq!(rec.invocations, invocations, "never run again");
}

async fn starting_with_an_id_is_idempotent(store: Arc<dyn Store>) {
    let (rt, calls) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "steps").await;
    let id = ExecutionId::new("order-7").unwrap();
    let input = encode(&json!({"n": 3}));
    let a = rt
        .start("steps", input.clone(), Some(id.clone()))
        .await
        .unwrap();
    wait(&rt, &a).await;
    let b = rt.start("steps", input, Some(id.clone())).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(wait(&rt, &b).await.invocations, 1);
    assert_eq!(calls.total(), 3, "started once");
    let other = rt
        .start("steps", encode(&json!({"n": 4})), Some(id.clone()))
        .await;
    assert!(
        matches!(other, Err(RuntimeError::IdConflict(_))),
        "{other:?}"
    );
    let unknown = rt.start("nope", encode(&json!(null)), None).await;
    assert!(matches!(unknown, Err(RuntimeError::UnknownWorkflow(_))));
}

async fn std_time_and_randomness_replay_identically(store: Arc<dyn Store>) {
    // One step per invocation: every round after the first is replayed in a
    // fresh instance; the guest fails if a replayed reading differs from the
    // recorded one, and the host fails it if its calls differ.
    let (rt, _) = runtime(store.clone(), one_step_per_invocation());
    deploy(&rt, "clock").await;
    let rec = run_to_end(&rt, "clock", json!({"rounds": 4})).await;
    let readings: Vec<Value> = result(&rec);
    assert_eq!(readings.len(), 4);
    assert!(rec.invocations >= 12, "{} invocations", rec.invocations);
    let walls: Vec<u64> = readings
        .iter()
        .map(|r| r["wall_ns"].as_u64().unwrap())
        .collect();
    assert!(walls.windows(2).all(|w| w[0] <= w[1]), "{walls:?}");
    let randoms: Vec<&Value> = readings.iter().map(|r| &r["random"]).collect();
    assert_ne!(randoms[0], randoms[1], "random bytes still vary");
}

async fn finished_executions_expire_after_the_retention_time(store: Arc<dyn Store>) {
    let config = RuntimeConfig {
        retention: Some(Duration::from_millis(300)),
        ..RuntimeConfig::default()
    };
    let (rt, _) = runtime(store.clone(), config);
    deploy(&rt, "hello").await;
    deploy(&rt, "signals").await;
    let waiting = rt
        .start("signals", encode(&json!({"sleep_ms": 0})), None)
        .await
        .unwrap();
    let done = run_to_end(&rt, "hello", json!({"name": "Ada"})).await;
    assert_eq!(result::<Value>(&done), json!("Hello, Ada!"));
    tokio::time::timeout(Duration::from_secs(30), async {
        while store.get_execution(&done.id).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the finished execution expired");
    assert!(matches!(
        store.load(&done.id).await,
        Err(reprise_host::StoreError::NotFound(_))
    ));
    let rec = rt.status(&waiting).await.unwrap();
    assert!(!rec.status.is_terminal(), "an unfinished execution is kept");
    // Explicit deletion refuses what has not ended.
    assert!(matches!(
        rt.delete(&waiting).await,
        Err(RuntimeError::Store(reprise_host::StoreError::Active { .. }))
    ));
    rt.cancel(&waiting).await.unwrap();
    rt.delete(&waiting).await.unwrap();
    assert!(rt.status(&waiting).await.is_err());
}

/// The guest list cannot miss a guest: `GUESTS` is exactly the crates
/// under `guests/` and the members of its workspace, every one builds to a
/// WebAssembly *component* (not a core module), and every one is used by a
/// test (its name appears in a test source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_guest_is_built_and_used() {
    use std::collections::BTreeSet;
    let root = reprise_tests::root();
    let listed: BTreeSet<String> = GUESTS.iter().map(|g| g.to_string()).collect();
    let crates: BTreeSet<String> = std::fs::read_dir(root.join("guests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, crates, "GUESTS and the crates under guests/ differ");
    let manifest = std::fs::read_to_string(root.join("guests/Cargo.toml")).unwrap();
    let members: BTreeSet<String> = manifest
        .split("members = [")
        .nth(1)
        .and_then(|m| m.split(']').next())
        .unwrap()
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    assert_eq!(
        listed, members,
        "GUESTS and guests/Cargo.toml's members differ"
    );

    // Component binaries: the preamble `\0asm`, then version 0x0d and
    // layer 1 (a core module has version 1, layer 0).
    for name in GUESTS {
        let bytes = guest(name);
        assert_eq!(
            bytes.get(..8),
            Some(&b"\0asm\x0d\x00\x01\x00"[..]),
            "{name} is not a WebAssembly component"
        );
    }

    let mut sources = String::new();
    for dir in ["tests/tests/integration", "cli/tests", "tests/src"] {
        for file in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests/src/lib.rs") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    for name in GUESTS {
        assert!(
            sources.contains(&format!("\"{name}\"")),
            "guest {name} is built but no test uses it"
        );
    }
}

/// What a runtime runs in the background is decided when it is built: a
/// retention sweep needs a tokio runtime, and building one without is an
/// error that says so, not a runtime that silently never sweeps.
#[test]
fn a_runtime_with_background_tasks_needs_tokio() {
    let store: Arc<dyn Store> = Arc::new(reprise_host::MemoryStore::new());
    let sweeping = reprise_host::Runtime::builder(engine(), store.clone()).build();
    assert!(
        matches!(sweeping, Err(RuntimeError::NoAsyncRuntime)),
        "built outside tokio with a retention sweep"
    );
    let quiet = reprise_host::Runtime::builder(engine(), store)
        .config(RuntimeConfig {
            retention: None,
            ..RuntimeConfig::default()
        })
        .build();
    assert!(quiet.is_ok(), "nothing to run in the background");
}

/// A start creates its execution leased where it will run; a resume of the
/// same id racing it (here, sent in a loop until the id exists) joins that
/// first invocation instead of waiting the lease out. With an hour's lease,
/// a resume left waiting would show as an execution that never ends.
async fn a_resume_racing_the_start_joins_its_first_invocation(store: Arc<dyn Store>) {
    let config = RuntimeConfig {
        lease_ttl: Duration::from_secs(3600),
        ..RuntimeConfig::default()
    };
    let (rt, _) = runtime(store.clone(), config);
    let rt = Arc::new(rt);
    deploy(&rt, "hello").await;
    for i in 0..40 {
        let id = ExecutionId::new(format!("race-{i}")).unwrap();
        let resumer = {
            let (rt, id) = (rt.clone(), id.clone());
            tokio::spawn(async move {
                let mut resumed = 0;
                for _ in 0..10_000 {
                    match rt.resume(&id).await {
                        Ok(rec) if rec.status.is_terminal() => break,
                        Ok(_) => resumed += 1,
                        Err(RuntimeError::Store(_)) => tokio::task::yield_now().await,
                        Err(e) => panic!("resume: {e}"),
                    }
                }
                resumed
            })
        };
        let options = reprise_host::runtime::StartOptions {
            id: Some(id.clone()),
            ..Default::default()
        };
        let started = rt
            .start_with_options("hello", encode(&json!({"name": i.to_string()})), options)
            .await
            .unwrap();
        assert_eq!(started, id);
        let rec = wait(&rt, &id).await;
        assert_eq!(result::<String>(&rec), format!("Hello, {i}!"));
        assert_eq!(rec.invocations, 1, "one invocation, resumed or not");
        resumer.await.unwrap();
    }
}
