//! The quick chaos run (see `reprise_tests::chaos`): three `reprise serve`
//! processes on one Redis with a work queue, one SIGKILLed and restarted
//! every second, Redis killed and restarted once, parents with child
//! workflows among the executions; nothing may be lost,
//! duplicated or left pending; then the same on a Redis Cluster with a
//! queue of three partitions. The full run (500 executions) is
//! `cargo bench -p reprise-cli --bench queue -- chaos`.

use std::path::Path;
use std::time::Duration;

use reprise_tests::chaos::{Plan, run};

fn quick() -> Plan {
    Plan {
        hosts: 3,
        executions: 60,
        steps: 20,
        parents: 4,
        kill_every: Duration::from_secs(1),
        restart_redis: true,
        tool_delay: Duration::from_millis(100),
        concurrency: 8,
        deadline: Duration::from_secs(300),
        cluster: false,
        partitions: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_killed_every_second_and_a_redis_restart_lose_nothing() {
    let report = run(Path::new(env!("CARGO_BIN_EXE_reprise")), &quick()).await;
    eprintln!("chaos: {}", report.summary());
    assert!(
        report.kills >= 3,
        "the run ended before the kills: {report:?}"
    );
    assert!(report.redis_recovery.is_some());
}

/// The same on a three-node Redis Cluster with the queue in three
/// partitions (one per node), one node killed and restarted mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_a_redis_cluster() {
    let plan = Plan {
        executions: 40,
        parents: 2,
        cluster: true,
        partitions: 3,
        ..quick()
    };
    let report = run(Path::new(env!("CARGO_BIN_EXE_reprise")), &plan).await;
    eprintln!("chaos on a cluster: {}", report.summary());
    assert!(
        report.kills >= 2,
        "the run ended before the kills: {report:?}"
    );
    assert!(report.redis_recovery.is_some());
}
