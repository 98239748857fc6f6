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
//! - the live step cost (n=100 minus n=0, per step);
//! - resume + replay of a 1,000-step journal, and its cost per entry.

use std::sync::Arc;
use std::time::Instant;

use reprise_host::{EmbeddedStore, RuntimeConfig, Store};
use reprise_tests::js::js_guest;
use reprise_tests::measure::{replay_many, row, run_many, us};
use reprise_tests::{encode, guest, runtime, wait};
use serde_json::json;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let memory: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
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

            let input = encode(&json!({"n": 1000}));
            let id = rt.start(&name, input.clone(), None).await.unwrap();
            wait(&rt, &id).await;
            let journal = rt.journal(&id).await.unwrap();
            let r1000 = replay_many(&rt, &memory, &name, &input, &journal, 30).await;
            row(&format!("{lang}: resume + replay of 1,000 entries"), &r1000);
            let per_entry = (us(r1000.median) - us(zero.median)) / 1000.0;
            println!("  => {lang}: replay per entry {per_entry:.2} us");
        }
    });
}
