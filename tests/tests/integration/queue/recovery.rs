//! When hosts die or leave: a dead host's messages taken over, dead
//! letters (malformed messages, and only deliveries without progress
//! counting toward `max_deliveries`), a draining host's hand-off, and the
//! sweep for executions the queue lost.

use super::*;

/// Messages that can never succeed go to the dead-letter stream with the
/// reason and their fields; nothing is left pending and nothing starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_with_the_reason() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let rt = host(&server, counting_tools(&calls), config("a"), options()).await;
    deploy(&rt, "steps").await;
    rt.start(
        "steps",
        encode(&json!({"n": 1})),
        Some(ExecutionId::new("taken").unwrap()),
    )
    .await
    .unwrap();
    ended(&rt, "taken").await;
    let cases: &[(&[&str], &str)] = &[
        (&["input", "{}"], "needs a `workflow` field"),
        (&["workflow", "nope"], "no workflow named \"nope\""),
        (
            &["workflow", "steps", "input", "{not json"],
            "not valid JSON",
        ),
        (&["workflow", "steps", "id", "a/b"], "contains '/'"),
        (
            &["workflow", "steps", "id", "taken", "input", r#"{"n": 2}"#],
            "different workflow or input",
        ),
        (&["resume", ""], "1 to 128 bytes"),
        (
            &["workflow", "steps", "stream", r#"{"window": "ten"}"#],
            "field \"stream\" is not a stream object",
        ),
        (
            &["workflow", "steps", "stream", r#"{"window": 0}"#],
            "stream.window 0 is out of range",
        ),
        (
            &["workflow", "steps", "stream", r#"{"on_abandon": "wait"}"#],
            "is not `cancel` or `continue`",
        ),
    ];
    for (fields, _) in cases {
        let mut args = vec!["XADD", STREAM, "*"];
        args.extend_from_slice(fields);
        server.cli(&args);
    }
    let q = queue(&server).await;
    drained(&q).await;
    let dead = q.dead_letters(100).await.unwrap();
    assert_eq!(dead.len(), cases.len(), "{dead:?}");
    // Dead letters are written as each message fails, not in stream order.
    for (fields, reason) in cases {
        let pairs: Vec<(&str, &str)> = fields.chunks(2).map(|p| (p[0], p[1])).collect();
        let letter = dead
            .iter()
            .find(|l| {
                pairs
                    .iter()
                    .all(|(k, v)| l.fields.get(*k).map(String::as_str) == Some(*v))
                    && l.fields.len() == pairs.len() + 3
            })
            .unwrap_or_else(|| panic!("no dead letter for {fields:?}: {dead:?}"));
        assert!(
            letter.fields["reason"].contains(reason),
            "{fields:?}: reason {:?}",
            letter.fields["reason"]
        );
        assert_eq!(letter.fields["deliveries"], "1");
    }
    assert_eq!(calls.total(), 1);
    assert_eq!(rt.store().list_executions(None).await.unwrap().len(), 1);
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A host dies mid-step (its tasks stop; its message stays pending and its
/// lease live). Another host takes the message over once it is idle past
/// `claim_after`, waits out the lease, and finishes: the journal is exact
/// and only the interrupted step ran twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hosts_message_is_taken_over() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let go = Arc::new(tokio::sync::Notify::new());
    let (stalling, mut reached) = stalling_tools(&calls, 3, go);
    let doomed = host(&server, stalling, config("doomed"), options()).await;
    deploy(&doomed, "steps").await;
    let q = queue(&server).await;
    q.enqueue(&Message::Start {
        workflow: "steps".into(),
        input: r#"{"n": 6}"#.into(),
        id: Some(ExecutionId::new("d1").unwrap()),
        stream: None,
        traceparent: Some(TRACEPARENT.into()),
    })
    .await
    .unwrap();
    assert_eq!(reached.recv().await, Some(3));
    doomed.shutdown().await;
    let rec = doomed
        .status(&ExecutionId::new("d1").unwrap())
        .await
        .unwrap();
    assert_eq!(rec.status, Status::Running);
    assert_eq!(q.pending().await.unwrap(), 1);

    let rescuer = host(
        &server,
        counting_tools(&calls),
        config("rescuer"),
        options(),
    )
    .await;
    let rec = ended(&rescuer, "d1").await;
    assert_eq!(result::<Value>(&rec)["steps"], 6);
    // The message's trace is the execution's, on whichever host runs it
    // (kept as sent: these hosts export no spans of their own).
    assert_eq!(rec.trace.as_ref().map(|t| t.as_str()), Some(TRACEPARENT));
    assert_eq!(rec.journal_len, 6);
    assert_eq!(calls.distinct(), 6);
    assert_eq!(calls.total(), 7, "only the interrupted step runs again");
    let taken = rescuer
        .metrics()
        .queue_messages
        .get_or_create(&reprise_host::metrics::OutcomeLabel {
            outcome: "taken_over".into(),
        })
        .get();
    assert_eq!(taken, 1);
    drained(&q).await;
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    // The dead host's consumer has nothing pending any more: pruned.
    let before = q.consumers().await.unwrap();
    assert_eq!(before, 2);
    assert!(q.prune_consumers(Duration::ZERO).await.unwrap() >= 1);
    assert!(q.consumers().await.unwrap() < before);
}

/// A message whose hosts keep dying goes to the dead-letter stream after
/// `max_deliveries`, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_too_often_is_dead_lettered() {
    let server = RedisServer::start();
    let q = queue(&server).await;
    q.enqueue(&Message::Resume(ExecutionId::new("ghost").unwrap()))
        .await
        .unwrap();
    // Two consumers take it and "die" (never acknowledge).
    let first: Vec<Delivery> = q.read(0, "dead-1", 10).await.unwrap();
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(q.reclaim(0, "dead-2", 10).await.unwrap().len(), 1);
    let calls = Calls::default();
    let opts = QueueOptions {
        max_deliveries: 2,
        ..options()
    };
    let rt = host(&server, counting_tools(&calls), config("a"), opts).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while q.dead_letters(10).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("not dead-lettered");
    let dead = q.dead_letters(10).await.unwrap();
    assert!(
        dead[0].fields["reason"].contains("delivered 3 times"),
        "{dead:?}"
    );
    assert_eq!(dead[0].fields["resume"], "ghost");
    assert_eq!(q.pending().await.unwrap(), 0);
    drop(rt);
}

/// Hosts that die one after another while the execution goes forward do
/// not make its message a dead letter, however often it was delivered:
/// only deliveries without progress count toward `max_deliveries`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_execution_progresses_is_not_dead_lettered() {
    let server = RedisServer::start();
    let q = queue(&server).await;
    let calls = Calls::default();
    let opts = QueueOptions {
        max_deliveries: 2,
        ..options()
    };
    // Three hosts in turn each record at least one step and then die
    // mid-step: the message is delivered three times, more than
    // `max_deliveries`, and every delivery went forward.
    for hang_at in [2, 4, 6] {
        let go = Arc::new(tokio::sync::Notify::new());
        let (stalling, mut reached) = stalling_tools(&calls, hang_at, go);
        let name = format!("doomed-{hang_at}");
        let doomed = host(&server, stalling, config(&name), opts.clone()).await;
        if hang_at == 2 {
            deploy(&doomed, "steps").await;
            q.enqueue(&Message::Start {
                workflow: "steps".into(),
                input: r#"{"n": 8}"#.into(),
                id: Some(ExecutionId::new("p1").unwrap()),
                stream: None,
                traceparent: None,
            })
            .await
            .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(30), reached.recv())
            .await
            .expect("the host did not reach its stalling step");
        doomed.shutdown().await;
    }
    let last = host(&server, counting_tools(&calls), config("last"), opts).await;
    let rec = ended(&last, "p1").await;
    assert_eq!(result::<Value>(&rec)["steps"], 8);
    assert_eq!(rec.journal_len, 8);
    drained(&q).await;
    assert!(q.dead_letters(10).await.unwrap().is_empty());
}

/// A draining host hands its executions to another host through the
/// queue at once, without waiting for `claim_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_host_hands_off_through_the_queue() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let slow = {
        let mut tools = ToolRegistry::with_builtins();
        let calls = calls.clone();
        tools.register_fn("builtin", "echo", move |call: reprise_host::ToolCall| {
            calls.record(&call);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(call.input)
            }
        });
        tools
    };
    let patient = QueueOptions {
        claim_after: Duration::from_secs(600),
        ..options()
    };
    let leaving = host(&server, slow, config("leaving"), patient.clone()).await;
    deploy(&leaving, "steps").await;
    let id = ExecutionId::new("h1").unwrap();
    leaving
        .start("steps", encode(&json!({"n": 40})), Some(id.clone()))
        .await
        .unwrap();
    wait_for(&leaving, "h1", |r| r.journal_len >= 3).await;
    assert_eq!(leaving.drain(Duration::from_secs(5)).await, 0);
    let staying = host(&server, counting_tools(&calls), config("staying"), patient).await;
    let rec = ended(&staying, "h1").await;
    assert_eq!(result::<Value>(&rec)["steps"], 40);
    assert_eq!(calls.distinct(), 40);
    assert_eq!(
        calls.max_per_key(),
        1,
        "draining finishes the step in progress"
    );
    drained(&queue(&server).await).await;
}

/// A store with `steps` deployed (by a runtime without a queue, gone
/// since), and the digest it runs.
async fn steps_deployed(
    server: &RedisServer,
    calls: &Calls,
) -> (reprise_host::RedisStore, reprise_host::Digest) {
    let store = server.store().await;
    let rt = Runtime::new(
        engine(),
        Arc::new(store.clone()),
        counting_tools(calls),
        config("setup"),
    );
    deploy(&rt, "steps").await;
    let digest = rt.deployments().await.unwrap()[0].digest;
    (store, digest)
}

/// An execution that can run but has no message (a host died between
/// creating it and queueing it) is found by the sweep and run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_queues_an_execution_without_a_message() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let (store, digest) = steps_deployed(&server, &calls).await;
    store
        .create_execution(&ExecutionRecord::new(
            ExecutionId::new("orphan").unwrap(),
            "steps".into(),
            digest,
            encode(&json!({"n": 3})),
            reprise_host::store::now_ms(),
        ))
        .await
        .unwrap();
    let rt = host(&server, counting_tools(&calls), config("a"), options()).await;
    let rec = ended(&rt, "orphan").await;
    assert_eq!(result::<Value>(&rec)["steps"], 3);
}

/// The sweep reads only its candidates through the index: with 100,000
/// finished executions in the store, it reads the few that may need
/// rescue, and they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_reads_only_its_candidates() {
    use futures_util::StreamExt;
    let server = RedisServer::start();
    let calls = Calls::default();
    let (store, digest) = steps_deployed(&server, &calls).await;
    let record = |id: String| {
        ExecutionRecord::new(
            ExecutionId::new(id).unwrap(),
            "steps".into(),
            digest,
            encode(&json!({"n": 1})),
            reprise_host::store::now_ms(),
        )
    };
    futures_util::stream::iter(0..100_000)
        .map(|i| {
            let store = store.clone();
            let mut rec = record(format!("done-{i}"));
            rec.status = Status::Completed;
            rec.outcome = Some(reprise_host::execution::Outcome::Completed(vec![]));
            async move { store.create_execution(&rec).await.unwrap() }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    for i in 0..3 {
        store
            .create_execution(&record(format!("orphan-{i}")))
            .await
            .unwrap();
    }
    let opts = QueueOptions {
        claim_after: Duration::from_millis(300),
        ..options()
    };
    let rt = host(&server, counting_tools(&calls), config("a"), opts).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let swept = rt
        .sweep()
        .await
        .unwrap()
        .expect("a host with a queue sweeps");
    // A scan would read 100,003 records.
    assert!(swept.read <= 3, "{swept:?}");
    assert!(swept.queued <= swept.read, "{swept:?}");
    for i in 0..3 {
        ended(&rt, &format!("orphan-{i}")).await;
    }
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts.get(&Status::Completed), Some(&100_003));
}
