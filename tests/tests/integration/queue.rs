//! The work queue: hosts in one process sharing a private Redis, each with
//! its own connections and host id, as separate processes would. Plain
//! `XADD` through `redis-cli` is the producer where the format matters.

use std::sync::Arc;
use std::time::Duration;

use reprise_host::queue::{Delivery, Message, QueueOptions, RedisQueue};
use reprise_host::store::RedisOptions;
use reprise_host::{
    Budget, ExecutionId, ExecutionRecord, Runtime, RuntimeConfig, Status, Store, ToolRegistry, Wait,
};
use reprise_tests::redis::RedisServer;
use reprise_tests::*;
use serde_json::{Value, json};

const STREAM: &str = "reprise:queue";

fn options() -> QueueOptions {
    QueueOptions {
        claim_after: Duration::from_millis(400),
        timer_poll: Duration::from_millis(100),
        block: Duration::from_millis(200),
        ..QueueOptions::default()
    }
}

fn config(host: &str) -> RuntimeConfig {
    RuntimeConfig {
        host_id: host.to_string(),
        lease_ttl: Duration::from_millis(600),
        ..RuntimeConfig::default()
    }
}

/// A host: a runtime on its own store connection, taking work from the
/// queue.
async fn host(
    server: &RedisServer,
    tools: ToolRegistry,
    config: RuntimeConfig,
    options: QueueOptions,
) -> Runtime {
    host_at(
        &server.url(),
        &RedisOptions::default(),
        tools,
        config,
        options,
    )
    .await
}

async fn host_at(
    url: &str,
    redis: &RedisOptions,
    tools: ToolRegistry,
    config: RuntimeConfig,
    options: QueueOptions,
) -> Runtime {
    let store: Arc<dyn Store> = Arc::new(
        reprise_host::RedisStore::connect(url, redis.clone())
            .await
            .unwrap(),
    );
    let queue = RedisQueue::connect(url, redis, options).await.unwrap();
    let rt = Runtime::builder(engine(), store)
        .tools(tools)
        .config(config)
        .queue(queue)
        .build()
        .unwrap();
    rt.recover().await.unwrap();
    rt
}

async fn queue(server: &RedisServer) -> RedisQueue {
    RedisQueue::connect(&server.url(), &RedisOptions::default(), options())
        .await
        .unwrap()
}

/// Waits (at most 60 s) until `done` holds for the execution.
async fn wait_for(
    rt: &Runtime,
    id: &str,
    done: impl Fn(&ExecutionRecord) -> bool,
) -> ExecutionRecord {
    let id = ExecutionId::new(id).unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(rec) = rt.status(&id).await
                && done(&rec)
            {
                return rec;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("execution {id} did not get there within 60 s"))
}

async fn ended(rt: &Runtime, id: &str) -> ExecutionRecord {
    wait_for(rt, id, |r| r.status.is_terminal()).await
}

/// Waits until every message is acknowledged and deleted.
async fn drained(q: &RedisQueue) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while q.pending().await.unwrap() > 0 || q.stream_len().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("messages left in the queue");
}

/// A start written with plain `XADD` runs, its message is acknowledged and
/// deleted, and the same id again starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_xadd_starts_an_execution_once() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let rt = host(&server, counting_tools(&calls), config("a"), options()).await;
    deploy(&rt, "steps").await;
    let xadd = |id: &str| {
        server.cli(&[
            "XADD",
            STREAM,
            "*",
            "workflow",
            "steps",
            "input",
            r#"{"n": 5}"#,
            "id",
            id,
        ])
    };
    xadd("q1");
    let rec = ended(&rt, "q1").await;
    assert_eq!(result::<Value>(&rec)["steps"], 5);
    let q = queue(&server).await;
    drained(&q).await;
    xadd("q1");
    drained(&q).await;
    assert_eq!(calls.total(), 5, "the second start ran the workflow again");
    // Without an id, the entry id names the execution.
    let entry = server.cli(&[
        "XADD",
        STREAM,
        "*",
        "workflow",
        "steps",
        "input",
        r#"{"n": 1}"#,
    ]);
    let rec = ended(&rt, &format!("q-{entry}")).await;
    assert_eq!(result::<Value>(&rec)["steps"], 1);
    assert_eq!(
        rt.status(&ExecutionId::new("q1").unwrap())
            .await
            .unwrap()
            .invocations,
        1
    );
}

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
    assert_eq!(rt.list(None, None).await.unwrap().len(), 1);
}

/// Invocations that end on their budget continue through the queue, on
/// whichever host reads the message: three hosts, 12 executions of 10
/// steps at 2 steps per invocation. Every journal is exact, every step ran
/// once, every invocation is accounted for, and the queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuations_go_through_the_queue_to_any_host() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let mut hosts = Vec::new();
    for name in ["a", "b", "c"] {
        let cfg = RuntimeConfig {
            budget: Budget {
                max_steps: Some(2),
                max_time: None,
            },
            ..config(name)
        };
        hosts.push(host(&server, counting_tools(&calls), cfg, options()).await);
    }
    deploy(&hosts[0], "steps").await;
    let ids: Vec<ExecutionId> = futures_ids(&hosts[0], 12).await;
    let mut invocations = 0;
    for id in &ids {
        let rec = ended(&hosts[0], id.as_str()).await;
        assert_eq!(result::<Value>(&rec)["steps"], 10);
        assert_eq!(rec.journal_len, 10);
        // 5 invocations of 2 steps, plus possibly a replay-only one.
        assert!(
            rec.invocations >= 5,
            "{}: {} invocations",
            id,
            rec.invocations
        );
        invocations += rec.invocations;
    }
    assert_eq!(calls.total(), 120);
    assert_eq!(calls.max_per_key(), 1);
    let ran: u64 = hosts.iter().map(|h| h.invocations()).sum();
    assert_eq!(
        ran, invocations,
        "invocations by the hosts and in the records differ"
    );
    assert!(
        hosts.iter().filter(|h| h.invocations() > 0).count() >= 2,
        "one host did all the work"
    );
    drained(&queue(&server).await).await;
}

async fn futures_ids(rt: &Runtime, n: usize) -> Vec<ExecutionId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = ExecutionId::new(format!("c{i}")).unwrap();
        rt.start("steps", encode(&json!({"n": 10})), Some(id.clone()))
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// A durable timer fires once although three hosts poll the timer set:
/// the execution is invoked exactly twice before its signal (once to
/// start and reach the sleep, once when the timer fires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_fires_once_with_three_hosts_polling() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let mut hosts = Vec::new();
    for name in ["a", "b", "c"] {
        hosts.push(host(&server, counting_tools(&calls), config(name), options()).await);
    }
    deploy(&hosts[0], "signals").await;
    let id = ExecutionId::new("t1").unwrap();
    hosts[1]
        .start(
            "signals",
            encode(&json!({"sleep_ms": 500})),
            Some(id.clone()),
        )
        .await
        .unwrap();
    let rec = wait_for(&hosts[0], "t1", |r| {
        matches!(r.wait, Some(Wait::Signal { .. }))
    })
    .await;
    // Give the other pollers time to fire it again if they could.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rec2 = hosts[0].status(&id).await.unwrap();
    assert_eq!((rec.invocations, rec2.invocations), (2, 2));
    let q = queue(&server).await;
    assert_eq!(q.timers().await.unwrap(), 0);
    let fired: u64 = hosts.iter().map(|h| h.metrics().timers_fired.get()).sum();
    assert_eq!(fired, 1, "reprise_timers_fired over the hosts");
    hosts[2]
        .signal(&id, "approve", encode(&json!({"by": "ops"})))
        .await
        .unwrap();
    let rec = ended(&hosts[0], "t1").await;
    assert_eq!(result::<Value>(&rec)["approved_by"], "ops");
    assert!(result::<Value>(&rec)["slept_ms"].as_u64().unwrap() >= 500);
    assert_eq!(rec.invocations, 3);
    drained(&q).await;
}

/// A timer survives every host going away: set by one host, fired by a
/// host started after it was due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_survives_every_host_restarting() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let first = host(&server, counting_tools(&calls), config("a"), options()).await;
    deploy(&first, "signals").await;
    let id = ExecutionId::new("t2").unwrap();
    first
        .start(
            "signals",
            encode(&json!({"sleep_ms": 800})),
            Some(id.clone()),
        )
        .await
        .unwrap();
    wait_for(&first, "t2", |r| matches!(r.wait, Some(Wait::Timer { .. }))).await;
    first.shutdown().await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let q = queue(&server).await;
    assert_eq!(
        q.timers().await.unwrap(),
        1,
        "the timer is not in the timer set"
    );
    let second = host(&server, counting_tools(&calls), config("b"), options()).await;
    let rec = wait_for(&second, "t2", |r| {
        matches!(r.wait, Some(Wait::Signal { .. }))
    })
    .await;
    assert_eq!(rec.invocations, 2);
    assert_eq!(q.timers().await.unwrap(), 0);
}

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
    let first: Vec<Delivery> = q.read("dead-1", 10).await.unwrap();
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(q.reclaim("dead-2", 10).await.unwrap().len(), 1);
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

/// An execution that can run but has no message (a host died between
/// creating it and queueing it) is found by the sweep and run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_queues_an_execution_without_a_message() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let store = server.store().await;
    let rt0 = Runtime::new(
        engine(),
        Arc::new(store.clone()),
        counting_tools(&calls),
        config("setup"),
    );
    deploy(&rt0, "steps").await;
    let digest = rt0.deployments().await.unwrap()[0].digest;
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
    drop(rt0);
    let rt = host(&server, counting_tools(&calls), config("a"), options()).await;
    let rec = ended(&rt, "orphan").await;
    assert_eq!(result::<Value>(&rec)["steps"], 3);
}

/// On a three-node Redis Cluster: executions spread over slots, budget
/// continuations and a timer go through the queue between two hosts, and
/// the queue (stream, timers, dead letters in one slot) ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_works_on_a_redis_cluster() {
    let cluster = reprise_tests::redis::RedisCluster::start();
    let redis = reprise_tests::redis::RedisCluster::options();
    let calls = Calls::default();
    let mut hosts = Vec::new();
    for name in ["a", "b"] {
        let cfg = RuntimeConfig {
            budget: Budget {
                max_steps: Some(3),
                max_time: None,
            },
            ..config(name)
        };
        let rt = host_at(
            &cluster.url(),
            &redis,
            counting_tools(&calls),
            cfg,
            options(),
        )
        .await;
        hosts.push(rt);
    }
    deploy(&hosts[0], "steps").await;
    deploy(&hosts[0], "signals").await;
    let ids = futures_ids(&hosts[1], 8).await;
    hosts[0]
        .start(
            "signals",
            encode(&json!({"sleep_ms": 300})),
            Some(ExecutionId::new("ct").unwrap()),
        )
        .await
        .unwrap();
    for id in &ids {
        let rec = ended(&hosts[0], id.as_str()).await;
        assert_eq!(result::<Value>(&rec)["steps"], 10);
        assert_eq!(rec.journal_len, 10);
    }
    assert_eq!(calls.total(), 80);
    assert_eq!(calls.max_per_key(), 1);
    let rec = wait_for(&hosts[1], "ct", |r| {
        matches!(r.wait, Some(Wait::Signal { .. }))
    })
    .await;
    assert_eq!(rec.invocations, 2, "the timer fired more than once");
    // Every execution is listed, and the keys are spread over the nodes.
    assert_eq!(hosts[1].list(None, None).await.unwrap().len(), 9);
    for node in &cluster.nodes {
        let keys: u64 = node.cli(&["DBSIZE"]).parse().unwrap();
        assert!(keys > 0, "a node holds no keys");
    }
    let q = RedisQueue::connect(&cluster.url(), &redis, options())
        .await
        .unwrap();
    drained(&q).await;
    assert_eq!(q.timers().await.unwrap(), 0);
}

/// Hosts announce each ended invocation on the queue's pub/sub channel,
/// which is how a request waiting on one host hears that another host
/// finished the execution (instead of at its next poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_announce_ended_invocations() {
    use futures_util::StreamExt;
    let server = RedisServer::start();
    let calls = Calls::default();
    let rt = host(&server, counting_tools(&calls), config("a"), options()).await;
    deploy(&rt, "signals").await;
    let q = queue(&server).await;
    let mut pubsub = q.subscribe_settled().await.unwrap();
    let mut heard = pubsub.on_message();
    let id = ExecutionId::new("announced").unwrap();
    rt.start("signals", encode(&json!({"sleep_ms": 0})), Some(id.clone()))
        .await
        .unwrap();
    // Suspended on the signal: announced.
    let next = tokio::time::timeout(Duration::from_secs(30), heard.next())
        .await
        .expect("nothing announced");
    assert_eq!(next.unwrap().get_payload::<String>().unwrap(), "announced");
    rt.cancel(&id).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), heard.next())
        .await
        .expect("the cancel was not announced");
    assert_eq!(next.unwrap().get_payload::<String>().unwrap(), "announced");
}

/// A paced stream across hosts, started by a plain `XADD` with a `stream`
/// field: the producer runs on whichever host takes its messages, the
/// consumer reads through another. Reads there wake the
/// suspended producer through the queue, and its window timer sits in the
/// shared timer set; every item arrives once, in order, and the window
/// holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_stream_across_hosts() {
    use reprise_host::{OnAbandon, StreamPolicy};
    let server = RedisServer::start();
    let calls = Calls::default();
    let paced = |name: &str| {
        let mut c = config(name);
        // Suspend as soon as the window is full: every read resumes it.
        c.stream.hold = Duration::ZERO;
        c
    };
    let a = host(&server, counting_tools(&calls), paced("a"), options()).await;
    let b = host(&server, counting_tools(&calls), paced("b"), options()).await;
    deploy(&a, "producer").await;
    let id = ExecutionId::new("paced").unwrap();
    let window = 5;
    // Started by a plain queue message, as any producer of work can.
    server.cli(&[
        "XADD",
        STREAM,
        "*",
        "workflow",
        "producer",
        "input",
        r#"{"n": 60}"#,
        "id",
        "paced",
        "stream",
        r#"{"window": 5}"#,
    ]);
    // Before any consumer, the producer fills the window and waits; the
    // first read, on the other host, wakes it through the queue.
    let waiting = wait_for(&b, "paced", |r| {
        r.status == Status::Suspended && matches!(r.wait, Some(Wait::Consumers { .. }))
    })
    .await;
    assert_eq!(
        waiting.stream,
        Some(StreamPolicy {
            window,
            on_abandon: OnAbandon::Cancel,
            window_bytes: None,
        }),
        "the message's options, with the host's defaults for the rest"
    );
    let mut after: Option<u64> = None;
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            b.touch_session(&id, "reader", after).await.unwrap();
            let page = b.items(&id, after, 3).await.unwrap();
            let read = after.map_or(0, |x| x + 1);
            assert!(
                page.count <= read + window,
                "{} emitted, {read} read",
                page.count
            );
            for (offset, _) in &page.items {
                seen.push(*offset);
                after = Some(*offset);
            }
            if page.items.is_empty() {
                if b.status(&id).await.unwrap().status.is_terminal() && read >= page.count {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await
    .expect("the stream ends within 60 s");
    assert_eq!(seen, (0..60).collect::<Vec<_>>());
    let done = ended(&b, "paced").await;
    assert_eq!(done.status, Status::Completed);
    assert!(done.invocations > 1, "it was suspended and resumed");
    drained(&queue(&server).await).await;
}
