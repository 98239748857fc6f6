//! Benchmarks of hosts sharing a work queue: `reprise serve --queue`
//! processes on a private `redis-server` (unix socket, AOF `appendfsync
//! always`), all on this machine.
//!
//! - `scale`: workflows/s of a 10-step workflow with 1, 2 and 3 hosts
//!   (`BENCH_TOTAL` executions, default 3000, started with `XADD`, after
//!   a warm-up in which every host compiles the component);
//! - `latency`: from a timer's due time to the execution running again, and
//!   from `XADD` of a start to the execution's first step (p50/p99 of
//!   `BENCH_RUNS`, default 50, one at a time), next to a raw Redis `PING`;
//! - `cluster`: the same 10-step workflow on a three-node Redis Cluster with
//!   the queue in 1, then 3 partitions, one step per invocation (so every
//!   step is a message through the queue: `BENCH_STEPS_PER_INVOCATION`),
//!   three hosts, `BENCH_CLUSTER_TOTAL` executions (default 600) started
//!   through the queue by id; steps/s and each node's share of the
//!   cluster's CPU and commands;
//! - `chaos`: the full chaos run, 500 executions of 20 steps, three hosts,
//!   one killed every second, Redis restarted once (`reprise_tests::chaos`);
//!   then the same on a three-node Redis Cluster (one node restarted, the
//!   queue in three partitions).
//!
//! `cargo bench -p reprise-cli --bench queue [-- scale|latency|cluster|chaos]`
//! (all four without an argument).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reprise_host::journal::EntryKind;
use reprise_host::queue::{Message, QueueOptions, RedisQueue};
use reprise_host::store::RedisOptions;
use reprise_host::{ExecutionId, Status, Store};
use reprise_tests::chaos::{self, Plan};
use reprise_tests::process::{ServeProcess, usage};
use reprise_tests::redis::{RedisCluster, RedisServer};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reprise"))
}

fn host(redis: &RedisServer, n: usize) -> ServeProcess {
    // `BENCH_CONCURRENCY`: messages each host works on at once (64).
    let config = format!(
        "redis = \"{}\"\nhost_id = \"bench-{n}\"\n[queue]\nstream = \"reprise:queue\"\ntimer_poll = \"100ms\"\nconcurrency = {}\n",
        redis.url(),
        env_or("BENCH_CONCURRENCY", 64)
    );
    ServeProcess::spawn(bin(), &config, &[("RUST_LOG", "error")])
}

async fn deploy(url: &str, name: &str) {
    let r = reqwest::Client::new()
        .put(format!("{url}/v1/workflows/{name}"))
        .header("content-type", "application/wasm")
        .body(reprise_tests::guest(name))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "deploy {name}: {}", r.status());
}

async fn queue(redis: &RedisServer) -> RedisQueue {
    RedisQueue::connect(
        &redis.url(),
        &RedisOptions::default(),
        QueueOptions::default(),
    )
    .await
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn scale() {
    let total = env_or("BENCH_TOTAL", 3000);
    let mut one = None;
    // `BENCH_FSYNC=everysec` trades the last second of writes on a Redis
    // crash for fewer fsyncs (the tests always use `always`).
    let fsync = std::env::var("BENCH_FSYNC").unwrap_or_else(|_| "always".into());
    for hosts in 1..=3 {
        let redis = RedisServer::start_with(&["--appendfsync", &fsync]);
        let fleet: Vec<ServeProcess> = (0..hosts).map(|n| host(&redis, n)).collect();
        deploy(&fleet[0].url, "steps").await;
        let store: Arc<dyn Store> = Arc::new(redis.store().await);
        let q = queue(&redis).await;
        // Warm up until every host has run something (compiled the
        // component, opened its connections).
        let mut w = 0;
        for _ in 0..20 * hosts {
            q.enqueue(&Message::Start {
                workflow: "steps".into(),
                input: r#"{"n": 10}"#.into(),
                id: Some(ExecutionId::new(format!("w{w}")).unwrap()),
                stream: None,
                traceparent: None,
            })
            .await
            .unwrap();
            w += 1;
        }
        while store
            .list_executions(Some(Status::Completed))
            .await
            .unwrap()
            .len()
            < w
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cpu = |fleet: &[ServeProcess]| fleet.iter().map(|h| usage(h.pid()).0).sum::<f64>();
        let redis_cpu = || {
            let info = redis.cli(&["INFO", "cpu"]);
            ["used_cpu_sys:", "used_cpu_user:"]
                .iter()
                .filter_map(|k| info.lines().find_map(|l| l.strip_prefix(k)))
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .sum::<f64>()
        };
        // Redis work per step: commands (those scripts run count too),
        // bytes in and out, memory kept.
        let stat = |section: &str, field: &str| -> f64 {
            redis
                .cli(&["INFO", section])
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let redis_work = || {
            (
                stat("stats", "total_commands_processed"),
                stat("stats", "total_net_input_bytes") + stat("stats", "total_net_output_bytes"),
                stat("memory", "used_memory"),
            )
        };
        let work_before = redis_work();
        let (hosts_before, redis_before) = (cpu(&fleet), redis_cpu());
        // Producers in a pipeline of 500 XADDs (plain stream fields), so the
        // producer is not what is measured.
        let mut producer = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let began = Instant::now();
        for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("XADD")
                    .arg("reprise:queue")
                    .arg("*")
                    .arg("workflow")
                    .arg("steps")
                    .arg("input")
                    .arg(r#"{"n": 10}"#)
                    .arg("id")
                    .arg(format!("s{i}"))
                    .ignore();
            }
            pipe.query_async::<()>(&mut producer).await.unwrap();
        }
        // Count ended executions with the status counters (a `ZCARD` per
        // index list), every 100 ms; their commands are taken out of the
        // per-step count below.
        let mut polls = 0;
        loop {
            polls += 1;
            let counts = store.count_by_status().await.unwrap();
            let done: u64 = [Status::Completed, Status::Failed]
                .iter()
                .filter_map(|s| counts.get(s))
                .sum();
            if done as usize >= total + w {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let failed = store.list_executions(Some(Status::Failed)).await.unwrap();
        assert!(failed.is_empty(), "{} failed", failed.len());
        let secs = began.elapsed().as_secs_f64();
        let rate = total as f64 / secs;
        let hosts_cores = (cpu(&fleet) - hosts_before) / secs;
        let redis_cores = (redis_cpu() - redis_before) / secs;
        let work_after = redis_work();
        let steps = total as f64 * 10.0;
        let base = *one.get_or_insert(rate);
        println!(
            "scale (appendfsync {fsync}): {hosts} host(s): {total} workflows of 10 steps in {:.2}s: {rate:.0} workflows/s \
             ({:.0} steps/s), {:.2}x one host; cores busy: hosts {hosts_cores:.2}, redis {redis_cores:.2}",
            began.elapsed().as_secs_f64(),
            rate * 10.0,
            rate / base
        );
        println!(
            "  per step: host CPU {:.1} us, Redis CPU {:.1} us, {:.1} Redis commands, {:.0} bytes over the wire; \
             Redis memory {:.0} B per finished workflow",
            hosts_cores * secs / steps * 1e6,
            redis_cores * secs / steps * 1e6,
            (work_after.0 - work_before.0 - polls as f64 * 40.0) / steps,
            (work_after.1 - work_before.1) / steps,
            (work_after.2 - work_before.2) / total as f64,
        );
    }
}

async fn latency() {
    let runs = env_or("BENCH_RUNS", 50);
    let redis = RedisServer::start();
    let fleet: Vec<ServeProcess> = (0..3).map(|n| host(&redis, n)).collect();
    deploy(&fleet[0].url, "signals").await;
    deploy(&fleet[0].url, "steps").await;
    let store: Arc<dyn Store> = Arc::new(redis.store().await);
    let q = queue(&redis).await;

    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut ping = Vec::new();
    for _ in 0..runs * 10 {
        let t = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        ping.push(t.elapsed());
    }
    ping.sort();

    let wait = |id: ExecutionId, done: fn(&reprise_host::ExecutionRecord) -> bool| {
        let store = store.clone();
        async move {
            loop {
                if let Ok(r) = store.get_execution(&id).await
                    && done(&r)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    // XADD to the first step: the journal's first entry is stamped when
    // the step ran, on this machine's clock. The first runs warm up every
    // host (each compiles the components on first use) and are not counted.
    let warm = 10;
    let mut start = Vec::new();
    for i in 0..runs + warm {
        let id = ExecutionId::new(format!("x{i}")).unwrap();
        let t = std::time::SystemTime::now();
        q.enqueue(&Message::Start {
            workflow: "steps".into(),
            input: r#"{"n": 1}"#.into(),
            id: Some(id.clone()),
            stream: None,
            traceparent: None,
        })
        .await
        .unwrap();
        wait(id.clone(), |r| r.status.is_terminal()).await;
        let journal = store.load(&id).await.unwrap().journal;
        let first = journal[0].at_ms;
        let sent_us = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
        if i >= warm {
            start.push(Duration::from_micros(
                (first * 1000).saturating_sub(sent_us),
            ));
        }
    }
    start.sort();

    // Timer due time to the execution running again: `signals` sleeps,
    // then reads the clock (a journaled step) before waiting for a signal.
    let mut timer = Vec::new();
    for i in 0..runs + warm {
        let id = ExecutionId::new(format!("t{i}")).unwrap();
        q.enqueue(&Message::Start {
            workflow: "signals".into(),
            input: r#"{"sleep_ms": 300}"#.into(),
            id: Some(id.clone()),
            stream: None,
            traceparent: None,
        })
        .await
        .unwrap();
        wait(id.clone(), |r| {
            matches!(r.wait, Some(reprise_host::Wait::Signal { .. }))
        })
        .await;
        let journal = store.load(&id).await.unwrap().journal;
        let (due, woke) = journal
            .windows(2)
            .find_map(|w| match w[0].kind {
                EntryKind::Sleep { wake_at_ms, .. } => Some((wake_at_ms, w[1].at_ms)),
                _ => None,
            })
            .expect("a sleep followed by a step");
        if i >= warm {
            timer.push(Duration::from_millis(woke.saturating_sub(due)));
        }
    }
    timer.sort();
    // Start-and-wait over HTTP on one host while the queue may hand the
    // execution to another: the waiting host sees the end by polling.
    let http = reqwest::Client::new();
    let mut waited = Vec::new();
    for i in 0..runs + warm {
        let t = Instant::now();
        let r = http
            .post(format!(
                "{}/v1/workflows/steps/executions?wait=30s",
                fleet[0].url
            ))
            .json(&serde_json::json!({"input": {"n": 10}, "id": format!("h{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if i >= warm {
            waited.push(t.elapsed());
        }
    }
    waited.sort();

    let p = |v: &[Duration], q: f64| ms(percentile(v, q));
    println!(
        "latency: HTTP start-and-wait of 10 steps, 3 hosts on the queue: p50 {} p99 {}",
        p(&waited, 0.5),
        p(&waited, 0.99)
    );
    println!(
        "latency: redis PING p50 {} p99 {}",
        p(&ping, 0.5),
        p(&ping, 0.99)
    );
    println!(
        "latency: XADD to first step p50 {} p99 {} (ms resolution; {:.0}x PING p50)",
        p(&start, 0.5),
        p(&start, 0.99),
        percentile(&start, 0.5).as_secs_f64() / percentile(&ping, 0.5).as_secs_f64()
    );
    println!(
        "latency: timer due to resumed p50 {} p99 {} (ms resolution)",
        p(&timer, 0.5),
        p(&timer, 0.99)
    );
    drop(fleet);
}

/// CPU seconds (user + system) and commands a Redis node has used so far.
fn node_work(node: &RedisServer) -> (f64, f64) {
    let info = node.cli(&["INFO", "all"]);
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        field("used_cpu_sys") + field("used_cpu_user"),
        field("total_commands_processed"),
    )
}

async fn cluster_scale() {
    use futures_util::StreamExt;
    let total = env_or("BENCH_CLUSTER_TOTAL", 600);
    let per_invocation = env_or("BENCH_STEPS_PER_INVOCATION", 1);
    let mut one = None;
    for partitions in [1, 3] {
        let cluster = RedisCluster::start();
        let fleet: Vec<ServeProcess> = (0..3)
            .map(|n| {
                let config = format!(
                    "redis = \"{}\"\nredis_cluster = true\nhost_id = \"bench-{n}\"\n\
                     [queue]\nstream = \"reprise:queue\"\npartitions = {partitions}\n\
                     timer_poll = \"100ms\"\nconcurrency = {}\n\
                     [limits]\nmax_steps_per_invocation = {per_invocation}\n",
                    cluster.url(),
                    env_or("BENCH_CONCURRENCY", 64)
                );
                ServeProcess::spawn(bin(), &config, &[("RUST_LOG", "error")])
            })
            .collect();
        deploy(&fleet[0].url, "steps").await;
        let store: Arc<dyn Store> = Arc::new(cluster.store().await);
        let options = QueueOptions {
            partitions,
            ..QueueOptions::default()
        };
        let q = RedisQueue::connect(&cluster.url(), &RedisCluster::options(), options)
            .await
            .unwrap();
        let start = |name: String| {
            let q = &q;
            async move {
                q.enqueue(&Message::Start {
                    workflow: "steps".into(),
                    input: r#"{"n": 10}"#.into(),
                    id: Some(ExecutionId::new(name).unwrap()),
                    stream: None,
                    traceparent: None,
                })
                .await
                .unwrap();
            }
        };
        let ended = || async {
            let counts = store.count_by_status().await.unwrap();
            [Status::Completed, Status::Failed]
                .iter()
                .filter_map(|s| counts.get(s))
                .sum::<u64>() as usize
        };
        let warm = 60;
        for w in 0..warm {
            start(format!("w{w}")).await;
        }
        while ended().await < warm {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before: Vec<(f64, f64)> = cluster.nodes.iter().map(node_work).collect();
        let hosts_before: f64 = fleet.iter().map(|h| usage(h.pid()).0).sum();
        let began = Instant::now();
        futures_util::stream::iter((0..total).map(|i| start(format!("s{i}"))))
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        while ended().await < total + warm {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let secs = began.elapsed().as_secs_f64();
        let failed = store.list_executions(Some(Status::Failed)).await.unwrap();
        assert!(failed.is_empty(), "{} failed", failed.len());
        let after: Vec<(f64, f64)> = cluster.nodes.iter().map(node_work).collect();
        let hosts_cores =
            (fleet.iter().map(|h| usage(h.pid()).0).sum::<f64>() - hosts_before) / secs;
        let cpu: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).collect();
        let commands: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).collect();
        let (cpu_sum, commands_sum) = (cpu.iter().sum::<f64>(), commands.iter().sum::<f64>());
        let share = |v: &[f64], sum: f64| {
            v.iter()
                .map(|x| format!("{:.0}%", 100.0 * x / sum))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let steps = total as f64 * 10.0 / secs;
        let base = *one.get_or_insert(steps);
        println!(
            "cluster: {partitions} partition(s), 3 hosts, {per_invocation} step(s) per invocation: \
             {total} workflows of 10 steps in {secs:.2}s: {steps:.0} steps/s ({:.2}x one partition); \
             cores busy: hosts {hosts_cores:.2}, cluster {:.2}",
            steps / base,
            cpu_sum / secs
        );
        println!(
            "  per node: CPU share {}, commands share {}",
            share(&cpu, cpu_sum),
            share(&commands, commands_sum)
        );
        drop(fleet);
    }
}

async fn chaos_run() {
    let plan = Plan {
        hosts: 3,
        executions: env_or("CHAOS_EXECUTIONS", 500),
        steps: 20,
        parents: env_or("CHAOS_PARENTS", 20),
        kill_every: Duration::from_secs(1),
        restart_redis: true,
        tool_delay: Duration::from_millis(20),
        concurrency: 16,
        deadline: Duration::from_secs(900),
        cluster: false,
        partitions: 1,
    };
    let report = chaos::run(bin(), &plan).await;
    println!(
        "chaos: {} executions: {}",
        plan.executions,
        report.summary()
    );
    let plan = Plan {
        cluster: true,
        partitions: 3,
        ..plan
    };
    let report = chaos::run(bin(), &plan).await;
    println!(
        "chaos on a 3-node cluster: {} executions: {}",
        plan.executions,
        report.summary()
    );
}

#[tokio::main]
async fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = which.is_empty();
    let wants = |name: &str| all || which.iter().any(|w| w == name);
    if wants("scale") {
        scale().await;
    }
    if wants("latency") {
        latency().await;
    }
    if wants("cluster") {
        cluster_scale().await;
    }
    if wants("chaos") {
        chaos_run().await;
    }
}
