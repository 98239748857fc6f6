//! Nothing recorded is lost or redone: interrupted runs on the file store,
//! and replay that no longer matches the journal.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::execution::{FailureKind, Outcome, Status};
use reprise_host::{EmbeddedStore, ExecutionId, Runtime, RuntimeConfig, Store};
use reprise_tests::*;
use serde_json::{Value, json};

on_every_store!(replay_that_differs_from_the_journal_fails_with_nondeterminism);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_resumes_from_the_file_without_redoing_steps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let k = 5;
    let first_calls = Calls::default();
    let id = {
        let store = Arc::new(EmbeddedStore::open(&path).unwrap());
        let (tools, mut hung) = stalling_tools(&first_calls, k, Default::default());
        let rt = Runtime::new(engine(), store, tools, RuntimeConfig::default());
        deploy(&rt, "steps").await;
        let id = rt
            .start("steps", encode(&json!({"n": 12, "size": 8})), None)
            .await
            .unwrap();
        let index = tokio::time::timeout(Duration::from_secs(60), hung.recv())
            .await
            .expect("the run reached step k")
            .unwrap();
        assert_eq!(index, u64::from(k));
        rt.shutdown().await;
        id
        // Everything is dropped here: runtime, store, file handle.
    };
    assert_eq!(first_calls.total(), k + 1);

    let store = Arc::new(EmbeddedStore::open(&path).expect("reopening the store file"));
    let rec = store.get_execution(&id).await.unwrap();
    assert_eq!(rec.journal_len, u64::from(k), "k steps were recorded");
    let (rt, calls) = runtime(store, RuntimeConfig::default());
    rt.resume(&id).await.unwrap();
    let rec = wait(&rt, &id).await;
    assert_eq!(result::<Value>(&rec)["steps"], 12);
    // Steps 0..k ran once, in the first process; only k..12 ran now (step k
    // ran in both: it was never recorded, so it runs at least once more).
    assert_eq!(calls.total(), 12 - k);
    assert_eq!(calls.distinct(), (12 - k) as usize);
    assert_eq!(rec.journal_len, 12);
}

/// A host that dies mid-run leaves the store file at its last durable
/// commit and the append log with every step since; a copy of both taken
/// while the run is stalled is what a kill leaves. It resumes from there
/// without redoing a recorded step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_off_without_closing_the_store_resumes_from_the_append_log() {
    let (dir, left) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = dir.path().join("store.redb");
    let k = 5;
    let first_calls = Calls::default();
    let store = Arc::new(EmbeddedStore::open(&path).unwrap());
    let (tools, mut hung) = stalling_tools(&first_calls, k, Default::default());
    let rt = Runtime::new(engine(), store, tools, RuntimeConfig::default());
    deploy(&rt, "steps").await;
    let id = rt
        .start("steps", encode(&json!({"n": 12, "size": 8})), None)
        .await
        .unwrap();
    let index = tokio::time::timeout(Duration::from_secs(60), hung.recv())
        .await
        .expect("the run reached step k")
        .unwrap();
    assert_eq!(index, u64::from(k));
    for file in ["store.redb", "store.redb.wal"] {
        std::fs::copy(dir.path().join(file), left.path().join(file)).unwrap();
    }

    let store = Arc::new(EmbeddedStore::open(left.path().join("store.redb")).unwrap());
    let rec = store.get_execution(&id).await.unwrap();
    assert_eq!(rec.journal_len, u64::from(k), "k steps were recorded");
    let (resumed, calls) = runtime(store, RuntimeConfig::default());
    resumed.resume(&id).await.unwrap();
    let rec = wait(&resumed, &id).await;
    assert_eq!(result::<Value>(&rec)["steps"], 12);
    assert_eq!(calls.total(), 12 - k);
    assert_eq!(calls.distinct(), (12 - k) as usize);
    rt.shutdown().await;
}

async fn replay_that_differs_from_the_journal_fails_with_nondeterminism(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "steps").await;
    // Record a journal with one input...
    let original = run_to_end(&rt, "steps", json!({"n": 2, "size": 1})).await;
    let journal = rt.journal(&original.id).await.unwrap();
    // ...and make an execution whose code now makes other calls: same
    // component, input that changes the first tool call.
    let id = ExecutionId::new("changed").unwrap();
    let input = encode(&json!({"n": 2, "size": 2}));
    with_journal(&store, "steps", input, &id, &journal).await;
    rt.resume(&id).await.unwrap();
    let rec = wait(&rt, &id).await;
    assert_eq!(rec.status, Status::Failed);
    let Some(Outcome::Failed(failure)) = &rec.outcome else {
        panic!("{rec:?}")
    };
    assert_eq!(failure.kind, FailureKind::Nondeterminism);
    for needle in [
        "journal entry 0",
        "call-tool builtin/echo",
        "recorded",
        "now calls",
    ] {
        assert!(failure.message.contains(needle), "{}", failure.message);
    }
    assert_eq!(
        rt.journal(&id).await.unwrap().len(),
        2,
        "the journal is kept for inspection"
    );
}
