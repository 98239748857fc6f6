//! Work started without waiting, measured side by side in one run on a
//! private `redis-server` over loopback (compare rows, not numbers across
//! runs: the machine may be shared and noisy).
//!
//! `cargo bench -p reprise-tests --bench concurrency` prints:
//! - 100 calls to a tool that takes 10 ms, started at once and joined
//!   (`steps` with `parallel`), against the same 100 calls one after the
//!   other: end to end;
//! - host CPU per call, concurrent against sequential (a tool that answers
//!   at once, so the host's own work is what is measured);
//! - replay cost per journal entry: resuming an execution whose journal
//!   holds 1,000 fan-out completions (2,000 entries: starts and
//!   completions) against a sequential journal of 2,000 tool entries;
//! - one parent starting and joining 1,000 children: wall time, Redis
//!   bytes per child, and the host's RSS while they run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reprise_host::execution::ExecutionRecord;
use reprise_host::tools::ToolCall;
use reprise_host::{RedisOptions, RedisStore, Runtime, RuntimeConfig, Store, ToolRegistry};
use reprise_tests::measure::{
    Stats, cpu_ticks, info_used_memory, replay_many, row, rss, stats, us,
};
use reprise_tests::redis::RedisServer;
use reprise_tests::{deploy, encode, engine, result, wait};
use serde_json::{Value, json};

/// The built-in tools with `builtin/echo` answering after `delay`.
fn tools(delay: Duration) -> ToolRegistry {
    let mut tools = ToolRegistry::with_builtins();
    tools.register_fn("builtin", "echo", move |call: ToolCall| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(call.input)
    });
    tools
}

async fn run(rt: &Runtime, workflow: &str, input: &Value) -> ExecutionRecord {
    let id = rt.start(workflow, encode(input), None).await.unwrap();
    let rec = wait(rt, &id).await;
    assert_eq!(rec.status, reprise_host::Status::Completed, "{rec:?}");
    rec
}

async fn runs(rt: &Runtime, workflow: &str, input: &Value, n: usize) -> Stats {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        run(rt, workflow, input).await;
        samples.push(t.elapsed());
    }
    stats(samples)
}

/// CPU ticks (of this process: host and its Redis client) per call over
/// `n` runs of `input`.
async fn cpu_per_call(rt: &Runtime, input: &Value, n: usize, calls: u64) -> f64 {
    let before = cpu_ticks();
    for _ in 0..n {
        run(rt, "steps", input).await;
    }
    (cpu_ticks() - before) as f64 / (n as u64 * calls) as f64
}

#[tokio::main]
async fn main() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), RedisOptions::default())
            .await
            .unwrap(),
    );

    // 1. 100 calls of 10 ms.
    let slow = Runtime::new(
        engine(),
        store.clone(),
        tools(Duration::from_millis(10)),
        RuntimeConfig::default(),
    );
    deploy(&slow, "steps").await;
    let parallel = json!({"n": 100, "size": 16, "parallel": true});
    let sequential = json!({"n": 100, "size": 16});
    run(&slow, "steps", &parallel).await; // warm-up: compile, connections
    let p = runs(&slow, "steps", &parallel, 20).await;
    let s = runs(&slow, "steps", &sequential, 5).await;
    println!("== 100 calls to a tool taking 10 ms (Redis)");
    row("100 calls started at once, joined (end to end)", &p);
    row("100 calls one after the other (end to end)", &s);
    println!(
        "   sequential / concurrent: {:.1}x",
        us(s.median) / us(p.median)
    );

    // 2. CPU per call.
    let fast = Runtime::new(
        engine(),
        store.clone(),
        tools(Duration::ZERO),
        RuntimeConfig::default(),
    );
    run(&fast, "steps", &parallel).await;
    let mut ratios = Vec::new();
    for _ in 0..3 {
        // Interleaved rounds, so drift of the machine hits both alike.
        let c = cpu_per_call(&fast, &parallel, 20, 100).await;
        let q = cpu_per_call(&fast, &sequential, 20, 100).await;
        ratios.push(c / q);
        println!(
            "   CPU ticks per call: concurrent {c:.3}, sequential {q:.3} (ratio {:.2})",
            c / q
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "== host CPU per concurrent call / per sequential call: {:.2} (median of 3 rounds; a \
         concurrent call writes two entries, a start and a completion)",
        ratios[1]
    );

    // 3. Replay per entry: 1,000 fan-out completions vs 2,000 sequential.
    let fan_in = json!({"n": 1000, "size": 16, "parallel": true});
    let seq_in = json!({"n": 2000, "size": 16});
    let fan = run(&fast, "steps", &fan_in).await;
    let seq = run(&fast, "steps", &seq_in).await;
    let fan_journal = fast.journal(&fan.id).await.unwrap();
    let seq_journal = fast.journal(&seq.id).await.unwrap();
    assert_eq!(fan_journal.len(), 2000);
    assert_eq!(seq_journal.len(), 2000);
    let zero = json!({"n": 0});
    let z = replay_many(&fast, &store, "steps", &encode(&zero), &[], 10).await;
    let f = replay_many(&fast, &store, "steps", &encode(&fan_in), &fan_journal, 10).await;
    let q = replay_many(&fast, &store, "steps", &encode(&seq_in), &seq_journal, 10).await;
    let per = |s: &Stats| (us(s.median) - us(z.median)) / 2000.0;
    println!("== replay (Redis; resume of a journaled execution, 2,000 entries)");
    row("resume, empty journal", &z);
    row("resume, 1,000 fan-out calls (2,000 entries)", &f);
    row("resume, 2,000 sequential calls", &q);
    println!(
        "   per entry: fan-out {:.2} us, sequential {:.2} us (ratio {:.2})",
        per(&f),
        per(&q),
        per(&f) / per(&q)
    );

    // 4. 1,000 children.
    deploy(&fast, "parent").await;
    deploy(&fast, "child").await;
    let items: Vec<Value> = (0..1000).map(|i| json!({"echo": i})).collect();
    let input = json!({ "items": items });
    let before_mem = info_used_memory(&server);
    let rss_before = rss();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let rec = run(&fast, "parent", &input).await;
    let wall = t.elapsed();
    sampler.abort();
    let out: Vec<Value> = result(&rec);
    assert_eq!(out.len(), 1000);
    assert!(out.iter().enumerate().all(|(i, o)| o["ok"] == json!(i)));
    let used = info_used_memory(&server) - before_mem;
    println!("== one parent, 1,000 children (Redis)");
    println!(
        "   wall {:.2} s ({:.2} ms per child), {} parent invocations",
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1000.0 / 1000.0,
        rec.invocations
    );
    println!(
        "   Redis bytes per child (parent's entries included): {}",
        used / 1000
    );
    println!(
        "   host RSS: {:.1} MiB before, peak {:.1} MiB while they ran",
        rss_before as f64 / (1 << 20) as f64,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1 << 20) as f64
    );
}
