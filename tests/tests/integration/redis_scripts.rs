//! The Redis store's scripts against a server that forgot them (restarted,
//! or flushed): every pipeline that carries a script loads it again and
//! reruns only what failed, so nothing is lost or done twice.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::execution::{Lease, Outcome, Status};
use reprise_host::journal::{Entry, EntryKind};
use reprise_host::store::{ListQuery, StoreError, now_ms};
use reprise_host::{Digest, ExecutionId, ExecutionRecord, Store};
use reprise_tests::redis::RedisServer;

fn entry(i: u64) -> Entry {
    Entry {
        at_ms: now_ms(),
        duration_us: i,
        kind: EntryKind::Checkpoint,
    }
}

/// A new execution with 40 entries, and the lease they were written under.
async fn journaled(store: &Arc<dyn Store>) -> (ExecutionId, Lease, Vec<Entry>) {
    let id = ExecutionId::generate();
    let record = ExecutionRecord::new(id.clone(), "w".into(), Digest::of(b"c"), vec![], now_ms());
    store.create_execution(&record).await.unwrap();
    let lease = store
        .acquire_lease(&id, "a", Duration::from_secs(60))
        .await
        .unwrap();
    let journal: Vec<Entry> = (0..40).map(entry).collect();
    store.append_many(&id, &lease, 0, &journal).await.unwrap();
    (id, lease, journal)
}

/// An invocation starts with one pipeline: the lease script, then the
/// journal's `LRANGE`. A server that lost its scripts (restarted, or
/// flushed) gets the script loaded again and the pipeline rerun; the
/// snapshot is whole either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquiring_and_loading_survives_a_server_that_forgot_its_scripts() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(server.store().await);
    let (id, lease, journal) = journaled(&store).await;
    store.release_lease(&id, &lease).await.unwrap();

    for round in 0..2 {
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
        let (lease, snapshot) = store
            .acquire_and_load(&id, "b", Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(snapshot.journal, journal);
        assert_eq!(snapshot.record.journal_len, 40);
        store.release_lease(&id, &lease).await.unwrap();
    }
    // A live lease of another owner is still refused, journal read or not.
    let held = store
        .acquire_lease(&id, "c", Duration::from_secs(60))
        .await
        .unwrap();
    let refused = store
        .acquire_and_load(&id, "d", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::LeaseHeld { .. }),
        "{refused:?}"
    );
    store.release_lease(&id, &held).await.unwrap();
}

/// A continuation's start (the step that spent the budget appended, the
/// lease taken again, the journal read) is one script and the `LRANGE`:
/// against a server that forgot its scripts, the step is written once and
/// the snapshot is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_survives_a_server_that_forgot_its_scripts() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(server.store().await);
    let (id, mut lease, mut journal) = journaled(&store).await;
    for round in 0..3u64 {
        if round < 2 {
            assert_eq!(server.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
        }
        let spent = entry(100 + round);
        let index = journal.len() as u64;
        let (next, snapshot) = store
            .append_and_acquire(
                &id,
                &lease,
                index,
                std::slice::from_ref(&spent),
                "a",
                Duration::from_secs(60),
                0,
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        journal.push(spent);
        assert_eq!(snapshot.journal, journal, "round {round}");
        assert_eq!(snapshot.record.journal_len, index + 1);
        assert!(next.token > lease.token);
        lease = next;
    }
    let rec = store.get_execution(&id).await.unwrap();
    assert_eq!(rec.invocations, 4, "one acquire per continuation");
}

/// A load (the journal API, the sandboxed replay) is one pipeline too:
/// the record's script, then the journal's `LRANGE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_survives_a_server_that_forgot_its_scripts() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(server.store().await);
    let (id, _lease, journal) = journaled(&store).await;
    for round in 0..2 {
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
        let snapshot = store
            .load(&id)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(snapshot.journal, journal);
        assert_eq!(snapshot.record.journal_len, 40);
    }
    let gone = ExecutionId::generate();
    assert!(matches!(
        store.load(&gone).await,
        Err(StoreError::NotFound(_))
    ));
}

/// On one Redis a status change and its index entry go in one pipeline:
/// the index's enter script, then the record's. A server that lost
/// scripts (both, only the enter's, or only the change's) gets them loaded
/// and what failed run again; each change happens once, and the index
/// lists the execution under every status it reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_are_indexed_when_the_server_forgot_its_scripts() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(server.store().await);
    let lua = |name: &str| {
        let path = format!(
            "{}/../host/src/store/redis/lua/{name}.lua",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // Forgets every script, then knows only `keep` (when given).
    let forget = |keep: Option<&str>| {
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
        if let Some(name) = keep {
            let sha = server.cli(&["SCRIPT", "LOAD", &lua(name)]);
            assert_eq!(sha.trim().len(), 40, "{sha}");
        }
    };
    let listed = |status: Status| {
        let store = store.clone();
        async move {
            let page = store
                .list_page(&ListQuery {
                    status: Some(status),
                    ..Default::default()
                })
                .await
                .unwrap();
            page.executions
                .iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
        }
    };
    // None known; only the enter known; only the change known (`create`
    // is a script of its own, with no shared prelude).
    for (round, keep) in [None, Some("index_enter"), Some("create")]
        .into_iter()
        .enumerate()
    {
        let id = ExecutionId::generate();
        let record =
            ExecutionRecord::new(id.clone(), "w".into(), Digest::of(b"c"), vec![], now_ms());
        forget(keep);
        store.create_execution(&record).await.unwrap();
        assert!(
            listed(record.status).await.contains(&id.to_string()),
            "round {round}: created"
        );
        forget(keep.filter(|k| *k == "index_enter"));
        let (lease, snapshot) = store
            .acquire_and_load(&id, "a", Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(snapshot.record.invocations, 1, "round {round}: one lease");
        assert!(listed(Status::Running).await.contains(&id.to_string()));
        forget(keep.filter(|k| *k == "index_enter"));
        store
            .finish(&id, &lease, &Outcome::Completed(vec![round as u8]))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            listed(Status::Completed).await.contains(&id.to_string()),
            "round {round}: completed"
        );
        let done = store.get_execution(&id).await.unwrap();
        assert_eq!(done.status, Status::Completed);
        assert_eq!(done.invocations, 1);
    }
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts.get(&Status::Completed), Some(&3), "{counts:?}");
}

/// How many executions each status list holds, once `store`'s settles in
/// the background are done (a change's own settle needs no wait).
async fn counts(store: &reprise_host::RedisStore) -> [u64; 3] {
    let c = store.count_by_status().await.unwrap();
    let n = |s| c.get(&s).copied().unwrap_or(0);
    [
        n(Status::Running),
        n(Status::Suspended),
        n(Status::Completed),
    ]
}

/// Waits (at most 5 s) until `store`'s status lists hold `want`.
async fn counts_reach(store: &reprise_host::RedisStore, want: [u64; 3]) {
    for _ in 0..250 {
        if counts(store).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counts(store).await, want);
}

/// On one Redis a status change settles the index lists it left in its
/// own pipeline: once the change returns, the execution is listed under
/// its new status alone, with no round trip left to the background. A
/// refused change settles nothing, and a server that forgot the settle
/// script settles in the background once and then in the pipeline again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_settles_the_index_in_its_own_pipeline() {
    let server = RedisServer::start();
    // The server learns the scripts on their first use, a change's script
    // then runs again after its settle: first, one execution under
    // another prefix goes through every change this test makes.
    let warm: Arc<dyn Store> = Arc::new(
        server
            .store_with(reprise_host::RedisOptions {
                prefix: "warm".into(),
                ..Default::default()
            })
            .await,
    );
    let (w, lease, _) = journaled(&warm).await;
    warm.release_lease(&w, &lease).await.unwrap();
    let (lease, _) = warm
        .acquire_and_load(&w, "b", Duration::from_secs(60))
        .await
        .unwrap();
    warm.finish(&w, &lease, &Outcome::Completed(vec![]))
        .await
        .unwrap();

    let store = Arc::new(server.store().await);
    let dyn_store: Arc<dyn Store> = store.clone();
    let (id, _, _) = journaled(&dyn_store).await;
    // Its first acquire did not know the workflow: it settled in the
    // background.
    counts_reach(&store, [1, 0, 0]).await;
    let background = store.settles_in_background();
    // Leased here, the execution is noted with its workflow, so a resume
    // that takes the lease over (as after a budget) settles in its pipeline.
    let (lease, _) = store
        .acquire_and_load(&id, "a", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(counts(&store).await, [1, 0, 0]);
    assert_eq!(store.settles_in_background(), background);

    store.release_lease(&id, &lease).await.unwrap();
    assert_eq!(counts(&store).await, [0, 1, 0], "right after the release");
    assert_eq!(store.settles_in_background(), background);

    // Finishing under the released lease is refused; the execution stays
    // listed as suspended.
    let refused = store
        .finish(&id, &lease, &Outcome::Completed(vec![]))
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::LeaseLost(_)), "{refused:?}");
    let suspended = store
        .list_page(&ListQuery {
            status: Some(Status::Suspended),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(suspended.executions.len(), 1);
    assert_eq!(suspended.executions[0].id, id);

    // A server without the settle script: the change settles in the
    // background, and loads the script for the next one. (Parked, the
    // execution is no longer noted: this acquire settles in the
    // background, as one on another host would.)
    let lease = store
        .acquire_lease(&id, "b", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
    let background = store.settles_in_background();
    store
        .finish(&id, &lease, &Outcome::Completed(vec![]))
        .await
        .unwrap();
    assert_eq!(store.settles_in_background(), background + 1);
    counts_reach(&store, [0, 0, 1]).await;

    let (other, lease, _) = journaled(&dyn_store).await;
    let background = store.settles_in_background();
    store
        .finish(&other, &lease, &Outcome::Completed(vec![]))
        .await
        .unwrap();
    assert_eq!(store.settles_in_background(), background);
    let c = store.count_by_status().await.unwrap();
    assert_eq!(c.get(&Status::Completed), Some(&2));
}

/// A resume of an execution parked by any host takes the lease without
/// knowing the workflow, so its acquire cannot settle the workflow's lists
/// in its pipeline. That settle waits a second and is dropped if the
/// invocation ended meanwhile, whose own change settled every list: a
/// resume that ends soon costs no round trip in the background, and one
/// still running after the wait is settled then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_ends_soon_leaves_no_settle_to_the_background() {
    let server = RedisServer::start();
    let store = Arc::new(server.store().await);
    let dyn_store: Arc<dyn Store> = store.clone();
    let mut parked = vec![];
    for n in 1..=3 {
        let (id, lease, _) = journaled(&dyn_store).await;
        // The first acquire's settle (it had no snapshot, so no workflow,
        // and settles at once) is done before the release.
        counts_reach(&store, [1, n - 1, 0]).await;
        store.release_lease(&id, &lease).await.unwrap();
        counts_reach(&store, [0, n, 0]).await;
        parked.push(id);
    }
    assert_eq!(store.noted_workflows(), 0, "parked, none is noted");
    // The server learns the scripts of a resume and a finish on their
    // first use (a settle it does not know yet runs in the background).
    let resume_and_finish = |id: ExecutionId| {
        let store = store.clone();
        async move {
            let (lease, _) = store
                .acquire_and_load(&id, "h", Duration::from_secs(60))
                .await
                .unwrap();
            store
                .finish(&id, &lease, &Outcome::Completed(vec![]))
                .await
                .unwrap();
        }
    };
    resume_and_finish(parked[0].clone()).await;
    counts_reach(&store, [0, 2, 1]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let background = store.settles_in_background();

    resume_and_finish(parked[1].clone()).await;
    assert_eq!(counts(&store).await, [0, 1, 2], "the finish settled");

    let (_lease, _) = store
        .acquire_and_load(&parked[2], "h", Duration::from_secs(60))
        .await
        .unwrap();
    // Listed where it was too until the acquire's settle runs, then only
    // as running.
    counts_reach(&store, [1, 0, 2]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store.settles_in_background(),
        background + 1,
        "the running one's settle alone"
    );
}
