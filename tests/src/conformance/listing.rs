//! Conformance cases for listing executions through the indexes: paging
//! while executions change, filters, order, and the index agreeing with
//! the records.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use reprise_host::store::{ListQuery, Order};

use super::*;

/// Creates `id` of `workflow` and moves it to `status` through the calls
/// a host makes.
async fn in_status(store: &dyn Store, id: &str, workflow: &str, status: Status) -> ExecutionId {
    let mut rec = record(id);
    rec.workflow = workflow.into();
    store.create_execution(&rec).await.unwrap();
    move_to(store, &rec.id, status).await;
    rec.id
}

async fn move_to(store: &dyn Store, id: &ExecutionId, status: Status) {
    match status {
        Status::Suspended => {
            let l = lease(store, id, "h").await;
            store
                .suspend(id, &l, &Wait::Signal { name: "go".into() }, 0)
                .await
                .unwrap();
        }
        Status::Running => {
            lease(store, id, "h").await;
        }
        Status::Completed | Status::Failed => {
            let l = lease(store, id, "h").await;
            let outcome = if status == Status::Completed {
                Outcome::Completed(vec![])
            } else {
                Outcome::Failed(reprise_host::Failure::new(
                    reprise_host::execution::FailureKind::Workflow,
                    "no",
                ))
            };
            store.finish(id, &l, &outcome).await.unwrap();
        }
        Status::Cancelled => {
            store.cancel(id).await.unwrap();
        }
    }
}

/// Every page of `query`, following the cursors, with `between` run after
/// each page.
async fn pages(
    store: &dyn Store,
    mut query: ListQuery,
    mut between: impl AsyncFnMut(usize),
) -> Vec<ExecutionRecord> {
    let mut all = Vec::new();
    for n in 0.. {
        let page = store.list_page(&query).await.unwrap();
        assert!(page.executions.len() <= query.limit);
        all.extend(page.executions);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        between(n).await;
        assert!(n < 1000, "the cursor does not advance");
    }
    all
}

/// Paging lists every execution once while others change status between
/// pages: none twice, and none missed that did not change.
pub async fn listing_pages_every_execution_once(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let mut ids = Vec::new();
    for i in 0..40 {
        let status = [Status::Suspended, Status::Completed, Status::Running][i % 3];
        ids.push(in_status(s, &format!("p{i:02}"), "wf", status).await);
    }
    let mut changed = BTreeSet::new();
    let listed = pages(
        s,
        ListQuery {
            limit: 7,
            ..ListQuery::default()
        },
        async |n| {
            // Between pages, one execution of each status moves on.
            for id in [&ids[3 * n], &ids[3 * n + 2]] {
                let status = s.get_execution(id).await.unwrap().status;
                if !status.is_terminal() {
                    s.cancel(id).await.unwrap();
                    changed.insert(id.clone());
                }
            }
        },
    )
    .await;
    let mut seen = BTreeMap::new();
    for r in &listed {
        *seen.entry(r.id.clone()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "listed twice: {seen:?}");
    for id in &ids {
        assert!(
            seen.contains_key(id) || changed.contains(id),
            "{id} did not change and was not listed"
        );
    }
    // Newest first: the listing is in order of change, ties by id.
    let unchanged: Vec<_> = listed.iter().filter(|r| !changed.contains(&r.id)).collect();
    assert!(unchanged.len() >= 20);
}

/// Filters by status, workflow and time, and both orders.
pub async fn listing_filters_and_orders(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let a1 = in_status(s, "fa1", "alpha", Status::Suspended).await;
    let a2 = in_status(s, "fa2", "alpha", Status::Completed).await;
    let a3 = in_status(s, "fa3", "alpha", Status::Running).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mid = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b1 = in_status(s, "fb1", "beta", Status::Suspended).await;
    let b2 = in_status(s, "fb2", "beta", Status::Failed).await;

    let ids = |q: ListQuery| async move {
        let page = s.list_page(&q).await.unwrap();
        assert_eq!(page.next, None);
        page.executions
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    let q = ListQuery::default();
    assert_eq!(
        ids(q.clone()).await,
        vec![b2.clone(), b1.clone(), a3.clone(), a2.clone(), a1.clone()]
    );
    assert_eq!(
        ids(ListQuery {
            order: Order::OldestFirst,
            ..q.clone()
        })
        .await,
        vec![a1.clone(), a2.clone(), a3.clone(), b1.clone(), b2.clone()]
    );
    assert_eq!(
        ids(ListQuery {
            status: Some(Status::Suspended),
            ..q.clone()
        })
        .await,
        vec![b1.clone(), a1.clone()]
    );
    assert_eq!(
        ids(ListQuery {
            workflow: Some("alpha".into()),
            ..q.clone()
        })
        .await,
        vec![a3.clone(), a2.clone(), a1.clone()]
    );
    for status in [Status::Running, Status::Completed] {
        let only = ids(ListQuery {
            workflow: Some("alpha".into()),
            status: Some(status),
            ..q.clone()
        })
        .await;
        assert_eq!(only.len(), 1, "{status}");
        assert_eq!(s.get_execution(&only[0]).await.unwrap().status, status);
    }
    assert!(
        ids(ListQuery {
            workflow: Some("beta".into()),
            status: Some(Status::Running),
            ..q.clone()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        ids(ListQuery {
            changed_since_ms: Some(mid),
            ..q.clone()
        })
        .await,
        vec![b2.clone(), b1.clone()]
    );
    assert_eq!(
        ids(ListQuery {
            changed_before_ms: Some(mid),
            order: Order::OldestFirst,
            ..q.clone()
        })
        .await,
        vec![a1, a2, a3]
    );
    // A page of one at a time, oldest first, ends where it should.
    let one_by_one = pages(
        s,
        ListQuery {
            limit: 1,
            order: Order::OldestFirst,
            workflow: Some("beta".into()),
            ..q
        },
        async |_| {},
    )
    .await;
    let got: Vec<_> = one_by_one.into_iter().map(|r| r.id).collect();
    assert_eq!(got, vec![b1, b2]);
}

/// After every kind of change, including ones refused (a finish with a
/// lost lease) and deletes, each status lists exactly the executions that
/// have it, and the counts agree.
pub async fn index_agrees_with_records(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let mut ids = Vec::new();
    for i in 0..25 {
        let status = Status::ALL[i % 5];
        ids.push(in_status(s, &format!("ix{i:02}"), &format!("w{}", i % 2), status).await);
    }
    // A refused finish: the lease was taken over.
    let taken = &ids[0];
    let old = s.get_execution(taken).await.unwrap().lease.unwrap();
    lease(s, taken, "h").await;
    assert!(
        s.finish(taken, &old, &Outcome::Completed(vec![]))
            .await
            .is_err()
    );
    // A cancel of an ended execution is refused too.
    assert!(s.cancel(&ids[2]).await.is_err());
    // Suspended ones resume; a signal wakes one; some are deleted.
    move_to(s, &ids[1], Status::Running).await;
    s.signal(&ids[6], "go", b"").await.unwrap();
    s.delete_execution(&ids[3]).await.unwrap();
    s.delete_execution(&ids[4]).await.unwrap();

    let mut expected: HashMap<Status, BTreeSet<ExecutionId>> = HashMap::new();
    for id in &ids {
        if let Ok(r) = s.get_execution(id).await {
            expected.entry(r.status).or_default().insert(r.id);
        }
    }
    for status in Status::ALL {
        let listed: Vec<_> = s
            .list_executions(Some(status))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let set: BTreeSet<_> = listed.iter().cloned().collect();
        assert_eq!(set.len(), listed.len(), "{status} listed one twice");
        assert_eq!(
            set,
            expected.remove(&status).unwrap_or_default(),
            "{status}"
        );
        for w in ["w0", "w1"] {
            let by_workflow: BTreeSet<_> = s
                .list_page(&ListQuery {
                    status: Some(status),
                    workflow: Some(w.into()),
                    limit: 1000,
                    ..ListQuery::default()
                })
                .await
                .unwrap()
                .executions
                .into_iter()
                .map(|r| {
                    assert_eq!(r.workflow, w);
                    r.id
                })
                .collect();
            assert!(by_workflow.is_subset(&set), "{status} {w}");
        }
    }
    let counts = s.count_by_status().await.unwrap();
    let total: u64 = counts.values().sum();
    // A refused change may leave an entry the counters see until a reader
    // drops it (Redis, documented); never fewer than there are.
    assert!(total >= 23, "{counts:?}");
    assert!(total <= 25, "{counts:?}");
}

/// Changes the store refuses (a lease on an ended execution, a second
/// create of an id, a cancel of an ended execution, anything of an unknown
/// id) leave the counts as they were once the store settles.
pub async fn refused_changes_leave_the_counts_alone(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let done = in_status(s, "rc-done", "wf", Status::Completed).await;
    let waiting = in_status(s, "rc-wait", "wf", Status::Suspended).await;
    for _ in 0..3 {
        assert!(matches!(
            s.acquire_lease(&done, "h", TTL).await,
            Err(StoreError::Terminal { .. })
        ));
        assert!(matches!(
            s.acquire_and_load(&done, "h", TTL).await,
            Err(StoreError::Terminal { .. })
        ));
        assert!(matches!(
            s.create_execution(&record("rc-done")).await.unwrap(),
            Created::Existing(_)
        ));
        assert!(s.cancel(&done).await.is_err());
    }
    let missing = ExecutionId::new("rc-missing").unwrap();
    assert!(matches!(
        s.acquire_lease(&missing, "h", TTL).await,
        Err(StoreError::NotFound(_))
    ));
    let expected: HashMap<Status, u64> = [(Status::Completed, 1), (Status::Suspended, 1)].into();
    assert_eq!(settled_counts(s, &expected).await, expected);
    assert_eq!(
        s.get_execution(&waiting).await.unwrap().status,
        Status::Suspended
    );
}
