//! Runtime benchmarks, measured side by side in one run (the machine may be
//! shared and noisy, so compare rows, not absolute numbers across runs).
//!
//! `cargo bench -p reprise-tests --bench runtime` prints, for each scenario,
//! the median and p90 over many iterations, and the derived per-step and
//! per-entry costs:
//! - a zero-step execution end to end (create, lease, load, instantiate a
//!   pooled instance, run, finish) on the in-memory store;
//! - the live step cost (steps n=100 minus n=0, per step) on the in-memory and
//!   the file store (the file store fsyncs every append);
//! - the replay cost per journal entry (resume an execution whose 1,000
//!   entries are already journaled, minus one with none).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reprise_host::execution::ExecutionRecord;
use reprise_host::journal::Entry;
use reprise_host::store::now_ms;
use reprise_host::{EmbeddedStore, ExecutionId, Runtime, RuntimeConfig, Store};
use reprise_tests::{deploy, encode, runtime, wait};
use serde_json::json;

struct Stats {
    median: Duration,
    p90: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        median: samples[samples.len() / 2],
        p90: samples[samples.len() * 9 / 10],
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn run_many(rt: &Runtime, workflow: &str, input: serde_json::Value, n: usize) -> Stats {
    let input = encode(&input);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let id = rt.start(workflow, input.clone(), None).await.unwrap();
        wait(rt, &id).await;
        samples.push(t.elapsed());
    }
    stats(samples)
}

/// Resumes executions whose journal already holds `journal` (so the whole
/// invocation is replay), `n` times.
async fn replay_many(
    rt: &Runtime,
    store: &Arc<dyn Store>,
    input: &[u8],
    journal: &[Entry],
    n: usize,
) -> Stats {
    let digest = store.get_deployment("steps").await.unwrap().unwrap();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ExecutionId::generate();
        let rec =
            ExecutionRecord::new(id.clone(), "steps".into(), digest, input.to_vec(), now_ms());
        store.create_execution(&rec).await.unwrap();
        let lease = store
            .acquire_lease(&id, "bench", Duration::from_secs(60))
            .await
            .unwrap();
        for (i, e) in journal.iter().enumerate() {
            store.append(&id, &lease, i as u64, e).await.unwrap();
        }
        store.release_lease(&id, &lease).await.unwrap();
        let t = Instant::now();
        rt.resume(&id).await.unwrap();
        let done = wait(rt, &id).await;
        samples.push(t.elapsed());
        assert_eq!(done.journal_len as usize, journal.len());
    }
    stats(samples)
}

fn row(name: &str, s: &Stats) {
    println!(
        "{name:<52} median {:>10.1} us   p90 {:>10.1} us",
        us(s.median),
        us(s.p90)
    );
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let memory: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let (rt, _) = runtime(memory.clone(), RuntimeConfig::default());
        for g in ["hello", "steps"] {
            deploy(&rt, g).await;
        }
        // Warm up: compile caches, pool slots, allocator.
        run_many(&rt, "hello", json!({}), 200).await;
        run_many(&rt, "steps", json!({"n": 100, "size": 64}), 20).await;

        let zero = run_many(&rt, "hello", json!({}), 2000).await;
        row("zero-step execution, memory store", &zero);

        let s0 = run_many(&rt, "steps", json!({"n": 0, "size": 64}), 500).await;
        let s100 = run_many(&rt, "steps", json!({"n": 100, "size": 64}), 200).await;
        row("steps n=0 (64 B payloads), memory store", &s0);
        row("steps n=100 (64 B payloads), memory store", &s100);
        let per_step_mem = (us(s100.median) - us(s0.median)) / 100.0;
        println!("  => live step, memory store: {per_step_mem:.2} us");

        let dir = tempfile::tempdir().unwrap();
        let file: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path().join("bench.redb")).unwrap());
        let (frt, _) = runtime(file.clone(), RuntimeConfig::default());
        deploy(&frt, "steps").await;
        run_many(&frt, "steps", json!({"n": 10, "size": 64}), 5).await;
        let f0 = run_many(&frt, "steps", json!({"n": 0, "size": 64}), 50).await;
        let f20 = run_many(&frt, "steps", json!({"n": 20, "size": 64}), 30).await;
        row("steps n=0, file store (fsync per write)", &f0);
        row("steps n=20, file store (fsync per write)", &f20);
        let per_step_file = (us(f20.median) - us(f0.median)) / 20.0;
        println!("  => live step, file store: {per_step_file:.1} us");

        let input = encode(&json!({"n": 1000, "size": 16}));
        let id = rt.start("steps", input.clone(), None).await.unwrap();
        wait(&rt, &id).await;
        let journal = rt.journal(&id).await.unwrap();
        let r0 = replay_many(
            &rt,
            &memory,
            &encode(&json!({"n": 0, "size": 16})),
            &[],
            200,
        )
        .await;
        let r1000 = replay_many(&rt, &memory, &input, &journal, 50).await;
        row("resume with 0 journal entries, memory store", &r0);
        row("resume + replay of 1,000 entries, memory store", &r1000);
        let per_entry = (us(r1000.median) - us(r0.median)) / 1000.0;
        println!("  => replay per entry: {per_entry:.2} us");
    });
}
