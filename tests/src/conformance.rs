//! The store conformance suite: what every `Store` backend must do. Each
//! case is a function over `Arc<dyn Store>`; `conformance_tests!` turns them
//! into one test per case for a backend.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::execution::{ExecutionRecord, Lease, Outcome, Status, Wait};
use reprise_host::journal::{Entry, EntryKind, InputKey};
use reprise_host::store::{Created, DeploymentVersion, StoreError, Suspended, now_ms};
use reprise_host::{Digest, ExecutionId, Store};

mod listing;
mod pages;
pub use listing::*;
pub use pages::*;

const TTL: Duration = Duration::from_secs(30);

fn record(id: &str) -> ExecutionRecord {
    ExecutionRecord::new(
        ExecutionId::new(id).unwrap(),
        "wf".into(),
        Digest::of(b"component"),
        b"input".to_vec(),
        now_ms(),
    )
}

fn entry(i: u64) -> Entry {
    Entry {
        at_ms: now_ms(),
        duration_us: i,
        kind: EntryKind::Emit {
            item: i.to_le_bytes().to_vec(),
        },
    }
}

async fn created(store: &dyn Store, id: &str) -> ExecutionId {
    let rec = record(id);
    assert!(matches!(
        store.create_execution(&rec).await.unwrap(),
        Created::New
    ));
    rec.id
}

async fn lease(store: &dyn Store, id: &ExecutionId, owner: &str) -> Lease {
    store.acquire_lease(id, owner, TTL).await.unwrap()
}

/// Components are stored by digest; deployments point names at digests.
pub async fn components_and_deployments(store: Arc<dyn Store>) {
    let d = Digest::of(b"bytes");
    assert_eq!(store.get_component(&d).await.unwrap(), None);
    store.put_component(&d, b"bytes").await.unwrap();
    store.put_component(&d, b"bytes").await.unwrap();
    assert_eq!(store.get_component(&d).await.unwrap().unwrap(), b"bytes");
    assert_eq!(store.get_deployment("wf").await.unwrap(), None);
    assert!(store.deployment_versions("wf").await.unwrap().is_empty());
    let v1 = store.put_deployment("wf", &version(d, 10)).await.unwrap();
    assert_eq!((v1.version, v1.digest, v1.deployed_at_ms), (1, d, 10));
    assert_eq!(v1.imports, vec!["reprise:workflow/host@0.1.0".to_string()]);
    assert_eq!(store.get_deployment("wf").await.unwrap(), Some(d));
    // The same digest again adds no version.
    let again = store.put_deployment("wf", &version(d, 20)).await.unwrap();
    assert_eq!(again, v1);
    let d2 = Digest::of(b"v2");
    let v2 = store.put_deployment("wf", &version(d2, 30)).await.unwrap();
    assert_eq!((v2.version, v2.digest), (2, d2));
    assert_eq!(store.get_deployment("wf").await.unwrap(), Some(d2));
    // Back to the first digest: a new version, not a rewrite of history.
    let v3 = store.put_deployment("wf", &version(d, 40)).await.unwrap();
    assert_eq!((v3.version, v3.digest), (3, d));
    let all = store.deployment_versions("wf").await.unwrap();
    assert_eq!(
        all.iter()
            .map(|v| (v.version, v.digest))
            .collect::<Vec<_>>(),
        vec![(1, d), (2, d2), (3, d)]
    );
    store
        .put_deployment("other", &version(d2, 50))
        .await
        .unwrap();
    let listed = store.list_deployments().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|(n, v)| (n.as_str(), v.version, v.digest))
            .collect::<Vec<_>>(),
        vec![("other", 1, d2), ("wf", 3, d)]
    );
}

/// A deployment version of `digest` at time `at`.
pub fn version(digest: Digest, at: u64) -> DeploymentVersion {
    DeploymentVersion {
        version: 0,
        digest,
        deployed_at_ms: at,
        imports: vec!["reprise:workflow/host@0.1.0".into()],
    }
}

/// Creating an execution twice keeps the first.
pub async fn create_is_idempotent(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let mut other = record("e1");
    other.input = b"other".to_vec();
    match store.create_execution(&other).await.unwrap() {
        Created::Existing(rec) => assert_eq!(rec.input, b"input"),
        Created::New => panic!("created twice"),
    }
    let rec = store.get_execution(&id).await.unwrap();
    assert_eq!(rec.status, Status::Suspended);
    assert_eq!(rec.wait, Some(Wait::Ready));
    let missing = ExecutionId::new("missing").unwrap();
    assert!(matches!(
        store.get_execution(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.load(&missing).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Appends are conditional on the next index and durable in order.
pub async fn appends_are_conditional_and_ordered(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let l = lease(store.as_ref(), &id, "a").await;
    for i in 0..50 {
        store.append(&id, &l, i, &entry(i)).await.unwrap();
    }
    for bad in [0, 49, 51] {
        match store.append(&id, &l, bad, &entry(bad)).await {
            Err(StoreError::Conflict { index, len, .. }) => {
                assert_eq!((index, len), (bad, 50));
            }
            other => panic!("append at {bad} should conflict, got {other:?}"),
        }
    }
    let snap = store.load(&id).await.unwrap();
    assert_eq!(snap.journal.len(), 50);
    assert_eq!(snap.record.journal_len, 50);
    for (i, e) in snap.journal.iter().enumerate() {
        assert_eq!(e.duration_us, i as u64, "entry {i} out of order");
    }
}

/// Appends to many executions at once (what group commit batches) all
/// land, each journal in order; an append refused among them (a stale
/// index) fails alone and writes nothing.
pub async fn concurrent_appends_land_independently(store: Arc<dyn Store>) {
    let (executions, appends) = (16, 25u64);
    let mut tasks = tokio::task::JoinSet::new();
    for e in 0..executions {
        let store = store.clone();
        tasks.spawn(async move {
            let id = created(store.as_ref(), &format!("c{e}")).await;
            let l = lease(store.as_ref(), &id, "h").await;
            for i in 0..appends {
                store.append(&id, &l, i, &entry(i)).await.unwrap();
                if i % 5 == 4 {
                    // Refused: index i was just written.
                    assert!(matches!(
                        store.append(&id, &l, i, &entry(999)).await,
                        Err(StoreError::Conflict { .. })
                    ));
                }
            }
            id
        });
    }
    let ids: Vec<ExecutionId> = tasks.join_all().await;
    for id in ids {
        let snap = store.load(&id).await.unwrap();
        assert_eq!(snap.record.journal_len, appends);
        let order: Vec<u64> = snap.journal.iter().map(|e| e.duration_us).collect();
        assert_eq!(order, (0..appends).collect::<Vec<_>>(), "{id}");
        let page = store.items(&id, None, 100).await.unwrap();
        assert_eq!(page.count, appends);
    }
}

/// One lease at a time; a newer lease fences the older holder out.
pub async fn leases_are_exclusive_and_fenced(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let short = Duration::from_millis(100);
    let a = store.acquire_lease(&id, "a", short).await.unwrap();
    match store.acquire_lease(&id, "b", TTL).await {
        Err(StoreError::LeaseHeld { owner, .. }) => assert_eq!(owner, "a"),
        other => panic!("second lease granted: {other:?}"),
    }
    store.append(&id, &a, 0, &entry(0)).await.unwrap();
    let a = store.renew_lease(&id, &a, short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // a's lease expired: it cannot write any more, and b can take over.
    assert!(matches!(
        store.append(&id, &a, 1, &entry(1)).await,
        Err(StoreError::LeaseLost(_))
    ));
    let b = lease(store.as_ref(), &id, "b").await;
    assert!(b.token > a.token, "fencing token must grow");
    assert!(matches!(
        store.renew_lease(&id, &a, TTL).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        store.finish(&id, &a, &Outcome::Completed(vec![])).await,
        Err(StoreError::LeaseLost(_))
    ));
    store.append(&id, &b, 1, &entry(1)).await.unwrap();
    let rec = store.get_execution(&id).await.unwrap();
    assert_eq!((rec.invocations, rec.journal_len), (2, 2));
    assert_eq!(rec.status, Status::Running);
}

/// Signals are buffered in order; a suspension never misses one.
pub async fn signals_are_buffered_and_wake(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let early = store.signal(&id, "go", b"1").await.unwrap();
    assert_eq!((early.seq, early.woke), (0, false));
    store.signal(&id, "other", b"x").await.unwrap();
    let l = lease(store.as_ref(), &id, "a").await;
    let wait = Wait::Signal { name: "go".into() };
    // One "go" arrived and none was consumed: do not sleep on it.
    assert_eq!(
        store.suspend(&id, &l, &wait, 0).await.unwrap(),
        Suspended::Ready
    );
    let l = lease(store.as_ref(), &id, "a").await;
    assert_eq!(
        store.suspend(&id, &l, &wait, 1).await.unwrap(),
        Suspended::Waiting
    );
    let rec = store.get_execution(&id).await.unwrap();
    assert_eq!(
        (rec.status, rec.wait.clone()),
        (Status::Suspended, Some(wait))
    );
    assert!(rec.lease.is_none());
    let late = store.signal(&id, "go", b"2").await.unwrap();
    assert_eq!((late.seq, late.woke), (2, true));
    assert_eq!(
        store.get_execution(&id).await.unwrap().wait,
        Some(Wait::Ready)
    );
    let second = store.next_signal(&id, "go", 1).await.unwrap().unwrap();
    assert_eq!((second.seq, second.payload), (2, b"2".to_vec()));
    assert_eq!(store.next_signal(&id, "go", 2).await.unwrap(), None);
    let snap = store.load(&id).await.unwrap();
    let seqs: Vec<u64> = snap.signals.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [0, 1, 2]);
}

/// Timers are recorded as the wait of a suspended execution.
pub async fn suspend_records_timers(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let l = lease(store.as_ref(), &id, "a").await;
    let wait = Wait::Timer { wake_at_ms: 1234 };
    assert_eq!(
        store.suspend(&id, &l, &wait, 0).await.unwrap(),
        Suspended::Waiting
    );
    let suspended = store
        .list_executions(Some(Status::Suspended))
        .await
        .unwrap();
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0].wait, Some(wait));
    // The released lease cannot write.
    assert!(matches!(
        store.append(&id, &l, 0, &entry(0)).await,
        Err(StoreError::LeaseLost(_))
    ));
}

/// A finished execution takes no lease, write, signal or cancel.
pub async fn finished_executions_are_final(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let l = lease(store.as_ref(), &id, "a").await;
    store.append(&id, &l, 0, &entry(0)).await.unwrap();
    let written = store
        .finish(&id, &l, &Outcome::Completed(b"out".to_vec()))
        .await
        .unwrap();
    let rec = store.get_execution(&id).await.unwrap();
    // What `finish` hands back is what a read finds: waiters take it
    // instead of reading.
    assert_eq!(written, rec);
    assert_eq!(rec.journal_len, 1);
    assert_eq!(rec.status, Status::Completed);
    assert_eq!(rec.outcome, Some(Outcome::Completed(b"out".to_vec())));
    assert!(matches!(
        store.acquire_lease(&id, "b", TTL).await,
        Err(StoreError::Terminal { .. })
    ));
    assert!(matches!(
        store.signal(&id, "go", b"").await,
        Err(StoreError::Terminal { .. })
    ));
    assert!(matches!(
        store.cancel(&id).await,
        Err(StoreError::Terminal { .. })
    ));
}

/// Cancelling stops a running holder at its next write.
pub async fn cancel_fences_the_running_invocation(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let l = lease(store.as_ref(), &id, "a").await;
    store.append(&id, &l, 0, &entry(0)).await.unwrap();
    let rec = store.cancel(&id).await.unwrap();
    assert_eq!(rec.status, Status::Cancelled);
    assert!(matches!(
        store.append(&id, &l, 1, &entry(1)).await,
        Err(StoreError::Terminal {
            status: Status::Cancelled,
            ..
        })
    ));
    assert_eq!(store.load(&id).await.unwrap().journal.len(), 1);
}

/// Listing filters by status; deleting removes everything of one execution.
pub async fn list_and_delete(store: Arc<dyn Store>) {
    let a = created(store.as_ref(), "a").await;
    let b = created(store.as_ref(), "b").await;
    let l = lease(store.as_ref(), &b, "h").await;
    store.append(&b, &l, 0, &entry(0)).await.unwrap();
    store.signal(&b, "s", b"").await.unwrap();
    assert_eq!(store.list_executions(None).await.unwrap().len(), 2);
    let running = store.list_executions(Some(Status::Running)).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, b);
    // Only an execution that ended can be deleted.
    assert!(matches!(
        store.delete_execution(&b).await,
        Err(StoreError::Active {
            status: Status::Running,
            ..
        })
    ));
    store.cancel(&b).await.unwrap();
    store.delete_execution(&b).await.unwrap();
    assert!(matches!(store.load(&b).await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        store.delete_execution(&b).await,
        Err(StoreError::NotFound(_))
    ));
    // Re-creating the id starts from an empty journal and no signals.
    let b = created(store.as_ref(), "b").await;
    let snap = store.load(&b).await.unwrap();
    assert!(snap.journal.is_empty() && snap.signals.is_empty());
    assert_eq!(store.load(&a).await.unwrap().record.id, a);
}

/// Counting by status agrees with the records (soon after each change),
/// and does not depend on what they hold (a large error is not read to
/// count it).
pub async fn counts_by_status(store: Arc<dyn Store>) {
    assert!(store.count_by_status().await.unwrap().is_empty());
    let a = created(store.as_ref(), "ca").await;
    let b = created(store.as_ref(), "cb").await;
    created(store.as_ref(), "cc").await;
    let l = lease(store.as_ref(), &a, "h").await;
    let failed = Outcome::Failed(reprise_host::Failure::new(
        reprise_host::execution::FailureKind::Workflow,
        "e".repeat(1 << 20),
    ));
    store.finish(&a, &l, &failed).await.unwrap();
    store.cancel(&b).await.unwrap();
    let mut expected = std::collections::HashMap::new();
    for r in store.list_executions(None).await.unwrap() {
        *expected.entry(r.status).or_insert(0u64) += 1;
    }
    let counts = settled_counts(store.as_ref(), &expected).await;
    assert_eq!(counts, expected);
    assert_eq!(counts.get(&Status::Failed), Some(&1));
    assert_eq!(counts.get(&Status::Cancelled), Some(&1));
    assert_eq!(counts.values().sum::<u64>(), 3);
}

/// The counts by status once they equal `expected`, or after 2 s. They
/// follow each change at once on the embedded store, and within a round
/// trip on Redis (the entries a change leaves behind are removed after it,
/// off the caller's path).
async fn settled_counts(
    store: &dyn Store,
    expected: &std::collections::HashMap<Status, u64>,
) -> std::collections::HashMap<Status, u64> {
    let mut counts = store.count_by_status().await.unwrap();
    for _ in 0..100 {
        if &counts == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        counts = store.count_by_status().await.unwrap();
    }
    counts
}

/// A host may take over its own lease (its earlier invocation is gone); the
/// new token fences the old one out.
pub async fn same_owner_takes_over_its_lease(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let first = lease(store.as_ref(), &id, "a").await;
    let second = lease(store.as_ref(), &id, "a").await;
    assert!(second.token > first.token);
    assert!(matches!(
        store.append(&id, &first, 0, &entry(0)).await,
        Err(StoreError::LeaseLost(_))
    ));
    store.append(&id, &second, 0, &entry(0)).await.unwrap();
    assert_eq!(store.get_execution(&id).await.unwrap().invocations, 2);
}

/// Taking the lease and loading in one call gives the journal and a lease
/// that can append; another owner is refused while it is live.
pub async fn acquire_and_load_takes_the_lease(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let l = lease(store.as_ref(), &id, "a").await;
    store.append(&id, &l, 0, &entry(0)).await.unwrap();
    store.signal(&id, "go", b"x").await.unwrap();
    store.release_lease(&id, &l).await.unwrap();
    let (l2, snap) = store.acquire_and_load(&id, "b", TTL).await.unwrap();
    assert!(l2.token > l.token);
    assert_eq!((snap.journal.len(), snap.signals.len()), (1, 1));
    assert_eq!(snap.record.status, Status::Running);
    assert_eq!(snap.record.lease.as_ref().map(|l| l.token), Some(l2.token));
    store.append(&id, &l2, 1, &entry(1)).await.unwrap();
    assert!(matches!(
        store.acquire_and_load(&id, "c", TTL).await,
        Err(StoreError::LeaseHeld { .. })
    ));
    let missing = ExecutionId::new("missing").unwrap();
    assert!(matches!(
        store.acquire_and_load(&missing, "c", TTL).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A continuation's start writes the entries its last invocation left
/// unwritten, then takes the lease again and loads them with the rest (or,
/// for a caller that has the journal, only the entries from the index it
/// asks); a refused append (a fenced lease, a wrong index) writes nothing
/// and leaves no lease taken.
pub async fn append_and_acquire_writes_then_takes_the_lease(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "e1").await;
    let l = lease(store.as_ref(), &id, "a").await;
    store.append(&id, &l, 0, &entry(0)).await.unwrap();
    let large = tool_result(7, vec![9; 300 << 10]);
    let (l2, snap) = store
        .append_and_acquire(&id, &l, 1, &[entry(1), large], "a", TTL, 0)
        .await
        .unwrap();
    assert!(l2.token > l.token);
    assert_eq!(snap.record.status, Status::Running);
    assert_eq!(snap.record.invocations, 2);
    assert_eq!(snap.record.journal_len, 3);
    let durations: Vec<u64> = snap.journal.iter().map(|e| e.duration_us).collect();
    assert_eq!(durations, [0, 1, 7]);
    assert_eq!(
        tool_value(store.as_ref(), &snap.journal[2]).await,
        vec![9; 300 << 10]
    );
    // The old lease is fenced out; the new one appends.
    assert!(matches!(
        store.append(&id, &l, 3, &entry(3)).await,
        Err(StoreError::LeaseLost(_))
    ));
    store.append(&id, &l2, 3, &entry(3)).await.unwrap();

    // A caller with the whole journal reads none of it again; one with its
    // start reads the rest, a large result included.
    let (l3, snap) = store
        .append_and_acquire(&id, &l2, 4, &[entry(4)], "a", TTL, 5)
        .await
        .unwrap();
    assert!(l3.token > l2.token);
    assert!(snap.journal.is_empty(), "{:?}", snap.journal);
    assert_eq!(snap.record.journal_len, 5);
    assert_eq!(snap.record.invocations, 3);
    let (l4, snap) = store
        .append_and_acquire(&id, &l3, 5, &[entry(5)], "a", TTL, 2)
        .await
        .unwrap();
    let durations: Vec<u64> = snap.journal.iter().map(|e| e.duration_us).collect();
    assert_eq!(durations, [7, 3, 4, 5]);
    assert_eq!(snap.record.journal_len, 6);
    assert_eq!(
        tool_value(store.as_ref(), &snap.journal[0]).await,
        vec![9; 300 << 10]
    );
    // Past the end: nothing, and the record still counts every entry.
    let (l5, snap) = store
        .append_and_acquire(&id, &l4, 6, &[entry(6)], "a", TTL, 9)
        .await
        .unwrap();
    assert!(snap.journal.is_empty());
    assert_eq!(snap.record.journal_len, 7);
    store.release_lease(&id, &l5).await.unwrap();

    let refused = store
        .append_and_acquire(&id, &l, 7, &[entry(7)], "a", TTL, 0)
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost(_))),
        "{refused:?}"
    );
    let l6 = lease(store.as_ref(), &id, "a").await;
    let refused = store
        .append_and_acquire(&id, &l6, 9, &[entry(9)], "a", TTL, 0)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    let (_, snap) = store.acquire_and_load(&id, "a", TTL).await.unwrap();
    assert_eq!(snap.journal.len(), 7, "a refused append wrote nothing");
    assert_eq!(snap.record.journal_len, 7);

    // Another owner's live lease: refused, and that lease stays.
    let id = created(store.as_ref(), "e2").await;
    let mine = lease(store.as_ref(), &id, "a").await;
    store.release_lease(&id, &mine).await.unwrap();
    let theirs = lease(store.as_ref(), &id, "b").await;
    let refused = store
        .append_and_acquire(&id, &mine, 0, &[entry(0)], "a", TTL, 0)
        .await;
    assert!(refused.is_err(), "{refused:?}");
    store.append(&id, &theirs, 0, &entry(0)).await.unwrap();
}

/// A record created leased (a start where it will run) is stored running
/// and held, exactly as its first acquire would leave it: its lease appends
/// and finishes, other owners are refused until it is released, and it
/// counts as running.
pub async fn created_leased_is_held(store: Arc<dyn Store>) {
    let mut rec = record("cl");
    let held = rec.take_lease("a", TTL, now_ms());
    assert!(matches!(
        store.create_execution(&rec).await.unwrap(),
        Created::New
    ));
    let stored = store.get_execution(&rec.id).await.unwrap();
    assert_eq!(stored.status, Status::Running);
    assert_eq!(stored.invocations, 1);
    let stored_lease = stored.lease.expect("created with its lease");
    assert_eq!(
        (stored_lease.owner.as_str(), stored_lease.token),
        ("a", held.token)
    );
    // Dated by the store's clock where it keeps one: within the TTL of now.
    let now = now_ms();
    assert!(
        stored_lease.expires_at_ms > now
            && stored_lease.expires_at_ms <= now + TTL.as_millis() as u64 + 5_000,
        "lease expiry {} for now {now}",
        stored_lease.expires_at_ms
    );
    assert!(matches!(
        store.acquire_and_load(&rec.id, "b", TTL).await,
        Err(StoreError::LeaseHeld { .. })
    ));
    store.append(&rec.id, &held, 0, &entry(0)).await.unwrap();
    let expected = std::collections::HashMap::from([(Status::Running, 1u64)]);
    assert_eq!(settled_counts(store.as_ref(), &expected).await, expected);
    store.release_lease(&rec.id, &held).await.unwrap();
    let (next, snap) = store.acquire_and_load(&rec.id, "b", TTL).await.unwrap();
    assert!(next.token > held.token);
    assert_eq!(snap.journal.len(), 1);
    assert!(matches!(
        store.append(&rec.id, &held, 1, &entry(1)).await,
        Err(StoreError::LeaseLost(_))
    ));
    store
        .finish(&rec.id, &next, &Outcome::Completed(b"done".to_vec()))
        .await
        .unwrap();
    assert_eq!(store.get_execution(&rec.id).await.unwrap().invocations, 2);
}

/// Executions that ended before a time are purged; others are kept.
pub async fn purge_removes_only_finished_executions(store: Arc<dyn Store>) {
    let done = created(store.as_ref(), "done").await;
    let l = lease(store.as_ref(), &done, "a").await;
    store.append(&done, &l, 0, &entry(0)).await.unwrap();
    store
        .finish(&done, &l, &Outcome::Completed(vec![1]))
        .await
        .unwrap();
    let cancelled = created(store.as_ref(), "cancelled").await;
    store.cancel(&cancelled).await.unwrap();
    let waiting = created(store.as_ref(), "waiting").await;
    let running = created(store.as_ref(), "running").await;
    lease(store.as_ref(), &running, "a").await;

    // Nothing ended before a time in the past.
    assert_eq!(store.purge_finished(1, 100).await.unwrap(), 0);
    let later = now_ms() + 1_000;
    assert_eq!(store.purge_finished(later, 1).await.unwrap(), 1);
    assert_eq!(store.purge_finished(later, 100).await.unwrap(), 1);
    assert_eq!(store.purge_finished(later, 100).await.unwrap(), 0);
    for gone in [&done, &cancelled] {
        assert!(matches!(
            store.load(gone).await,
            Err(StoreError::NotFound(_))
        ));
    }
    for kept in [&waiting, &running] {
        assert_eq!(&store.get_execution(kept).await.unwrap().id, kept);
    }
}

/// A successful tool entry with `value` as its result.
fn tool_result(duration_us: u64, value: Vec<u8>) -> Entry {
    Entry {
        at_ms: now_ms(),
        duration_us,
        kind: EntryKind::Tool {
            category: "c".into(),
            name: "n".into(),
            input: InputKey::of(b""),
            input_len: 0,
            result: Ok(value.into()),
        },
    }
}

/// The result of a tool entry as loaded: inline, or from the stored value
/// it refers to (whose recorded length must match).
async fn tool_value(store: &dyn Store, entry: &Entry) -> Vec<u8> {
    match &entry.kind {
        EntryKind::Tool { result, .. } => result.clone().unwrap().to_vec(),
        EntryKind::ToolStored {
            result_digest,
            result_len,
            ..
        } => {
            let value = store.get_blob(result_digest, *result_len).await.unwrap();
            assert_eq!(value.len() as u64, *result_len);
            value
        }
        other => panic!("unexpected entry {other:?}"),
    }
}

/// A large tool result comes back intact, inline or as a stored value.
pub async fn large_results_round_trip(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "big").await;
    let l = lease(store.as_ref(), &id, "a").await;
    let value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let tool = tool_result(0, value.clone());
    store.append(&id, &l, 0, &tool).await.unwrap();
    store.append(&id, &l, 1, &entry(1)).await.unwrap();
    let snap = store.load(&id).await.unwrap();
    assert_eq!(snap.journal.len(), 2);
    let loaded = tool_value(store.as_ref(), &snap.journal[0]).await;
    assert!(loaded == value, "large result changed in the store");
    assert_eq!(snap.journal[0].kind.call(), tool.kind.call());
}

/// Several entries appended in one write: all at their indexes, or none.
/// Items continue the stream in order, a large result inside a batch comes
/// back whole, and a batch at the wrong index or under a lost lease writes
/// nothing.
pub async fn batches_append_all_or_nothing(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "batch").await;
    let l = lease(store.as_ref(), &id, "a").await;
    store.append_many(&id, &l, 0, &[]).await.unwrap();
    store.append(&id, &l, 0, &entry(0)).await.unwrap();
    let value: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let mut batch: Vec<Entry> = (1..=100).map(entry).collect();
    batch.push(tool_result(101, value.clone()));
    batch.push(Entry {
        at_ms: now_ms(),
        duration_us: 102,
        kind: EntryKind::Checkpoint,
    });
    store.append_many(&id, &l, 1, &batch).await.unwrap();
    // A batch at a stale index (overlapping the last one) writes nothing.
    let stale: Vec<Entry> = (500..510).map(entry).collect();
    for bad in [1, 102, 104] {
        match store.append_many(&id, &l, bad, &stale).await {
            Err(StoreError::Conflict { index, len, .. }) => assert_eq!((index, len), (bad, 103)),
            other => panic!("a batch at {bad} should conflict, got {other:?}"),
        }
    }
    let snap = store.load(&id).await.unwrap();
    assert_eq!((snap.journal.len(), snap.record.journal_len), (103, 103));
    for (i, e) in snap.journal.iter().enumerate() {
        assert_eq!(e.duration_us, i as u64, "entry {i} out of place");
    }
    let loaded = tool_value(store.as_ref(), &snap.journal[101]).await;
    assert!(loaded == value, "the large result changed in the store");
    let page = store.items(&id, None, 1000).await.unwrap();
    assert_eq!(page.count, 101);
    let expected: Vec<(u64, Vec<u8>)> = (0..=100u64)
        .map(|i| (i, i.to_le_bytes().to_vec()))
        .collect();
    assert_eq!(page.items, expected);
    // A newer lease fences the old holder's batch out, whole.
    store.release_lease(&id, &l).await.unwrap();
    let newer = lease(store.as_ref(), &id, "b").await;
    assert!(matches!(
        store.append_many(&id, &l, 103, &stale).await,
        Err(StoreError::LeaseLost(_))
    ));
    store.append_many(&id, &newer, 103, &stale).await.unwrap();
    let page = store.items(&id, Some(100), 1000).await.unwrap();
    assert_eq!(page.count, 111);
    assert_eq!(page.items[0], (101, 500u64.to_le_bytes().to_vec()));
}

/// Defines one `#[tokio::test]` per conformance case for a backend.
/// `$make` is a future of `(Arc<dyn Store>, guard)`; the guard (a temp dir, a
/// Redis server) lives as long as the test.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_tests!(@cases $make;
                components_and_deployments,
                create_is_idempotent,
                appends_are_conditional_and_ordered,
                batches_append_all_or_nothing,
                concurrent_appends_land_independently,
                leases_are_exclusive_and_fenced,
                signals_are_buffered_and_wake,
                suspend_records_timers,
                finished_executions_are_final,
                cancel_fences_the_running_invocation,
                list_and_delete,
                counts_by_status,
                same_owner_takes_over_its_lease,
                acquire_and_load_takes_the_lease,
                append_and_acquire_writes_then_takes_the_lease,
                created_leased_is_held,
                purge_removes_only_finished_executions,
                large_results_round_trip,
                items_follow_emits,
                journal_pages_are_ranges,
                consumer_sessions,
                listing_pages_every_execution_once,
                listing_filters_and_orders,
                index_agrees_with_records,
                refused_changes_leave_the_counts_alone,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}
