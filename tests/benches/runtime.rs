//! Runtime benchmarks, measured side by side in one run (the machine may be
//! shared and noisy, so compare rows, not absolute numbers across runs).
//!
//! `cargo bench -p reprise-tests --bench runtime` prints, for each scenario,
//! the median and p90 over many iterations, and the derived per-step and
//! per-entry costs:
//! - a zero-step execution end to end (create, lease, load, instantiate a
//!   pooled instance, run, finish) on the memory store, started from the
//!   bench's main thread and from a task on the runtime's workers (as an
//!   HTTP handler starts one; the main thread pays two thread wake-ups
//!   more);
//! - the live step cost (steps n=100 minus n=0, per step) on the in-memory and
//!   the file store (the file store fsyncs every append);
//! - the replay cost per journal entry (resume an execution whose 1,000
//!   entries are already journaled, minus one with none), with the steps
//!   guest's 16-byte payloads and with empty ones; and as a driver loads
//!   and replays them from the file store, next to the memory store;
//! - on Redis over loopback TCP (a private `redis-server`, AOF with fsync
//!   every second): one raw `PING` and `RPUSH` round trip, one journal
//!   append (the Lua script), a live step end to end, loading and resuming
//!   a 1,000-step execution (and the commands one resume sends, in the
//!   order Redis ran them), its load and replay as a driver runs them
//!   (next to the raw `LRANGE`), the replay from memory with that `LRANGE`
//!   in flight beside it (the most a streamed load could win), where a
//!   load's time goes, and the bytes Redis keeps per entry and per
//!   suspended execution; and the host memory a suspended execution holds.
//!
//! For profiling, `BENCH_ONLY` runs one scenario: `zero` (zero-step
//! executions; `zerotask` started from a worker task) or `replayloop`
//! (1,000 entries replayed over and over; from a private Redis with
//! `BENCH_STORE=redis`, from the file store with `file`) for 10 s or
//! `BENCH_N` iterations, `replay` (loads and resumes of 1,000 entries) a
//! fixed number, `redis` the Redis rows alone. Instruction counts of the
//! steady state, which stay stable on a shared machine:
//!
//! ```text
//! REPRISE_TEST_INSTANCES=4 BENCH_ONLY=replayloop BENCH_N=30 valgrind \
//!   --tool=callgrind --zero-before='*profile_from_here*' <bench binary>
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use reprise_host::execution::ExecutionRecord;
use reprise_host::execution::{Status, Wait};
use reprise_host::journal::Entry;
use reprise_host::journal::EntryKind;
use reprise_host::store::now_ms;
use reprise_host::{
    Digest, EmbeddedStore, ExecutionId, MemoryStore, RedisOptions, RedisStore, RuntimeConfig, Store,
};
use reprise_tests::measure::{
    cpu_ticks, fixed_iterations, info_used_memory, profile_from_here, replay_many, row, rss,
    run_many, time_many, us,
};
use reprise_tests::redis::RedisServer;
use reprise_tests::{deploy, encode, runtime, wait};
use serde_json::json;

fn main() {
    reprise_tests::measure::block_on(async {
        let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (rt, _) = runtime(memory.clone(), RuntimeConfig::default());
        let rt = Arc::new(rt);
        for g in ["hello", "steps"] {
            deploy(&rt, g).await;
        }
        if std::env::var("BENCH_ONLY").as_deref() == Ok("replayloop") {
            // For profiling: replay 1,000 entries over and over (a budget of
            // zero new steps never gets past the journal), with payloads
            // of `BENCH_SIZE` bytes (16 unless set).
            deploy(&rt, "steps").await;
            let size: usize = std::env::var("BENCH_SIZE")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(16);
            let input = encode(&json!({"n": 1000, "size": size}));
            let id = rt.start("steps", input.clone(), None).await.unwrap();
            wait(&rt, &id).await;
            let journal = rt.journal(&id).await.unwrap();
            // `BENCH_STORE=redis`: the loop resumes from a private Redis
            // (every replay then also pays the acquire-and-load round trip);
            // `file`: from the file store (its acquire-and-load transaction).
            let (_server, _dir);
            let store: Arc<dyn Store> = match std::env::var("BENCH_STORE").as_deref() {
                Ok("redis") => {
                    let (server, url) = RedisServer::start_tcp(&["--appendfsync", "everysec"]);
                    _server = server;
                    Arc::new(
                        RedisStore::connect(&url, RedisOptions::default())
                            .await
                            .unwrap(),
                    )
                }
                Ok("file") => {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("loop.redb");
                    _dir = dir;
                    Arc::new(EmbeddedStore::open(path).unwrap())
                }
                _ => memory.clone(),
            };
            let (n, took) = replay_loop(&store, &journal, size, fixed_iterations()).await;
            println!(
                "{n} replays of 1,000 entries in {took:?}: {:.1} us each",
                took.as_secs_f64() * 1e6 / n as f64
            );
            return;
        }
        if std::env::var("BENCH_ONLY").as_deref() == Ok("replay") {
            // For profiling: only the replay scenario, repeated.
            deploy(&rt, "steps").await;
            let input = encode(&json!({"n": 1000, "size": 16}));
            let id = rt.start("steps", input.clone(), None).await.unwrap();
            wait(&rt, &id).await;
            let journal = rt.journal(&id).await.unwrap();
            let load = time_many(200, |_| {
                let (m, id) = (memory.clone(), id.clone());
                async move {
                    m.load(&id).await.unwrap();
                }
            })
            .await;
            row("load of 1,000 entries, memory store", &load);
            let cpu0 = cpu_ticks();
            let t = Instant::now();
            let r = replay_many(&rt, &memory, "steps", &input, &journal, 100).await;
            let (cpu1, wall) = (cpu_ticks(), t.elapsed());
            row("resume + replay of 1,000 entries, memory store", &r);
            println!(
                "cpu {} ticks over {:?} wall (incl. setup)",
                cpu1 - cpu0,
                wall
            );
            return;
        }
        if let Ok(mode @ ("zero" | "zerotask")) = std::env::var("BENCH_ONLY").as_deref() {
            // For profiling: zero-step executions for 10 s, or `BENCH_N` of
            // them, started from the bench's main thread (`zero`) or from a
            // task on the runtime's workers, as an HTTP handler starts them
            // (`zerotask`).
            run_many(&rt, "hello", json!({}), 200).await;
            profile_from_here();
            let t = Instant::now();
            let from_task = mode == "zerotask";
            let n = on_worker(from_task, zero_steps(rt.clone(), fixed_iterations())).await;
            println!(
                "{n} zero-step executions{} in {:?}: {:.1} us each",
                if from_task { " from a task" } else { "" },
                t.elapsed(),
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            );
            return;
        }
        if std::env::var("BENCH_ONLY").as_deref() == Ok("redis") {
            // The Redis rows alone, for side-by-side runs of the store.
            let input = encode(&json!({"n": 1000, "size": 16}));
            let id = rt.start("steps", input.clone(), None).await.unwrap();
            wait(&rt, &id).await;
            let journal = rt.journal(&id).await.unwrap();
            redis_scenarios(&memory, &input, &journal).await;
            return;
        }
        // Warm up: compile caches, pool slots, allocator.
        run_many(&rt, "hello", json!({}), 200).await;
        run_many(&rt, "steps", json!({"n": 100, "size": 64}), 20).await;

        let zero = run_many(&rt, "hello", json!({}), 2000).await;
        row("zero-step execution, memory store", &zero);
        let in_task = {
            let rt = rt.clone();
            on_worker(true, async move {
                run_many(&rt, "hello", json!({}), 2000).await
            })
            .await
        };
        row(
            "zero-step execution, memory store, started from a task",
            &in_task,
        );

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
            "steps",
            &encode(&json!({"n": 0, "size": 16})),
            &[],
            200,
        )
        .await;
        let r1000 = replay_many(&rt, &memory, "steps", &input, &journal, 50).await;
        row("resume with 0 journal entries, memory store", &r0);
        row("resume + replay of 1,000 entries, memory store", &r1000);
        let per_entry = (us(r1000.median) - us(r0.median)) / 1000.0;
        println!("  => replay per entry: {per_entry:.2} us");
        // The same with empty payloads: the steps guest sends its 16 bytes
        // as an array of 16 numbers, which its MessagePack encoding and
        // decoding walk one by one; this row leaves that to the guest's
        // own share and shows what a call costs around it.
        let empty = encode(&json!({"n": 1000, "size": 0}));
        let id = rt.start("steps", empty.clone(), None).await.unwrap();
        wait(&rt, &id).await;
        let empty_journal = rt.journal(&id).await.unwrap();
        let e1000 = replay_many(&rt, &memory, "steps", &empty, &empty_journal, 50).await;
        row("resume + replay of 1,000 entries, empty payloads", &e1000);
        let per_empty = (us(e1000.median) - us(r0.median)) / 1000.0;
        println!("  => replay per entry, empty payloads: {per_empty:.2} us");

        // The same 1,000 entries from the file store, as a driver runs
        // them (the replay loop), against an empty journal: what an
        // invocation writes and syncs besides is in both, so the
        // difference is the load and replay of the entries. (Resumes as
        // above would each end with an fdatasync, whose jitter here is as
        // large as that difference.) The memory store's, measured the
        // same way, next to it.
        let mut per_entry_loop = [0.0; 2];
        for (i, (name, store)) in [("memory", &memory), ("file", &file)]
            .into_iter()
            .enumerate()
        {
            let (n, took) = replay_loop(store, &journal, 16, Some(200)).await;
            let full = took.as_secs_f64() * 1e6 / n as f64;
            let (n, took) = replay_loop(store, &[], 16, Some(200)).await;
            let empty = took.as_secs_f64() * 1e6 / n as f64;
            println!(
                "load + replay of 1,000 entries as a driver runs them, {name} store: mean \
                 {full:.1} us (none: {empty:.1} us)"
            );
            per_entry_loop[i] = (full - empty) / 1000.0;
        }
        println!(
            "  => load + replay per entry, file store: {:.2} us = {:.2}x the memory store's",
            per_entry_loop[1],
            per_entry_loop[1] / per_entry_loop[0]
        );

        redis_scenarios(&memory, &input, &journal).await;
    });
}

/// Replays the 1,000 entries of `journal` (the steps guest's, with
/// payloads of `size` bytes) over and over from `store`, as a driver runs
/// an execution: acquire and load, instantiate, replay. The input asks for
/// one step more and the budget allows no new one, so every invocation
/// stops at the journal's end and the next one starts again, keeping its
/// lease (no suspension is written, but each invocation's acquire is: on
/// the file store a commit and an fdatasync). `iterations` of them, or as
/// many as 10 s allow; returns how many ran and in what time.
async fn replay_loop(
    store: &Arc<dyn Store>,
    journal: &[Entry],
    size: usize,
    iterations: Option<usize>,
) -> (u64, Duration) {
    let (looping, _) = runtime(
        store.clone(),
        RuntimeConfig {
            budget: reprise_host::Budget {
                max_steps: Some(0),
                max_time: None,
            },
            ..RuntimeConfig::default()
        },
    );
    deploy(&looping, "steps").await;
    let more = encode(&json!({"n": journal.len() + 1, "size": size}));
    let id = ExecutionId::generate();
    reprise_tests::with_journal(store, "steps", more, &id, journal).await;
    let before = looping.invocations();
    profile_from_here();
    let t = Instant::now();
    looping.resume(&id).await.unwrap();
    match iterations {
        Some(n) => {
            while looping.invocations() - before < n as u64 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        None => tokio::time::sleep(Duration::from_secs(10)).await,
    }
    let (n, took) = (looping.invocations() - before, t.elapsed());
    looping.drain(Duration::from_secs(10)).await;
    (n, took)
}

/// The raw `LRANGE` of the whole 1,000-entry journal at `key`.
async fn lrange_whole(mut conn: ::redis::aio::ConnectionManager, key: String) {
    let v: Vec<Vec<u8>> = ::redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v.len(), 1000);
}

async fn redis_scenarios(memory: &Arc<dyn Store>, input: &[u8], journal: &[Entry]) {
    println!();
    let (server, url) = RedisServer::start_tcp(&["--appendfsync", "everysec"]);
    let store = RedisStore::connect(&url, RedisOptions::default())
        .await
        .unwrap();
    let redis: Arc<dyn Store> = Arc::new(store);
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = ::redis::aio::ConnectionManager::new(client).await.unwrap();

    // Raw round trips on the same kind of connection the store uses.
    let n = 5000;
    for _ in 0..500 {
        let _: String = ::redis::cmd("PING").query_async(&mut conn).await.unwrap();
    }
    let ping = time_many(n, |_| {
        let mut c = conn.clone();
        async move {
            let _: String = ::redis::cmd("PING").query_async(&mut c).await.unwrap();
        }
    })
    .await;
    let entry_bytes = reprise_host::persist::encode(&journal[0]);
    let rpush = time_many(n, |_| {
        let mut c = conn.clone();
        let v = entry_bytes.clone();
        async move {
            let _: i64 = ::redis::cmd("RPUSH")
                .arg("bench:list")
                .arg(v)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    })
    .await;
    row("raw PING round trip, loopback TCP", &ping);
    row("raw RPUSH of one encoded entry, loopback TCP", &rpush);

    // One journal append: the conditional Lua script.
    let id = ExecutionId::new("bench-append").unwrap();
    let rec = ExecutionRecord::new(id.clone(), "w".into(), Digest::of(b""), vec![], now_ms());
    redis.create_execution(&rec).await.unwrap();
    let lease = redis
        .acquire_lease(&id, "bench", Duration::from_secs(600))
        .await
        .unwrap();
    let tool_entry = journal
        .iter()
        .find(|e| matches!(e.kind, EntryKind::Tool { .. }))
        .unwrap()
        .clone();
    let append = time_many(n, |i| {
        let (redis, id, lease, e) = (redis.clone(), id.clone(), lease.clone(), tool_entry.clone());
        async move { redis.append(&id, &lease, i as u64, &e).await.unwrap() }
    })
    .await;
    row("journal append (Lua: fence + index check + RPUSH)", &append);
    println!(
        "  => append / RPUSH round trip: {:.2}x",
        us(append.median) / us(rpush.median)
    );

    // A live step end to end.
    let (rrt, _) = runtime(redis.clone(), RuntimeConfig::default());
    for g in ["steps", "signals"] {
        deploy(&rrt, g).await;
    }
    run_many(&rrt, "steps", json!({"n": 100, "size": 64}), 10).await;
    let r0 = run_many(&rrt, "steps", json!({"n": 0, "size": 64}), 300).await;
    let r100 = run_many(&rrt, "steps", json!({"n": 100, "size": 64}), 100).await;
    row("steps n=0 (64 B payloads), Redis", &r0);
    row("steps n=100 (64 B payloads), Redis", &r100);
    let per_step = (us(r100.median) - us(r0.median)) / 100.0;
    println!(
        "  => live step, Redis: {per_step:.1} us = {:.2}x one RPUSH round trip",
        per_step / us(rpush.median)
    );

    // Loading and resuming a 1,000-step execution.
    let digest = memory.get_deployment("steps").await.unwrap().unwrap();
    assert_eq!(redis.get_deployment("steps").await.unwrap(), Some(digest));
    let q0 = replay_many(
        &rrt,
        &redis,
        "steps",
        &encode(&json!({"n": 0, "size": 16})),
        &[],
        100,
    )
    .await;
    let q1000 = replay_many(&rrt, &redis, "steps", input, journal, 50).await;
    let sent = commands_of_one_resume(&server, &rrt, &redis, input, journal).await;
    row("resume with 0 journal entries, Redis", &q0);
    row("resume + replay of 1,000 entries, Redis", &q1000);
    println!(
        "  => commands one resume of 1,000 entries sends, in order ({}): {}",
        sent.len(),
        sent.join(", ")
    );
    let loaded_id = ExecutionId::generate();
    reprise_tests::with_journal(&redis, "steps", input.to_vec(), &loaded_id, journal).await;
    let load = time_many(200, |_| {
        let (redis, id) = (redis.clone(), loaded_id.clone());
        async move {
            assert_eq!(redis.load(&id).await.unwrap().journal.len(), 1000);
        }
    })
    .await;
    row("load of a 1,000-entry execution (one round trip)", &load);
    let jkey = format!("reprise:j:{{{loaded_id}}}");
    let lrange = time_many(200, |_| lrange_whole(conn.clone(), jkey.clone())).await;
    row("raw LRANGE of the same 1,000 entries", &lrange);
    // Item 2's measure: load and replay as the driver runs them, without
    // `Runtime::resume`'s read of the record and without the end's write.
    let (looped, took) = replay_loop(&redis, journal, 16, Some(300)).await;
    let looped_us = took.as_secs_f64() * 1e6 / looped as f64;
    println!(
        "load + replay of 1,000 entries as a driver runs them, Redis: mean {looped_us:.1} us \
         = {:.2}x the raw LRANGE",
        looped_us / us(lrange.median)
    );
    // What a load streamed beside the replay could save: the replay of the
    // same 1,000 entries from memory, alone and with the raw `LRANGE` in
    // flight beside it (its reply parsed on another worker, as a streamed
    // load's would be). A resume loads the whole journal first (see
    // "A resume loads its whole journal before replaying" in
    // ARCHITECTURE.md); this is the most streaming it could win here.
    let (mrt, _) = runtime(memory.clone(), RuntimeConfig::default());
    deploy(&mrt, "steps").await;
    let mut beside = [None, None];
    for round in 0..4 {
        let with_lrange = round % 2 == 1;
        let mut samples = Vec::with_capacity(100);
        for _ in 0..100 {
            let id = ExecutionId::generate();
            reprise_tests::with_journal(memory, "steps", input.to_vec(), &id, journal).await;
            let t = Instant::now();
            let lrange =
                with_lrange.then(|| tokio::spawn(lrange_whole(conn.clone(), jkey.clone())));
            mrt.resume(&id).await.unwrap();
            wait(&mrt, &id).await;
            if let Some(lrange) = lrange {
                lrange.await.unwrap();
            }
            samples.push(t.elapsed());
        }
        // The second round of each kind is kept: the first warms up.
        beside[usize::from(with_lrange)] = Some(reprise_tests::measure::stats(samples));
    }
    let [Some(alone), Some(with_lrange)] = beside else {
        unreachable!()
    };
    row("resume + replay of 1,000 entries from memory", &alone);
    row("the same, the raw LRANGE in flight beside it", &with_lrange);
    println!(
        "  => a load streamed beside the replay: at best {:.2}x the raw LRANGE, {:.1} us more \
         than the replay alone",
        us(with_lrange.median) / us(lrange.median),
        us(with_lrange.median) - us(alone.median)
    );
    // Where a load's time goes: the store's round trip alone (its script
    // and the journal's pipelined `LRANGE`, replies not decoded), and
    // decoding the 1,000 entries alone.
    let script = ::redis::Script::new(include_str!("../../host/src/store/redis/lua/load.lua"));
    let keys: Vec<String> = ["x", "j", "s", "sk"]
        .iter()
        .map(|k| format!("reprise:{k}:{{{loaded_id}}}"))
        .collect();
    let _: String = script
        .prepare_invoke()
        .load_async(&mut conn.clone())
        .await
        .unwrap();
    let scripted = time_many(200, |_| {
        let (mut c, script, keys) = (conn.clone(), script.clone(), keys.clone());
        async move {
            let mut inv = script.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            let mut pipe = ::redis::pipe();
            pipe.invoke_script(&inv)
                .cmd("LRANGE")
                .arg(&keys[1])
                .arg(0)
                .arg(-1);
            let (v, j): (::redis::Value, ::redis::Value) = pipe.query_async(&mut c).await.unwrap();
            assert!(matches!(v, ::redis::Value::Array(_)));
            assert!(matches!(j, ::redis::Value::Array(j) if j.len() == 1000));
        }
    })
    .await;
    row(
        "the load's round trip alone, replies not decoded",
        &scripted,
    );
    let raw: Vec<Vec<u8>> = ::redis::cmd("LRANGE")
        .arg(&jkey)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let raw = Arc::new(raw);
    let decoding = time_many(200, |_| {
        let raw = raw.clone();
        async move {
            let entries: Vec<Entry> = raw
                .iter()
                .map(|e| reprise_host::persist::decode_entry(e).unwrap())
                .collect();
            assert_eq!(entries.len(), 1000);
        }
    })
    .await;
    row("decoding the same 1,000 entries", &decoding);
    // The generic serde path the direct reader spares the journal.
    let through_serde = time_many(200, |_| {
        let raw = raw.clone();
        async move {
            let entries: Vec<Entry> = raw
                .iter()
                .map(|e| reprise_host::persist::decode::<Entry>(e).unwrap())
                .collect();
            assert_eq!(entries.len(), 1000);
        }
    })
    .await;
    row("  the same through serde alone", &through_serde);

    // Bytes in Redis.
    let jbytes: f64 = server.cli(&["MEMORY", "USAGE", &jkey]).parse().unwrap();
    println!(
        "Redis bytes per journal entry (steps, 16 B payloads): {:.1} (encoded entry {} B)",
        jbytes / 1000.0,
        reprise_host::persist::encode(&journal[1]).len()
    );
    let before_redis = info_used_memory(&server);
    let before_rss = rss();
    let k = 1000;
    let mut ids = Vec::with_capacity(k);
    for _ in 0..k {
        let id = rrt
            .start("signals", encode(&json!({"sleep_ms": 0})), None)
            .await
            .unwrap();
        ids.push(id);
    }
    for id in &ids {
        rrt.wait_until(id, |r| {
            r.status == Status::Suspended && matches!(r.wait, Some(Wait::Signal { .. }))
        })
        .await
        .unwrap();
    }
    let after_redis = info_used_memory(&server);
    let after_rss = rss();
    println!(
        "Redis bytes per suspended execution (signals guest, 2 entries): {:.0}",
        (after_redis - before_redis) as f64 / k as f64
    );
    println!(
        "host RSS change per suspended execution ({k} suspended, live instances {}): {:.0} bytes",
        rrt.live_instances(),
        (after_rss as f64 - before_rss as f64) / k as f64
    );
    drop(server);
}

/// The commands the host sends Redis for one resume (through
/// [`Runtime::resume`], as `replay_many` times it) of an execution holding
/// `journal`, in the order the server ran them, each with its first key
/// without prefix and hash tag (`x` the record, `clock` an index bucket's
/// entry, `suspended` an index list). Read from
/// the server's slow log with every command logged, where what a script
/// calls has no client; its times are not used, logging inflates them.
async fn commands_of_one_resume(
    server: &RedisServer,
    rt: &reprise_host::Runtime,
    store: &Arc<dyn Store>,
    input: &[u8],
    journal: &[Entry],
) -> Vec<String> {
    let id = ExecutionId::new("bench-sent").unwrap();
    reprise_tests::with_journal(store, "steps", input.to_vec(), &id, journal).await;
    // What the setup left running in the background (an index settle).
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    server.cli(&["CONFIG", "SET", "slowlog-max-len", "1000"]);
    server.cli(&["SLOWLOG", "RESET"]);
    rt.resume(&id).await.unwrap();
    wait(rt, &id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = server.cli(&["--json", "SLOWLOG", "GET", "1000"]);
    server.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
    let log: serde_json::Value = serde_json::from_str(&log).expect("SLOWLOG GET as JSON");
    let mut sent: Vec<String> = log
        .as_array()
        .expect("a list of entries")
        .iter()
        .filter(|e| e[4].as_str().is_some_and(|client| client != "?:0"))
        .filter_map(|e| {
            let args: Vec<&str> = e[3].as_array()?.iter().filter_map(|a| a.as_str()).collect();
            // `reprise:x:{id}` is `x`, `reprise:{ix7}:clock` is `clock`.
            let key = |i: usize| {
                let k = args.get(i).copied().unwrap_or("");
                let k = k.strip_prefix("reprise:").unwrap_or(k);
                let untagged: String = match (k.find('{'), k.find('}')) {
                    (Some(a), Some(b)) if a < b => format!("{}{}", &k[..a], &k[b + 1..]),
                    _ => k.to_string(),
                };
                untagged.trim_matches(':').to_string()
            };
            match args.first()?.to_ascii_uppercase().as_str() {
                "SLOWLOG" | "CONFIG" | "HELLO" | "CLIENT" => None,
                "EVALSHA" => Some(format!("EVALSHA({})", key(3))),
                cmd => Some(format!("{cmd}({})", key(1))),
            }
        })
        .collect();
    // The log lists the newest first.
    sent.reverse();
    sent
}

/// Runs `work` on the runtime's workers when `spawned` (as a request
/// handler runs), else here, on the bench's main thread: a start from the
/// main thread hands the execution to a worker and is woken from it, two
/// thread wake-ups that a start from a worker task does not pay.
async fn on_worker<T: Send + 'static>(
    spawned: bool,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    if spawned {
        tokio::spawn(work).await.expect("the bench task panicked")
    } else {
        work.await
    }
}

/// Zero-step executions of `hello`: `n` of them, or as many as 10 s take.
/// Returns how many ran.
async fn zero_steps(rt: Arc<reprise_host::Runtime>, n: Option<usize>) -> usize {
    if let Some(n) = n {
        run_many(&rt, "hello", json!({}), n).await;
        return n;
    }
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(10) {
        run_many(&rt, "hello", json!({}), 100).await;
        n += 100;
    }
    n
}
