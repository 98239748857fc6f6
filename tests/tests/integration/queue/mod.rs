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

mod partitions;
mod recovery;

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

/// A start written with plain `XADD` to partition 0, as any producer of
/// work writes it, with `more` fields; returns its entry id.
fn xadd_start(server: &RedisServer, workflow: &str, input: &str, more: &[&str]) -> String {
    let mut args = vec!["XADD", STREAM, "*", "workflow", workflow, "input", input];
    args.extend(more);
    server.cli(&args)
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
    let xadd = |id: &str| xadd_start(&server, "steps", r#"{"n": 5}"#, &["id", id]);
    xadd("q1");
    let rec = ended(&rt, "q1").await;
    assert_eq!(result::<Value>(&rec)["steps"], 5);
    let q = queue(&server).await;
    drained(&q).await;
    xadd("q1");
    drained(&q).await;
    assert_eq!(calls.total(), 5, "the second start ran the workflow again");
    // Without an id, the entry id names the execution.
    let entry = xadd_start(&server, "steps", r#"{"n": 1}"#, &[]);
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

/// On a three-node Redis Cluster with a queue of three partitions:
/// executions spread over slots, each partition's stream lives on another
/// node, budget continuations and a timer go through the queue between two
/// hosts, and the queue (a partition's stream, timers and dead letters in
/// one slot) ends empty.
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
            three_partitions(),
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
    assert_eq!(
        hosts[1].store().list_executions(None).await.unwrap().len(),
        9
    );
    for node in &cluster.nodes {
        let keys: u64 = node.cli(&["DBSIZE"]).parse().unwrap();
        assert!(keys > 0, "a node holds no keys");
    }
    let q = RedisQueue::connect(&cluster.url(), &redis, three_partitions())
        .await
        .unwrap();
    // The node that holds a key answers EXISTS; the others redirect.
    let owners: std::collections::HashSet<usize> = (0..3)
        .map(|p| {
            let owners: Vec<usize> = (0..3)
                .filter(|&n| cluster.nodes[n].cli(&["EXISTS", q.stream(p)]).trim() == "1")
                .collect();
            assert_eq!(owners.len(), 1, "partition {p}: {owners:?}");
            owners[0]
        })
        .collect();
    assert_eq!(owners.len(), 3, "the partitions share a node");
    drained(&q).await;
    assert_eq!(q.timers().await.unwrap(), 0);
}

fn three_partitions() -> QueueOptions {
    QueueOptions {
        partitions: 3,
        ..options()
    }
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
    xadd_start(
        &server,
        "producer",
        r#"{"n": 60}"#,
        &["id", "paced", "stream", r#"{"window": 5}"#],
    );
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

/// Of the hosts sharing a queue, one takes each sweep period; when it ends
/// (the holder stopped, or the period passed) another host can take the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_sweeps_per_period() {
    let server = RedisServer::start();
    let (a, b) = (queue(&server).await, queue(&server).await);
    let period = Duration::from_secs(2);
    assert!(a.take_sweep_turn("host-a", period).await.unwrap());
    assert!(!b.take_sweep_turn("host-b", period).await.unwrap());
    assert!(
        !a.take_sweep_turn("host-a", period).await.unwrap(),
        "one turn per period, even for the host that holds it"
    );
    tokio::time::sleep(period + Duration::from_millis(300)).await;
    assert!(b.take_sweep_turn("host-b", period).await.unwrap());
    assert!(!a.take_sweep_turn("host-a", period).await.unwrap());
}
