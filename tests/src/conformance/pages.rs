//! Conformance cases for what is read a page at a time: the output stream,
//! its consumer sessions, and the journal.

use super::*;
/// Consumer sessions: created on first touch, `acked` only grows, last
/// access moves, a closed session stays closed, the stream policy survives
/// the round trip, and sessions go with the execution.
pub async fn consumer_sessions(store: Arc<dyn Store>) {
    use reprise_host::{OnAbandon, StreamPolicy};
    let id = ExecutionId::new("sessions").unwrap();
    let mut rec = ExecutionRecord::new(id.clone(), "wf".into(), Digest::of(b"c"), vec![], now_ms());
    let policy = StreamPolicy {
        window: 7,
        on_abandon: OnAbandon::Continue,
        window_bytes: Some(4096),
    };
    rec.stream = Some(policy);
    store.create_execution(&rec).await.unwrap();
    assert_eq!(store.get_execution(&id).await.unwrap().stream, Some(policy));
    assert!(store.sessions(&id).await.unwrap().is_empty());

    let a = store.touch_session(&id, "a", None).await.unwrap();
    assert_eq!((a.id.as_str(), a.acked, a.closed), ("a", None, false));
    assert!(a.last_access_ms > 0);
    let a = store.touch_session(&id, "a", Some(5)).await.unwrap();
    assert_eq!(a.acked, Some(5));
    // Acknowledgements never go back.
    let a = store.touch_session(&id, "a", Some(2)).await.unwrap();
    assert_eq!(a.acked, Some(5));
    let b = store.touch_session(&id, "b", Some(0)).await.unwrap();
    assert_eq!(b.acked, Some(0));
    let mut all = store.sessions(&id).await.unwrap();
    all.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        all.iter()
            .map(|s| (s.id.as_str(), s.acked))
            .collect::<Vec<_>>(),
        vec![("a", Some(5)), ("b", Some(0))]
    );

    let closed = store.close_session(&id, "a").await.unwrap().unwrap();
    assert!(closed.closed);
    assert_eq!(closed.acked, Some(5));
    // A closed session is left closed by a touch.
    let again = store.touch_session(&id, "a", Some(9)).await.unwrap();
    assert!(again.closed);
    assert_eq!(again.acked, Some(5));
    assert!(store.close_session(&id, "nobody").await.unwrap().is_none());

    let other = ExecutionId::new("no-such").unwrap();
    assert!(matches!(
        store.touch_session(&other, "a", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.sessions(&other).await,
        Err(StoreError::NotFound(_))
    ));

    store.cancel(&id).await.unwrap();
    store.delete_execution(&id).await.unwrap();
    // Gone with the execution: a new one under the id has none.
    store.create_execution(&rec).await.unwrap();
    assert!(store.sessions(&id).await.unwrap().is_empty());
}

/// A journal page is the requested range and the journal's length: every
/// entry once across pages, an empty page past the end, and an unknown
/// execution is `NotFound`.
pub async fn journal_pages_are_ranges(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "paged").await;
    let l = lease(store.as_ref(), &id, "h").await;
    let written: Vec<Entry> = (0..10).map(entry).collect();
    store.append_many(&id, &l, 0, &written[..7]).await.unwrap();
    for (i, e) in written.iter().enumerate().skip(7) {
        store.append(&id, &l, i as u64, e).await.unwrap();
    }
    // As stored (an emitted item is journaled by its digest).
    let all = store.load(&id).await.unwrap().journal;
    assert_eq!(all.len(), 10);
    let mut read = Vec::new();
    let mut from = 0;
    loop {
        let page = store.journal_page(&id, from, 3).await.unwrap();
        assert_eq!(page.total, 10);
        if page.entries.is_empty() {
            break;
        }
        assert!(page.entries.len() <= 3);
        from += page.entries.len() as u64;
        read.extend(page.entries);
    }
    assert_eq!(read, all);
    let page = store.journal_page(&id, 4, 2).await.unwrap();
    assert_eq!(page.entries, all[4..6]);
    let page = store.journal_page(&id, 9, 100).await.unwrap();
    assert_eq!(page.entries, all[9..]);
    assert!(
        store
            .journal_page(&id, 3, 0)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    assert!(
        store
            .journal_page(&id, u64::MAX, 5)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    let unknown = ExecutionId::new("no-such").unwrap();
    assert!(matches!(
        store.journal_page(&unknown, 0, 5).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Emitted items form the output stream, written with their journal
/// entries: offsets from 0, paged with `after`/`max`, none from a failed
/// append, gone with the execution.
pub async fn items_follow_emits(store: Arc<dyn Store>) {
    let id = created(store.as_ref(), "items").await;
    let l = lease(store.as_ref(), &id, "h").await;
    let page = store.items(&id, None, 10).await.unwrap();
    assert_eq!((page.items.len(), page.count), (0, 0));
    let checkpoint = Entry {
        at_ms: now_ms(),
        duration_us: 0,
        kind: EntryKind::Checkpoint,
    };
    store.append(&id, &l, 0, &entry(10)).await.unwrap();
    store.append(&id, &l, 1, &checkpoint).await.unwrap();
    store.append(&id, &l, 2, &entry(11)).await.unwrap();
    // A conflicting append adds no item.
    assert!(matches!(
        store.append(&id, &l, 2, &entry(99)).await,
        Err(StoreError::Conflict { .. })
    ));
    store.append(&id, &l, 3, &entry(12)).await.unwrap();
    let item = |i: u64| (i - 10, i.to_le_bytes().to_vec());
    let page = store.items(&id, None, 10).await.unwrap();
    assert_eq!(page.items, vec![item(10), item(11), item(12)]);
    assert_eq!(page.count, 3);
    // The journal keeps each item once, in the stream: its entry holds the
    // digest, which is what replay compares.
    let snap = store.load(&id).await.unwrap();
    assert_eq!(
        snap.journal[2].kind,
        EntryKind::Emitted {
            item_digest: reprise_host::Digest::of(&11u64.to_le_bytes()),
            item_len: 8,
        }
    );
    assert_eq!(snap.journal[2].kind.call(), entry(11).kind.call());
    let page = store.items(&id, Some(0), 1).await.unwrap();
    assert_eq!((page.items, page.count), (vec![item(11)], 3));
    let page = store.items(&id, Some(2), 10).await.unwrap();
    assert_eq!((page.items.len(), page.count), (0, 3));
    let page = store.items(&id, None, 0).await.unwrap();
    assert_eq!((page.items.len(), page.count), (0, 3));
    let other = ExecutionId::new("no-such").unwrap();
    assert!(matches!(
        store.items(&other, None, 1).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .finish(&id, &l, &Outcome::Completed(vec![]))
        .await
        .unwrap();
    store.delete_execution(&id).await.unwrap();
    assert!(matches!(
        store.items(&id, None, 1).await,
        Err(StoreError::NotFound(_))
    ));
}
