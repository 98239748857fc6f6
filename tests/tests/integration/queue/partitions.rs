//! A partitioned queue: raising the count from one keeps every message,
//! timer and dead letter of the old layout; executions spread over the
//! partitions; the recorded count never shrinks.

use super::*;

fn partitioned(partitions: usize) -> QueueOptions {
    QueueOptions {
        partitions,
        ..options()
    }
}

/// Entries ever added to `stream` (`XINFO STREAM`'s `entries-added`).
fn entries_added(server: &RedisServer, stream: &str) -> u64 {
    let info = server.cli(&["XINFO", "STREAM", stream]);
    let mut lines = info.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "entries-added" {
            return lines.next().unwrap().trim().parse().unwrap();
        }
    }
    panic!("no entries-added in XINFO STREAM {stream}: {info}")
}

/// A queue of one partition is left with a start nobody read, a due timer
/// and a dead letter; hosts configured with three partitions then run the
/// start and fire the timer (partition 0 is the old stream), list the dead
/// letter, and spread new executions over all three streams. A host
/// configured with one partition afterwards reads all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_partition_count_loses_nothing() {
    let server = RedisServer::start();
    let calls = Calls::default();
    let old = host(&server, counting_tools(&calls), config("old"), options()).await;
    deploy(&old, "signals").await;
    deploy(&old, "steps").await;
    let timed = ExecutionId::new("timed").unwrap();
    old.start(
        "signals",
        encode(&json!({"sleep_ms": 700})),
        Some(timed.clone()),
    )
    .await
    .unwrap();
    wait_for(&old, "timed", |r| {
        matches!(r.wait, Some(Wait::Timer { .. }))
    })
    .await;
    // A message that can never work goes to partition 0's dead letters.
    server.cli(&["XADD", STREAM, "*", "nonsense", "1"]);
    let q1 = queue(&server).await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while q1.dead_letters(10).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the malformed message was not dead-lettered");
    old.shutdown().await;
    drop(old);
    // Written while no host runs: a start in the old stream.
    xadd_start(&server, "steps", r#"{"n": 3}"#, &["id", "waiting"]);
    assert_eq!(q1.timers().await.unwrap(), 1);

    let hosts = [
        host(&server, counting_tools(&calls), config("a"), partitioned(3)).await,
        host(&server, counting_tools(&calls), config("b"), partitioned(3)).await,
    ];
    let q3 = RedisQueue::connect(&server.url(), &RedisOptions::default(), partitioned(3))
        .await
        .unwrap();
    assert_eq!(q3.partitions(), 3);
    let rec = ended(&hosts[0], "waiting").await;
    assert_eq!(result::<Value>(&rec)["steps"], 3);
    let rec = wait_for(&hosts[1], "timed", |r| {
        matches!(r.wait, Some(Wait::Signal { .. }))
    })
    .await;
    assert_eq!(rec.invocations, 2, "the old timer did not fire once");
    let dead = q3.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].entry.partition, 0);
    assert!(dead[0].fields["reason"].contains("workflow"), "{dead:?}");

    // New executions go to their own partition, and every partition gets
    // some.
    let before: Vec<u64> = (0..3)
        .map(|p| entries_added(&server, q3.stream(p)))
        .collect();
    let ids = futures_ids(&hosts[1], 12).await;
    let mut per_partition = [0u64; 3];
    for id in &ids {
        let rec = ended(&hosts[0], id.as_str()).await;
        assert_eq!(result::<Value>(&rec)["steps"], 10);
        per_partition[q3.partition_of(id)] += 1;
    }
    assert!(per_partition.iter().all(|&n| n > 0), "{per_partition:?}");
    for (p, n) in per_partition.iter().enumerate() {
        let added = entries_added(&server, q3.stream(p)) - before[p];
        assert_eq!(added, *n, "partition {p}: one start message per execution");
    }
    assert_eq!(calls.max_per_key(), 1);
    drained(&q3).await;

    // The count never shrinks: a queue configured with one partition reads
    // the three recorded.
    let again = queue(&server).await;
    assert_eq!(again.partitions(), 3);
    assert_eq!(again.stream(2), q3.stream(2));
    let recorded = server.cli(&["LLEN", "{reprise:queue}:partitions"]);
    assert_eq!(recorded.trim(), "2");
}

/// A partition count the hosts cannot serve is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_count_out_of_range_is_refused() {
    let server = RedisServer::start();
    for (partitions, concurrency, want) in [
        (0, 8, "partitions must be 1 to 64"),
        (65, 100, "partitions must be 1 to 64"),
        (
            4,
            3,
            "concurrency (3) must be at least its partition count (4)",
        ),
    ] {
        let options = QueueOptions {
            partitions,
            concurrency,
            ..options()
        };
        let err = match RedisQueue::connect(&server.url(), &RedisOptions::default(), options).await
        {
            Ok(_) => panic!("{partitions} partitions accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{err}");
    }
}
