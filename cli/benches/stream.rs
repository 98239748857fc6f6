//! Output stream benchmarks of `reprise serve` (a separate process, so its
//! RSS can be read from /proc), read with `reprise-client` over loopback:
//!
//! - items/s end to end (from the start of the producer to the client
//!   holding the last item) for 100 B and 64 KiB items, batch sizes 1, 16
//!   and 256, next to the bytes/s that makes;
//! - latency from emit to client, p50/p99: a producer that emits every
//!   5 ms (a live stream, the client waiting in a long poll), measured
//!   from the emit's journal timestamp (ms resolution) to arrival;
//! - a slow consumer: 10,000 items through a window of 100 read at about
//!   500 items/s (the producer alone goes ~4x faster), on a host whose
//!   producers hold their instance only 10 ms when the window is full, so
//!   the producer is suspended and resumed again and again; the server's
//!   RSS sampled as it goes.
//!
//! Each on the embedded file store (fsync per journal write) and on Redis
//! (a private `redis-server` over loopback TCP, AOF `appendfsync always`),
//! with the time of one raw Redis `PING` round trip as the yardstick.
//!
//! `cargo bench -p reprise-cli --bench stream [embedded|redis]`
//! (`BENCH_ITEMS` overrides 2,000 small items; 64 KiB runs use a tenth).
//! With `BENCH_BASELINE=<another reprise binary>` (e.g. one built from an
//! earlier commit) each throughput case also runs on a host of that binary,
//! right after the current one on the same store, and the ratio is printed.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reprise_client::{Client, Start, StreamOptions};
use reprise_tests::process::{ServeProcess, usage};
use serde_json::{Value, json};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This build's `reprise`.
const REPRISE: &str = env!("CARGO_BIN_EXE_reprise");

fn serve_binary(binary: &Path, redis: Option<&str>, extra: &str) -> ServeProcess {
    let mut config = match redis {
        Some(url) => format!("redis = \"{url}\"\n"),
        None => String::new(),
    };
    config.push_str(extra);
    ServeProcess::spawn(binary, &config, &[("RUST_LOG", "error")])
}

/// A host of `binary` with the producer deployed, warmed up (the compiled
/// component, connections).
async fn producer_host(binary: &Path, redis: Option<&str>, extra: &str) -> (ServeProcess, Client) {
    let host = serve_binary(binary, redis, extra);
    let client = Client::new(&host.url);
    let wasm = reprise_tests::guests_dir().join("producer.wasm");
    client
        .deploy("producer", std::fs::read(wasm).unwrap())
        .await
        .unwrap();
    produce_and_read(&client, 50, 100, 16).await;
    (host, client)
}

/// A host of the `BENCH_BASELINE` binary, if set, with the producer
/// deployed.
async fn baseline(redis: Option<&str>) -> Option<(ServeProcess, Client)> {
    let binary = std::env::var_os("BENCH_BASELINE")?;
    Some(producer_host(Path::new(&binary), redis, "").await)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

/// Starts a producer and reads it to the end; returns the wall time.
async fn produce_and_read(client: &Client, n: usize, size: usize, batch: usize) -> Duration {
    let t = Instant::now();
    let exec = client
        .start(
            "producer",
            &json!({"n": n, "size": size}),
            Start::stream().window(1000),
        )
        .await
        .unwrap();
    let mut items = client.stream_with::<Value>(
        &exec.id,
        StreamOptions {
            batch,
            ..Default::default()
        },
    );
    let mut got = 0;
    while let Some(item) = items.next().await {
        item.unwrap();
        got += 1;
    }
    assert_eq!(got, n);
    t.elapsed()
}

/// Emit times of an execution's items, from its journal (ms).
async fn emit_times(http: &reqwest::Client, url: &str, id: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page: Value = http
            .get(format!(
                "{url}/v1/executions/{id}/journal?after={after}&limit=1000"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = page["entries"].as_array().unwrap();
        if entries.is_empty() {
            return out;
        }
        for e in entries {
            if e["kind"] == "emit" {
                out.push(e["at_ms"].as_f64().unwrap());
            }
            after = e["index"].as_u64().unwrap() + 1;
        }
    }
}

async fn scenario(label: &str, redis: Option<&str>, ping: Option<Duration>) {
    let (host, client) = producer_host(Path::new(REPRISE), redis, "").await;
    let http = reqwest::Client::new();
    let small = env_or("BENCH_ITEMS", 2000);
    if let Some(p) = ping {
        println!(
            "{label:<9} (one raw Redis PING round trip: {:.3} ms)",
            p.as_secs_f64() * 1e3
        );
    }
    let base = baseline(redis).await;
    for (size, n) in [(100, small), (64 << 10, small / 10)] {
        for batch in [1, 16, 256] {
            let wall = produce_and_read(&client, n, size, batch)
                .await
                .as_secs_f64();
            let versus = match &base {
                Some((_, b)) => {
                    let base_wall = produce_and_read(b, n, size, batch).await.as_secs_f64();
                    format!(
                        "  (baseline {:>7.0} items/s: {:.2}x)",
                        n as f64 / base_wall,
                        base_wall / wall
                    )
                }
                None => String::new(),
            };
            println!(
                "{label:<9} {n:>6} items of {:>5} B, batch {batch:>3}: {:>8.0} items/s  {:>7.1} MiB/s{versus}",
                size,
                n as f64 / wall,
                (n * size) as f64 / wall / (1 << 20) as f64,
            );
        }
    }
    drop(base);

    // Latency: a live stream, one item every 5 ms.
    let n = 300;
    let exec = client
        .start(
            "producer",
            &json!({"n": n, "size": 100, "sleep_ms": 5}),
            Start::stream(),
        )
        .await
        .unwrap();
    let mut items = client.stream_with::<Value>(
        &exec.id,
        StreamOptions {
            batch: 16,
            ..Default::default()
        },
    );
    let mut arrived = Vec::with_capacity(n);
    while let Some(item) = items.next().await {
        item.unwrap();
        arrived.push(now_ms());
    }
    let emitted = emit_times(&http, &host.url, &exec.id).await;
    assert_eq!(emitted.len(), arrived.len());
    let mut lat: Vec<f64> = arrived
        .iter()
        .zip(&emitted)
        .map(|(a, e)| (a - e).max(0.0))
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{label:<9} emit to client, one item per 5 ms: p50 {:.2} ms  p99 {:.2} ms (journal time has ms resolution)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    );

    // A slow consumer: RSS while 10,000 items go through a window of 100.
    drop(host);
    let (host, client) =
        producer_host(Path::new(REPRISE), redis, "[stream]\nhold = \"10ms\"\n").await;
    let pid = host.pid();
    let n = 10_000;
    let exec = client
        .start(
            "producer",
            &json!({"n": n, "size": 100}),
            Start::stream().window(100),
        )
        .await
        .unwrap();
    let mut items = client.stream_with::<Value>(
        &exec.id,
        StreamOptions {
            batch: 50,
            ..Default::default()
        },
    );
    let mut samples = Vec::new();
    let mut got = 0;
    let t = Instant::now();
    while let Some(item) = items.next().await {
        item.unwrap();
        got += 1;
        if got % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if got % (n / 5) == 0 {
            samples.push(usage(pid).1 as f64 / (1 << 20) as f64);
        }
    }
    assert_eq!(got, n);
    let exec = client.status(&exec.id).await.unwrap();
    println!(
        "{label:<9} slow consumer, {n} items, window 100, {:.0} items/s: {} invocations; server RSS at 20/40/60/80/100%: {} MiB",
        n as f64 / t.elapsed().as_secs_f64(),
        exec.invocations,
        samples
            .iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join(" / "),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |label: &str| filter.is_empty() || filter.iter().any(|f| label.contains(f));
    println!("reprise serve over loopback HTTP, read with reprise-client; one machine");
    if wanted("embedded") {
        scenario("embedded", None, None).await;
    }
    if wanted("redis") {
        let (_server, url) = reprise_tests::redis::RedisServer::start_tcp(&[]);
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut pings = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
            pings.push(t.elapsed());
        }
        pings.sort();
        scenario("redis", Some(&url), Some(pings[100])).await;
    }
}
