//! Listing, sweeping and counting through the execution indexes as the
//! store grows: 10^4, 10^5 and 10^6 executions, on the file store and on
//! a private `redis-server` over loopback TCP, side by side in one run
//! (the machine may be shared and noisy; compare rows, not runs).
//!
//! `cargo bench -p reprise-tests --bench index` (set `INDEX_SIZES`, e.g.
//! `10000,100000`, to run fewer sizes). Each store holds 1,000 suspended
//! and 100 running executions, the rest finished (1 in 100 failed, the
//! others completed): what a store looks like after days of retention. For
//! each size it reports:
//! - `GET /v1/executions?status=suspended&limit=100` over HTTP (p50/p99);
//! - the sweep's read (suspended and running executions unchanged for a
//!   while, a page of 500 at a time): time, records read and, on Redis,
//!   the commands it sent;
//! - on Redis, the index's memory per execution (`MEMORY USAGE` of every
//!   index list over the executions), and Redis memory per execution.
//!
//! The file store is written in the layout of a store from before the
//! indexes (records only, 10,000 per transaction), then opened, which
//! builds its indexes: that time is reported too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reprise_host::execution::{ExecutionRecord, Outcome, Status, Wait};
use reprise_host::server::config::ServeConfig;
use reprise_host::store::{ListQuery, Order, now_ms};
use reprise_host::{Digest, EmbeddedStore, ExecutionId, RedisOptions, RedisStore, Store};
use reprise_tests::redis::RedisServer;
use reprise_tests::server::TestServer;

const SUSPENDED: usize = 1_000;
const RUNNING: usize = 100;

fn record(i: usize) -> ExecutionRecord {
    let mut rec = ExecutionRecord::new(
        ExecutionId::new(format!("x{i:08}")).unwrap(),
        format!("wf{}", i % 4),
        Digest::of(b"component"),
        vec![],
        now_ms(),
    );
    match i {
        i if i < SUSPENDED => {
            rec.status = Status::Suspended;
            rec.wait = Some(Wait::Signal { name: "go".into() });
        }
        i if i < SUSPENDED + RUNNING => {
            rec.status = Status::Running;
            rec.lease = Some(reprise_host::execution::Lease {
                owner: "elsewhere".into(),
                token: 1,
                expires_at_ms: now_ms() + 3_600_000,
            });
        }
        i if i % 100 == 0 => {
            rec.status = Status::Failed;
            rec.outcome = Some(Outcome::Failed(reprise_host::Failure::new(
                reprise_host::execution::FailureKind::Workflow,
                "no",
            )));
        }
        _ => {
            rec.status = Status::Completed;
            rec.outcome = Some(Outcome::Completed(b"done".to_vec()));
        }
    }
    rec
}

/// p50 and p99 of `samples`, in ms.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 99 / 100]),
    )
}

/// Times the listing over HTTP; returns p50 and p99 in ms.
async fn list_over_http(store: Arc<dyn Store>) -> (f64, f64) {
    let server = TestServer::start(
        store,
        ServeConfig::default(),
        reprise_host::ToolRegistry::new(),
    )
    .await;
    let http = reqwest::Client::new();
    let url = server.url("/v1/executions?status=suspended&limit=100");
    let mut samples = Vec::new();
    for i in 0..520 {
        let t = Instant::now();
        let r = http.get(&url).send().await.unwrap();
        assert!(r.status().is_success());
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["executions"].as_array().unwrap().len(), 100);
        // The first replies warm the connection and the caches.
        if i >= 20 {
            samples.push(t.elapsed());
        }
    }
    server.stop().await;
    percentiles(samples)
}

/// Times `Store::list_page` of 100 suspended executions (what the HTTP
/// listing reads); returns p50 and p99 in ms.
async fn list_in_store(store: &dyn Store) -> (f64, f64) {
    let query = ListQuery {
        status: Some(Status::Suspended),
        limit: 100,
        ..ListQuery::default()
    };
    let mut samples = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        assert_eq!(store.list_page(&query).await.unwrap().executions.len(), 100);
        samples.push(t.elapsed());
    }
    percentiles(samples)
}

/// What the sweep reads: suspended and running executions unchanged for a
/// while, oldest first, a page of 500 at a time. Returns the time and the
/// records read.
async fn sweep_read(store: &dyn Store) -> (Duration, usize) {
    let t = Instant::now();
    let mut read = 0;
    for status in [Status::Suspended, Status::Running] {
        let mut query = ListQuery {
            status: Some(status),
            changed_before_ms: Some(now_ms()),
            order: Order::OldestFirst,
            limit: 500,
            ..ListQuery::default()
        };
        loop {
            let page = store.list_page(&query).await.unwrap();
            read += page.read;
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
    }
    (t.elapsed(), read)
}

fn info_field(server: &RedisServer, section: &str, field: &str) -> u64 {
    server
        .cli(&["INFO", section])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

/// Bytes of every index list (`MEMORY USAGE`).
fn index_bytes(server: &RedisServer) -> u64 {
    let keys = server.cli(&["--scan", "--pattern", "reprise:{ix*"]);
    keys.lines()
        .map(|k| {
            server
                .cli(&["MEMORY", "USAGE", k, "SAMPLES", "0"])
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum()
}

async fn redis_size(n: usize) {
    let server = RedisServer::start_with(&["--appendonly", "no", "--save", ""]);
    let store = RedisStore::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let before = info_field(&server, "memory", "used_memory");
    let t = Instant::now();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move {
                store.create_execution(&record(i)).await.unwrap();
            }
        })
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await;
    let populate = t.elapsed();
    // The settling of the last changes runs in the background.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let used = info_field(&server, "memory", "used_memory") - before;
    let index = index_bytes(&server);
    let store: Arc<dyn Store> = Arc::new(store);
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts.values().sum::<u64>(), n as u64, "{counts:?}");
    let commands = info_field(&server, "stats", "total_commands_processed");
    let (sweep, read) = sweep_read(store.as_ref()).await;
    let sweep_commands = info_field(&server, "stats", "total_commands_processed") - commands - 1;
    let (p50, p99) = list_over_http(store.clone()).await;
    let (s50, s99) = list_in_store(store.as_ref()).await;
    println!(
        "Redis {n:>8}: list suspended p50 {p50:>6.2} ms p99 {p99:>6.2} ms (store {s50:.2}/{s99:.2}) | sweep {:>7.1} ms, \
         {read} read, {sweep_commands} commands | index {:>5.1} B/execution, Redis {:>6.1} B/execution \
         | populated in {:.1} s",
        sweep.as_secs_f64() * 1e3,
        index as f64 / n as f64,
        used as f64 / n as f64,
        populate.as_secs_f64(),
    );
}

async fn file_size(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.redb");
    {
        // The layout of a store written before the indexes: records only.
        const EXECUTIONS: redb::TableDefinition<&str, &[u8]> =
            redb::TableDefinition::new("executions");
        let db = redb::Database::create(&path).unwrap();
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(EXECUTIONS).unwrap();
                for &i in chunk {
                    let rec = record(i);
                    t.insert(
                        rec.id.as_str(),
                        reprise_host::persist::encode(&rec).as_slice(),
                    )
                    .unwrap();
                }
            }
            tx.commit().unwrap();
        }
    }
    let t = Instant::now();
    let store = EmbeddedStore::open(&path).unwrap();
    let build = t.elapsed();
    let store: Arc<dyn Store> = Arc::new(store);
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts.values().sum::<u64>(), n as u64, "{counts:?}");
    let (sweep, read) = sweep_read(store.as_ref()).await;
    let (p50, p99) = list_over_http(store.clone()).await;
    let (s50, s99) = list_in_store(store.as_ref()).await;
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "file  {n:>8}: list suspended p50 {p50:>6.2} ms p99 {p99:>6.2} ms (store {s50:.2}/{s99:.2}) | sweep {:>7.1} ms, \
         {read} read | file {:>6.1} B/execution | index built on open in {:.1} s",
        sweep.as_secs_f64() * 1e3,
        size as f64 / n as f64,
        build.as_secs_f64(),
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::var("INDEX_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("INDEX_SIZES: comma-separated counts")
        })
        .collect();
    reprise_tests::measure::block_on(async {
        for &n in &sizes {
            redis_size(n).await;
            file_size(n).await;
        }
    });
}
