//! JavaScript workflows next to Rust ones, measured side by side in one
//! run on the in-memory store (compare rows, not runs: the machine may be
//! shared and noisy).
//!
//! `cargo bench -p reprise-tests --bench javascript` builds the JS guests
//! (Node and `npm ci` in guest-sdk/js needed) and prints, for the `steps`
//! guest in Rust and in JavaScript:
//! - component size and deploy time (a compile by wasmtime; no artifact
//!   cache on this engine);
//! - a zero-step execution end to end (pooled instance; the JS engine's
//!   heap was snapshotted at build time, so instantiation is a copy);
//! - the live step cost (n=100 minus n=0, per step), and over 10,000 steps
//!   in one instance (it must not grow with the steps before it);
//! - resume + replay of a 1,000-step journal, and its cost per entry;
//! - host memory (RSS) per live instance: 20 executions each held inside a
//!   tool call.

use std::sync::Arc;
use std::time::Instant;

use reprise_host::tools::ToolCall;
use reprise_host::{MemoryStore, Runtime, RuntimeConfig, Store, ToolRegistry};
use reprise_tests::js::js_guest;
use reprise_tests::measure::{replay_many, row, rss, run_many, us};
use reprise_tests::{encode, engine, guest, runtime, wait};
use serde_json::json;

fn main() {
    reprise_tests::measure::block_on(async {
        let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (rt, _) = runtime(memory.clone(), RuntimeConfig::default());
        let guests = [("rust", guest("steps")), ("js", js_guest("steps"))];
        for (lang, bytes) in &guests {
            let name = format!("steps-{lang}");
            let t = Instant::now();
            rt.deploy(&name, bytes.clone()).await.unwrap();
            println!(
                "{lang}: component {:.1} MB, deploy (compile) {:.2} s",
                bytes.len() as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
        }
        for (lang, _) in &guests {
            let name = format!("steps-{lang}");
            // Warm up: pool slots, allocator.
            run_many(&rt, &name, json!({"n": 10}), 20).await;
            let zero = run_many(&rt, &name, json!({"n": 0}), 300).await;
            let s100 = run_many(&rt, &name, json!({"n": 100}), 100).await;
            row(&format!("{lang}: zero-step execution"), &zero);
            row(&format!("{lang}: steps n=100"), &s100);
            let per_step = (us(s100.median) - us(zero.median)) / 100.0;
            println!("  => {lang}: live step {per_step:.2} us");
            // Linear in the steps one instance takes: the cost of a step
            // must not grow with how many came before it.
            let s10k = run_many(&rt, &name, json!({"n": 10_000}), 5).await;
            row(&format!("{lang}: steps n=10,000"), &s10k);
            let long = (us(s10k.median) - us(zero.median)) / 10_000.0;
            println!("  => {lang}: live step over 10,000 in one instance {long:.2} us");

            let input = encode(&json!({"n": 1000}));
            let id = rt.start(&name, input.clone(), None).await.unwrap();
            wait(&rt, &id).await;
            let journal = rt.journal(&id).await.unwrap();
            let r1000 = replay_many(&rt, &memory, &name, &input, &journal, 30).await;
            row(&format!("{lang}: resume + replay of 1,000 entries"), &r1000);
            let per_entry = (us(r1000.median) - us(zero.median)) / 1000.0;
            println!("  => {lang}: replay per entry {per_entry:.2} us");
        }
        for (lang, bytes) in &guests {
            live_instances(lang, bytes).await;
        }
    });
}

/// RSS per live instance: `K` executions whose `builtin/echo` never
/// returns until released, so each holds its instance.
async fn live_instances(lang: &str, bytes: &[u8]) {
    const K: usize = 20;
    let go = Arc::new(tokio::sync::Notify::new());
    let mut tools = ToolRegistry::with_builtins();
    let held = go.clone();
    tools.register_fn("builtin", "echo", move |call: ToolCall| {
        let held = held.clone();
        async move {
            held.notified().await;
            Ok(call.input)
        }
    });
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let rt = Runtime::new(engine(), store, tools, RuntimeConfig::default());
    rt.deploy("held", bytes.to_vec()).await.unwrap();
    let before = rss();
    let mut ids = Vec::new();
    for _ in 0..K {
        ids.push(
            rt.start("held", encode(&json!({"n": 1})), None)
                .await
                .unwrap(),
        );
    }
    while rt.live_instances() < K {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let during = rss();
    println!(
        "{lang}: {K} live instances: host RSS +{:.1} MiB, {:.2} MiB each",
        (during.saturating_sub(before)) as f64 / (1 << 20) as f64,
        (during.saturating_sub(before)) as f64 / (1 << 20) as f64 / K as f64
    );
    while rt.live_instances() > 0 {
        go.notify_waiters();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for id in ids {
        wait(&rt, &id).await;
    }
}
