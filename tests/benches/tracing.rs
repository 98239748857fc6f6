//! What traces cost per step, side by side in one run on the in-memory
//! store (compare rows, not runs: the machine may be shared and noisy).
//!
//! `cargo bench -p reprise-tests --bench tracing` runs the `steps` guest
//! (n = 0 and n = 200) on three runtimes, alternating between them for
//! three rounds:
//! - `off`: no exporter, executions started without a `traceparent`: the
//!   default, which must cost nothing;
//! - `ids`: no exporter, executions started with a `traceparent`: the
//!   invocation's log span carries the trace id, no OpenTelemetry span;
//! - `otlp`: spans exported over OTLP/HTTP (batched, from the exporter's
//!   thread) to a receiver in this process that reads and drops them.
//!
//! Per step = (n=200 − n=0) / 200, from the medians. Then `off` and
//! `otlp` once more on the embedded file store (a durable step: one
//! `fdatasync` of this disk per step), n = 0 and n = 50.
//!
//! (Last measured: a live step cost 1.2–1.4 µs off and 3.0–3.6 µs with
//! `otlp` in memory, about 2 µs per span; on the file store the
//! difference was within the noise of the syncs.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use reprise_host::runtime::StartOptions;
use reprise_host::telemetry::{Telemetry, TraceParent};
use reprise_host::{EmbeddedStore, MemoryStore, Runtime, RuntimeConfig, Store, ToolRegistry};
use reprise_tests::measure::{Stats, row, stats, us};
use reprise_tests::{encode, engine, guest, wait};
use serde_json::json;

const N: u64 = 200;

fn main() {
    reprise_tests::measure::block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let sink = axum::Router::new().route("/v1/traces", post(|_: axum::body::Bytes| async {}));
        tokio::spawn(async move { axum::serve(listener, sink).await.unwrap() });
        let exporting = Telemetry::otlp(&endpoint, "bench", Duration::from_secs(10)).unwrap();
        let runtimes = [
            ("off", runtime(Telemetry::off()).await, false),
            ("ids", runtime(Telemetry::off()).await, true),
            ("otlp", runtime(exporting.clone()).await, false),
        ];
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        for (_, rt, traced) in &runtimes {
            run(rt, 10, 20, traced.then_some(&parent).cloned().flatten()).await;
        }
        for round in 1..=3 {
            println!("round {round}");
            for (name, rt, traced) in &runtimes {
                let tp = traced.then(|| parent.clone()).flatten();
                let zero = run(rt, 0, 200, tp.clone()).await;
                let many = run(rt, N, 60, tp).await;
                row(&format!("{name}: zero-step execution"), &zero);
                row(&format!("{name}: steps n={N}"), &many);
                let per_step = (us(many.median) - us(zero.median)) / N as f64;
                println!("  => {name}: {per_step:.2} us per live step");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("file off", Telemetry::off(), "off.redb"),
            ("file otlp", exporting.clone(), "otlp.redb"),
        ];
        let mut durable = Vec::new();
        for (name, telemetry, file) in files {
            let store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(dir.path().join(file)).unwrap());
            durable.push((name, runtime_on(store, telemetry).await));
        }
        for round in 1..=3 {
            println!("file store, round {round}");
            for (name, rt) in &durable {
                let zero = run(rt, 0, 40, None).await;
                let many = run(rt, 50, 20, None).await;
                row(&format!("{name}: zero-step execution"), &zero);
                row(&format!("{name}: steps n=50"), &many);
                let per_step = (us(many.median) - us(zero.median)) / 50.0;
                println!("  => {name}: {per_step:.2} us per durable step");
            }
        }
        let flushed = exporting.clone();
        tokio::task::spawn_blocking(move || flushed.flush())
            .await
            .unwrap();
    });
}

async fn runtime(telemetry: Telemetry) -> Runtime {
    runtime_on(Arc::new(MemoryStore::new()), telemetry).await
}

async fn runtime_on(store: Arc<dyn Store>, telemetry: Telemetry) -> Runtime {
    let rt = Runtime::builder(engine(), store)
        .tools(ToolRegistry::with_builtins())
        .config(RuntimeConfig::default())
        .telemetry(telemetry)
        .build()
        .unwrap();
    rt.deploy("steps", guest("steps")).await.unwrap();
    rt
}

/// Runs `count` executions of `steps` with `n`, one after another.
async fn run(rt: &Runtime, n: u64, count: usize, trace: Option<TraceParent>) -> Stats {
    let input = encode(&json!({ "n": n }));
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let options = StartOptions {
            trace: trace.clone(),
            ..StartOptions::default()
        };
        let id = rt
            .start_with_options("steps", input.clone(), options)
            .await
            .unwrap();
        wait(rt, &id).await;
        samples.push(t.elapsed());
    }
    stats(samples)
}
