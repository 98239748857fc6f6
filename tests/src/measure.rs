//! Measuring helpers the benchmarks share: sample statistics, process CPU
//! time and memory, Redis memory, and one table row format. Benchmarks
//! compare rows measured side by side in one run (the machine may be
//! shared and noisy).

use std::time::{Duration, Instant};

use std::sync::Arc;

use reprise_host::journal::Entry;
use reprise_host::{ExecutionId, Runtime, Store};

use crate::redis::RedisServer;

/// Marks where a profile of a benchmark's steady state begins: run it
/// under `valgrind --tool=callgrind --zero-before='*profile_from_here*'`
/// and the counts cover only what follows the call (compiles and warm-up
/// excluded), on every thread.
#[inline(never)]
pub fn profile_from_here() {
    std::hint::black_box(());
}

/// How many iterations a benchmark's profiling mode runs: `BENCH_N`, or
/// `None` to run for a fixed time.
pub fn fixed_iterations() -> Option<usize> {
    std::env::var("BENCH_N").ok().and_then(|n| n.parse().ok())
}

/// Runs a benchmark's main future on a two-worker runtime (a host's shape
/// on this two-core machine).
pub fn block_on<F: std::future::Future>(main: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the benchmark's runtime")
        .block_on(main)
}

/// The median and 90th percentile of some samples.
pub struct Stats {
    /// The median.
    pub median: Duration,
    /// The 90th percentile.
    pub p90: Duration,
}

/// The statistics of `samples`.
pub fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        median: samples[samples.len() / 2],
        p90: samples[samples.len() * 9 / 10],
    }
}

/// A duration in microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Times `op(i)` for `i` in `0..n`.
pub async fn time_many<F, Fut>(n: usize, mut op: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        op(i).await;
        samples.push(t.elapsed());
    }
    stats(samples)
}

/// User + system CPU time of this process, in clock ticks.
pub fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Resident set size of this process, in bytes.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// `used_memory` of a Redis server, in bytes.
pub fn info_used_memory(server: &RedisServer) -> i64 {
    server
        .cli(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Prints one line of a benchmark's table.
pub fn row(name: &str, s: &Stats) {
    println!(
        "{name:<52} median {:>10.1} us   p90 {:>10.1} us",
        us(s.median),
        us(s.p90)
    );
}

/// Starts `workflow` on `input` `n` times, one after the other, and times
/// each from the start to its end.
pub async fn run_many(rt: &Runtime, workflow: &str, input: serde_json::Value, n: usize) -> Stats {
    let input = crate::encode(&input);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let id = rt.start(workflow, input.clone(), None).await.unwrap();
        crate::wait(rt, &id).await;
        samples.push(t.elapsed());
    }
    stats(samples)
}

/// Resumes `n` fresh executions of `workflow` on `input` whose journal
/// already holds `journal`, timing each from resume to end: the whole
/// invocation is replay.
pub async fn replay_many(
    rt: &Runtime,
    store: &Arc<dyn Store>,
    workflow: &str,
    input: &[u8],
    journal: &[Entry],
    n: usize,
) -> Stats {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ExecutionId::generate();
        crate::with_journal(store, workflow, input.to_vec(), &id, journal).await;
        let t = Instant::now();
        rt.resume(&id).await.unwrap();
        let done = crate::wait(rt, &id).await;
        samples.push(t.elapsed());
        assert_eq!(done.journal_len as usize, journal.len());
    }
    stats(samples)
}
