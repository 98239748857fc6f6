//! Bad guests fail only their own execution, with a message that says why.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::execution::{FailureKind, Outcome, Status};
use reprise_host::{CompileError, Limits, RuntimeConfig, RuntimeError, Store};
use reprise_tests::*;
use serde_json::{Value, json};

on_every_store!(
    misbehaving_guests_fail_alone_while_a_healthy_one_completes,
    invalid_components_are_rejected_at_deploy,
);

async fn misbehaving_guests_fail_alone_while_a_healthy_one_completes(store: Arc<dyn Store>) {
    let config = RuntimeConfig {
        limits: Limits {
            memory_bytes: 32 << 20,
            time_without_progress: Duration::from_secs(1),
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    };
    let (rt, calls) = runtime(store, config);
    let cases = [
        ("spin", FailureKind::TimeLimit, "without calling the host"),
        ("membomb", FailureKind::MemoryLimit, "memory limit exceeded"),
        ("trap", FailureKind::Trap, "the workflow gave up on purpose"),
        ("missing_tool", FailureKind::MissingTool, "nowhere/nothing"),
    ];
    for name in ["steps", "spin", "membomb", "trap", "missing_tool"] {
        deploy(&rt, name).await;
    }
    let healthy = rt
        .start("steps", encode(&json!({"n": 200, "size": 32})), None)
        .await
        .unwrap();
    let mut bad = Vec::new();
    for (name, kind, needle) in cases {
        let id = rt.start(name, encode(&Value::Null), None).await.unwrap();
        bad.push((id, name, kind, needle));
    }
    for (id, name, kind, needle) in bad {
        let rec = wait(&rt, &id).await;
        assert_eq!(rec.status, Status::Failed, "{name}");
        let Some(Outcome::Failed(failure)) = &rec.outcome else {
            panic!("{name}: {rec:?}")
        };
        assert_eq!(failure.kind, kind, "{name}: {}", failure.message);
        assert!(
            failure.message.contains(needle),
            "{name}: {}",
            failure.message
        );
    }
    let rec = wait(&rt, &healthy).await;
    assert_eq!(result::<Value>(&rec)["steps"], 200);
    // 200 healthy steps + the one step `trap` makes before it panics.
    assert_eq!(calls.total(), 201);
}

async fn invalid_components_are_rejected_at_deploy(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    for (bytes, what) in [
        (b"not wasm at all".to_vec(), "garbage"),
        (b"\0asm\x01\0\0\0".to_vec(), "a core module"),
    ] {
        match rt.deploy("bad", bytes).await {
            Err(RuntimeError::Compile(CompileError::Invalid(msg))) => {
                assert!(!msg.is_empty(), "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(matches!(
        rt.deploy("bad name!", guest("hello")).await,
        Err(RuntimeError::InvalidName(_))
    ));
    assert_eq!(store.get_deployment("bad").await.unwrap(), None);
}
