//! HTTP benchmarks of `reprise serve`, as a separate process, so its RSS
//! and CPU time can be read from /proc:
//!
//! - latency of start-and-wait (`?wait=`) of a 10-step workflow, 200
//!   sequential runs, p50/p99, next to a `/healthz` round trip on the same
//!   connection pool as the baseline;
//! - throughput of 1,000 such workflows with 50 requests in flight:
//!   workflows/s, the server's CPU (cores busy) and RSS.
//!
//! - parked executions: the server's RSS growth for 1,000 and then 10,000
//!   executions parked on a signal (`BENCH_PARKED` overrides 10,000),
//!   read `BENCH_SETTLE` seconds (default 5) after the last parked, with
//!   the absolute RSS (an allocator that grows little may start high).
//!
//! Each on the embedded file store (fsync per journal write) and on Redis
//! (a private `redis-server` over loopback TCP, AOF `appendfsync always`).
//!
//! `cargo bench -p reprise-cli --bench http` (`BENCH_RUNS`, `BENCH_TOTAL`
//! and `BENCH_IN_FLIGHT` override 200, 1000 and 50). With
//! `BENCH_BASELINE=<another reprise binary>` (e.g. one built from an
//! earlier commit) each scenario runs again right after on that binary.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reprise_tests::process::{ServeProcess, usage};
use serde_json::{Value, json};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Host = ServeProcess;

fn serve(binary: &Path, redis: Option<&str>) -> Host {
    let mut config = match redis {
        Some(url) => format!("redis = \"{url}\"\n"),
        None => String::new(),
    };
    // `BENCH_STORE_CACHE`: the embedded store's page cache, in bytes.
    if let Ok(bytes) = std::env::var("BENCH_STORE_CACHE") {
        config.push_str(&format!("store_cache_bytes = {bytes}\n"));
    }
    ServeProcess::spawn(binary, &config, &[("RUST_LOG", "error")])
}

/// The binaries to measure: this build's, and `BENCH_BASELINE` if set.
fn binaries() -> Vec<(&'static str, std::path::PathBuf)> {
    let mut out = vec![("", env!("CARGO_BIN_EXE_reprise").into())];
    if let Some(base) = std::env::var_os("BENCH_BASELINE") {
        out.push(("baseline ", base.into()));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Deploys the guest `name` under its own name.
async fn deploy(http: &reqwest::Client, url: &str, name: &str) {
    let wasm = reprise_tests::guests_dir().join(format!("{name}.wasm"));
    let r = http
        .put(format!("{url}/v1/workflows/{name}"))
        .header("content-type", "application/wasm")
        .body(std::fs::read(wasm).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn start_and_wait(http: &reqwest::Client, url: &str) -> Duration {
    let t = Instant::now();
    let r = http
        .post(format!("{url}/v1/workflows/steps/executions?wait=30s"))
        .json(&json!({"input": {"n": 10}}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    t.elapsed()
}

async fn scenario(label: &str, binary: &Path, redis: Option<&str>) {
    let runs = env_or("BENCH_RUNS", 200);
    let total = env_or("BENCH_TOTAL", 1000);
    let in_flight = env_or("BENCH_IN_FLIGHT", 50);
    let host = serve(binary, redis);
    let pid = host.pid();
    let http = reqwest::Client::new();
    deploy(&http, &host.url, "steps").await;

    // Warm up: connections, the compiled component, the store.
    for _ in 0..10 {
        start_and_wait(&http, &host.url).await;
    }
    let mut health = Vec::with_capacity(runs);
    let mut lat = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        http.get(format!("{}/healthz", host.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        health.push(t.elapsed());
        lat.push(start_and_wait(&http, &host.url).await);
    }
    health.sort();
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let h50 = percentile(&health, 0.5);
    println!(
        "{label:<18} start-and-wait, 10 steps, {runs} sequential: p50 {:>8.2} ms  p99 {:>8.2} ms   \
         (/healthz p50 {:.3} ms; p50 = {:.0}x /healthz)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        h50.as_secs_f64() * 1e3,
        p50.as_secs_f64() / h50.as_secs_f64()
    );

    let (cpu0, _, _) = usage(pid);
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..total {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (http, url) = (http.clone(), host.url.clone());
        tasks.spawn(async move {
            let d = start_and_wait(&http, &url).await;
            drop(permit);
            d
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(d) = tasks.join_next().await {
        all.push(d.unwrap());
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, rss, peak) = usage(pid);
    all.sort();
    println!(
        "{label:<18} throughput, {total} workflows, {in_flight} in flight: {:>7.1} workflows/s \
         ({:.0} steps/s), p50 {:.1} ms p99 {:.1} ms; server CPU {:.2} cores, RSS {:.1} MiB \
         (peak {:.1} MiB)",
        total as f64 / wall,
        total as f64 * 10.0 / wall,
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        (cpu1 - cpu0) / wall,
        rss as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64,
    );
}

/// Starts `n` executions of `signals` that park on a signal, 50 requests
/// in flight, numbered from `from`; returns once all are parked.
async fn park(http: &reqwest::Client, url: &str, from: usize, n: usize) {
    let sem = Arc::new(tokio::sync::Semaphore::new(50));
    let mut tasks = tokio::task::JoinSet::new();
    for i in from..from + n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (http, url) = (http.clone(), url.to_string());
        tasks.spawn(async move {
            let r = http
                .post(format!("{url}/v1/workflows/signals/executions?wait=30s"))
                .json(&json!({"id": format!("parked-{i}"), "input": {"sleep_ms": 0}}))
                .send()
                .await
                .unwrap();
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["status"], "suspended", "{body}");
            drop(permit);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// RSS growth of a server with executions parked on a signal.
async fn parked(label: &str, binary: &Path, redis: Option<&str>) {
    let most = env_or("BENCH_PARKED", 10_000);
    let settle = Duration::from_secs(env_or("BENCH_SETTLE", 5) as u64);
    let host = serve(binary, redis);
    // Pooled connections are let go before the server's idle keep-alive
    // limit (its 10 s header timeout): reused at that moment, one can be
    // closed under a request, which then fails with an incomplete message.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    deploy(&http, &host.url, "signals").await;
    // Warm up: the compiled component, connections, the store's first pages.
    park(&http, &host.url, 0, 100).await;
    tokio::time::sleep(settle).await;
    let (_, base, _) = usage(host.pid());
    let mut parked = 100;
    for target in [1_000, most] {
        park(&http, &host.url, parked, target - parked).await;
        parked = target;
        tokio::time::sleep(settle).await;
        let (_, rss, _) = usage(host.pid());
        println!(
            "{label:<18} {target} parked on a signal: RSS {:.1} MiB, +{:.1} MiB over 100 parked \
             ({:.0} B each)",
            rss as f64 / (1 << 20) as f64,
            (rss as f64 - base as f64) / (1 << 20) as f64,
            (rss as f64 - base as f64) / (target - 100) as f64
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; any other argument filters by label.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |label: &str| filter.is_empty() || filter.iter().any(|f| label.contains(f));
    println!("reprise serve over loopback HTTP; client and server on this machine");
    for (which, binary) in binaries() {
        if wanted("embedded") {
            scenario(&format!("{which}embedded"), &binary, None).await;
        }
        if wanted("parked-embedded") {
            parked(&format!("{which}parked-embedded"), &binary, None).await;
        }
    }
    if wanted("redis") {
        // A Redis each: a baseline of an older format version cannot read
        // what a newer binary stored.
        for (which, binary) in binaries() {
            let (_server, url) = reprise_tests::redis::RedisServer::start_tcp(&[]);
            scenario(&format!("{which}redis"), &binary, Some(&url)).await;
        }
    }
    if wanted("parked-redis") {
        for (which, binary) in binaries() {
            let (_server, url) = reprise_tests::redis::RedisServer::start_tcp(&[]);
            parked(&format!("{which}parked-redis"), &binary, Some(&url)).await;
        }
    }
}
