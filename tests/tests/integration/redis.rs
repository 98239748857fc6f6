//! What only the Redis store has to show: hosts racing on one execution,
//! a host fenced out after its lease expired, Redis going away mid-step,
//! large values stored once, and connection URLs with passwords.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reprise_host::execution::{Outcome, Status};
use reprise_host::journal::{Entry, EntryKind};
use reprise_host::store::{RedisOptions, RedisStore, StoreError, now_ms};
use reprise_host::tools::ToolCall;
use reprise_host::{
    Budget, Digest, ExecutionId, ExecutionRecord, Runtime, RuntimeConfig, Store, ToolRegistry,
};
use reprise_tests::redis::RedisServer;
use reprise_tests::*;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

fn entry(i: u64) -> Entry {
    Entry {
        at_ms: now_ms(),
        duration_us: i,
        kind: EntryKind::Checkpoint,
    }
}

/// Two hosts, each with its own connection, race to take leases on one
/// execution and append. Every append that succeeded is in the journal at
/// its index, exactly once; every one that failed failed with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_racing_on_one_execution_never_both_write() {
    let server = RedisServer::start();
    let a: Arc<dyn Store> = Arc::new(server.store().await);
    let b: Arc<dyn Store> = Arc::new(server.store().await);
    let id = ExecutionId::new("raced").unwrap();
    a.create_execution(&ExecutionRecord::new(
        id.clone(),
        "wf".into(),
        Digest::of(b"c"),
        vec![],
        now_ms(),
    ))
    .await
    .unwrap();

    async fn host(store: Arc<dyn Store>, id: ExecutionId, name: &'static str) -> Vec<u64> {
        let mut written = Vec::new();
        let ttl = Duration::from_millis(20);
        for _ in 0..200 {
            let lease = match store.acquire_lease(&id, name, ttl).await {
                Ok(l) => l,
                Err(StoreError::LeaseHeld { .. }) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                Err(e) => panic!("{name}: acquire: {e}"),
            };
            // Append a few entries; the lease may expire under us (20 ms),
            // and the other host may take over.
            for _ in 0..3 {
                let len = store.get_execution(&id).await.unwrap().journal_len;
                match store.append(&id, &lease, len, &entry(len)).await {
                    Ok(()) => written.push(len),
                    Err(StoreError::LeaseLost(_)) | Err(StoreError::Conflict { .. }) => break,
                    Err(e) => panic!("{name}: append: {e}"),
                }
                if len % 7 == 0 {
                    // Stall past the lease now and then.
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        written
    }

    let (wa, wb) = tokio::join!(
        tokio::spawn(host(a.clone(), id.clone(), "a")),
        tokio::spawn(host(b.clone(), id.clone(), "b"))
    );
    let (wa, wb) = (wa.unwrap(), wb.unwrap());
    assert!(!wa.is_empty() && !wb.is_empty(), "both hosts got leases");
    let mut all: Vec<u64> = wa.iter().chain(&wb).copied().collect();
    all.sort();
    let snap = a.load(&id).await.unwrap();
    let len = snap.journal.len() as u64;
    assert_eq!(
        all,
        (0..len).collect::<Vec<_>>(),
        "each index written once, by one host"
    );
    for (i, e) in snap.journal.iter().enumerate() {
        assert_eq!(
            e.duration_us, i as u64,
            "entry {i} is the one written at {i}"
        );
    }
    assert!(snap.record.last_token >= 2, "leases changed hands");
}

/// Host A: a runtime on `server` that starts `steps` with `n` steps and
/// stalls in step `k` until `go` is notified; returns once it is stalled.
async fn stalled_host(
    server: &RedisServer,
    n: u32,
    k: u32,
    go: Arc<Notify>,
    config: RuntimeConfig,
) -> (Runtime, ExecutionId) {
    let (tools, mut stalled) = stalling_tools(&Calls::default(), k, go);
    let host = Runtime::new(engine(), Arc::new(server.store().await), tools, config);
    deploy(&host, "steps").await;
    let id = host
        .start("steps", encode(&json!({"n": n, "size": 4})), None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), stalled.recv())
        .await
        .expect("host A reached the stalling step");
    (host, id)
}

/// A run resumed after every step, with someone waiting for it, reads the
/// socket about once per invocation: the step that spent the budget rides
/// in the next acquire's pipeline, and the waiter takes the record that
/// acquire read instead of reading it again (before: about three reads).
/// And a continuation starts from the journal its invocation kept (the
/// entries it replayed and those it wrote), so what Redis sends per
/// invocation does not grow with the journal; before, each one read the
/// whole journal again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budgeted_run_waited_on_costs_one_read_per_invocation() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(server.store().await);
    let stat = |name: &str| -> u64 {
        let stats = server.cli(&["INFO", "stats"]);
        let line = stats
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("INFO stats has {name}"));
        line.trim().parse().unwrap()
    };
    for max_steps in [1u32, 3] {
        let config = RuntimeConfig {
            budget: Budget {
                max_steps: Some(max_steps),
                max_time: None,
            },
            ..RuntimeConfig::default()
        };
        let (rt, calls) = runtime(store.clone(), config);
        deploy(&rt, "steps").await;
        let mut sent_per_invocation = Vec::new();
        for n in [50u32, 250] {
            let (reads, sent) = (
                stat("total_reads_processed"),
                stat("total_net_output_bytes"),
            );
            let rec = run_to_end(&rt, "steps", json!({"n": n, "size": 16})).await;
            let read = stat("total_reads_processed") - reads;
            let sent = stat("total_net_output_bytes") - sent;
            assert_eq!(rec.status, Status::Completed, "{rec:?}");
            // The last invocation finishes after the steps the last spent
            // budget leaves (it only replays, when that is none).
            assert_eq!(rec.invocations, u64::from(n / max_steps) + 1);
            let per_invocation = read as f64 / rec.invocations as f64;
            // The start, the finish and the waiter's polls (every 250 ms)
            // come on top of one read per invocation.
            assert!(
                max_steps > 1 || per_invocation < 1.6,
                "{read} reads for {} invocations",
                rec.invocations
            );
            sent_per_invocation.push(sent / rec.invocations);
        }
        assert_eq!(calls.total(), 300, "each step ran once");
        // Five times the journal: reading it again at every start would
        // send about five times as much per invocation.
        let [short, long] = sent_per_invocation[..] else {
            unreachable!()
        };
        assert!(
            long < short * 3 / 2,
            "budget {max_steps}: bytes sent per invocation: {short} with 50 steps, {long} with \
             250"
        );
    }
}

/// Host A stalls mid-step past its lease; host B takes over and finishes.
/// When A wakes up its write is refused, and the journal has every step once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_lease_expired_cannot_write() {
    let server = RedisServer::start();
    let k = 4;
    let go = Arc::new(Notify::new());
    let config = RuntimeConfig {
        host_id: "host-a".into(),
        ..RuntimeConfig::default()
    };
    let (host_a, id) = stalled_host(&server, 10, k, go.clone(), config).await;
    // A's lease runs out while it is stalled (as after a long pause).
    let key = format!("reprise:x:{{{id}}}");
    assert_eq!(server.cli(&["HSET", &key, "le", "1"]), "0");

    let (host_b, b_calls) = runtime(
        Arc::new(server.store().await),
        RuntimeConfig {
            host_id: "host-b".into(),
            ..RuntimeConfig::default()
        },
    );
    host_b.resume(&id).await.unwrap();
    let rec = wait(&host_b, &id).await;
    assert_eq!(result::<Value>(&rec)["steps"], 10);
    assert_eq!(
        b_calls.total(),
        10 - k,
        "B ran only what A had not recorded"
    );

    // A wakes up: its append is refused and its invocation ends.
    go.notify_one();
    tokio::time::timeout(Duration::from_secs(30), async {
        while host_a.live_instances() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("host A's invocation ended");
    let journal = host_b.journal(&id).await.unwrap();
    assert_eq!(journal.len(), 10);
    let rec = host_b.status(&id).await.unwrap();
    assert_eq!(rec.status, Status::Completed);
    assert_eq!(rec.journal_len, 10, "A's late write did not land");
}

/// Redis dies right after a tool ran and before its result is recorded; the
/// invocation stops with a retriable error, the execution is not failed,
/// and once Redis is back (with its append-only file) the run finishes with
/// every entry once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_step_loses_nothing() {
    let server = RedisServer::start();
    let store = server.store().await;
    let server = Arc::new(Mutex::new(server));
    let k = 3;
    let calls = Calls::default();
    let mut tools = ToolRegistry::with_builtins();
    let (killed_tx, mut killed) = mpsc::unbounded_channel();
    {
        let (calls, server) = (calls.clone(), server.clone());
        tools.register_fn("builtin", "echo", move |call: ToolCall| {
            let n = calls.total();
            calls.record(&call);
            if n == k {
                // The store goes away while this step is in flight.
                server.lock().unwrap().kill();
                let _ = killed_tx.send(());
            }
            async move { Ok(call.input) }
        });
    }
    let rt = Runtime::new(
        engine(),
        Arc::new(store),
        tools,
        RuntimeConfig {
            retry_delay: Duration::from_millis(50),
            ..RuntimeConfig::default()
        },
    );
    deploy(&rt, "steps").await;
    let id = rt
        .start("steps", encode(&json!({"n": 8, "size": 4})), None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), killed.recv())
        .await
        .expect("the run reached the step that kills Redis");
    // Stay down long enough for the append and a few retries to fail.
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.lock().unwrap().restart();

    let rec = wait(&rt, &id).await;
    assert_eq!(rec.status, Status::Completed, "{:?}", rec.outcome);
    assert_eq!(result::<Value>(&rec)["steps"], 8);
    assert_eq!(rec.journal_len, 8);
    // Step k ran twice (its result was never recorded: at least once);
    // every other step ran once.
    assert_eq!(calls.total(), 9);
    assert_eq!(calls.distinct(), 8);
    let journal = rt.journal(&id).await.unwrap();
    assert_eq!(journal.len(), 8, "no entry lost or duplicated");
}

/// Redis dies while a producer streams: emitted items are written behind
/// the guest, several to a write, so the failed write is noticed at the
/// producer's next flush, not at its emit. The invocation ends on the
/// store error without failing the execution; once Redis is back, replay
/// finishes it with every item once, in order, none lost and none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_stream_loses_no_item() {
    let mut server = RedisServer::start();
    let store = Arc::new(server.store().await);
    let rt = Runtime::new(
        engine(),
        store.clone(),
        ToolRegistry::with_builtins(),
        RuntimeConfig {
            retry_delay: Duration::from_millis(50),
            ..RuntimeConfig::default()
        },
    );
    deploy(&rt, "producer").await;
    let n = 20_000u64;
    let id = rt
        .start("producer", encode(&json!({"n": n, "size": 16})), None)
        .await
        .unwrap();
    // Kill it once the producer is well under way.
    tokio::time::timeout(Duration::from_secs(60), async {
        while rt.items(&id, None, 0).await.unwrap().count < 2_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the producer got going");
    server.kill();
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.restart();

    let rec = wait(&rt, &id).await;
    assert_eq!(rec.status, Status::Completed, "{:?}", rec.outcome);
    assert_eq!(result::<u64>(&rec), n);
    assert!(rec.invocations > 1, "the kill ended an invocation");
    let journal = rt.journal(&id).await.unwrap();
    assert_eq!(journal.len() as u64, n, "no entry lost or duplicated");
    let mut next = 0u64;
    let mut after = None;
    loop {
        let page = rt.items(&id, after, 5_000).await.unwrap();
        assert_eq!(page.count, n);
        if page.items.is_empty() {
            break;
        }
        for (offset, item) in page.items {
            assert_eq!(offset, next);
            let item: Value = rmp_serde::from_slice(&item).unwrap();
            assert_eq!(item["i"], next, "item {offset}");
            next += 1;
            after = Some(offset);
        }
    }
    assert_eq!(next, n);
}

/// A 100 MiB tool result is stored once under its digest, replayed from
/// there in a fresh instance, shared by executions with the same result,
/// and deleted with the last execution that refers to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_result_is_stored_once_and_replayed() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(server.store().await);
    let calls = Calls::default();
    let mut tools = ToolRegistry::with_builtins();
    add_blob_tool(&mut tools, &calls);
    let rt = Runtime::new(
        engine(),
        store.clone(),
        tools,
        RuntimeConfig {
            // Each step in its own invocation: the second one replays the
            // large value from Redis.
            budget: Budget {
                max_steps: Some(1),
                max_time: None,
            },
            ..RuntimeConfig::default()
        },
    );
    deploy(&rt, "bigresult").await;
    let size: u64 = 100 << 20;
    let expected = fnv1a(&blob_bytes(size));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let rec = run_to_end(&rt, "bigresult", json!({"size": size})).await;
        let out: Value = result(&rec);
        assert_eq!(out["len"], size);
        assert_eq!(out["checksum"], expected);
        assert!(rec.invocations >= 2, "the value was replayed");
        let journal = rt.journal(&rec.id).await.unwrap();
        let EntryKind::ToolStored { result_len, .. } = &journal[0].kind else {
            panic!("the large result is not stored out of line: {journal:?}");
        };
        assert_eq!(*result_len, size);
        ids.push(rec.id);
    }
    assert_eq!(calls.total(), 2, "each execution called the tool once");
    let blobs = server.cli(&["--scan", "--pattern", "reprise:blob:*"]);
    assert_eq!(blobs.lines().count(), 1, "one copy for both: {blobs}");
    let journal_key = format!("reprise:j:{{{}}}", ids[0]);
    let journal_bytes: u64 = server
        .cli(&["MEMORY", "USAGE", &journal_key])
        .parse()
        .unwrap();
    assert!(journal_bytes < 4096, "journal holds a reference only");

    store.delete_execution(&ids[0]).await.unwrap();
    let blobs = server.cli(&["--scan", "--pattern", "reprise:blob:*"]);
    assert_eq!(blobs.lines().count(), 1, "still referred to by the second");
    store.delete_execution(&ids[1]).await.unwrap();
    assert_eq!(server.cli(&["--scan", "--pattern", "reprise:blob*"]), "");
}

/// Password URLs work; a wrong password is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_urls_connect_and_a_wrong_password_is_refused() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let socket = server.socket();
    let good = format!("redis+unix://{}?pass=s3cret", socket.display());
    let store = RedisStore::connect(&good, RedisOptions::default())
        .await
        .expect("connecting with the password");
    store
        .put_deployment(
            "wf",
            &reprise_tests::conformance::version(Digest::of(b"x"), 1),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_deployment("wf").await.unwrap(),
        Some(Digest::of(b"x"))
    );
    let bad = format!("redis+unix://{}?pass=wrong", socket.display());
    let err = RedisStore::connect(&bad, RedisOptions::default())
        .await
        .err()
        .expect("a wrong password is refused");
    let msg = err.to_string();
    assert!(!msg.contains("wrong"), "the password is not echoed: {msg}");
    assert!(
        msg.contains("cannot connect to Redis"),
        "the error says what failed: {msg}"
    );
    let err = RedisStore::connect("nonsense://", RedisOptions::default())
        .await
        .err()
        .expect("a malformed URL is refused");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

/// A cancelled execution keeps its outcome until purged, and the purge
/// leaves nothing of it, in its keys or in the index lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_executions_are_indexed_for_retention() {
    let server = RedisServer::start();
    let store = server.store().await;
    let id = ExecutionId::new("gone").unwrap();
    store
        .create_execution(&ExecutionRecord::new(
            id.clone(),
            "wf".into(),
            Digest::of(b"c"),
            vec![],
            now_ms(),
        ))
        .await
        .unwrap();
    let rec = store.cancel(&id).await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Cancelled));
    let cancelled = store
        .list_executions(Some(Status::Cancelled))
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(store.purge_finished(now_ms() + 1, 10).await.unwrap(), 1);
    // What is left is the store's own bookkeeping: the marker that it is
    // indexed and the clock of the execution's index bucket.
    let mut keys: Vec<String> = server
        .cli(&["KEYS", "*"])
        .lines()
        .map(str::to_string)
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0] == "reprise:indexed" && keys[1].ends_with(":clock"),
        "{keys:?}"
    );
}

/// A host keeps nothing for an execution that is not leased to it: the
/// workflows it notes to settle index lists are forgotten when an
/// execution parks or ends, so 30 executions parked on a signal, then
/// finished, leave none noted (each was noted while it ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_notes_nothing_for_parked_or_ended_executions() {
    let server = RedisServer::start();
    let store = Arc::new(server.store().await);
    let (rt, _) = runtime(store.clone(), RuntimeConfig::default());
    deploy(&rt, "signals").await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        let id = rt
            .start("signals", encode(&json!({"sleep_ms": 0})), None)
            .await
            .unwrap();
        ids.push(id);
    }
    for id in &ids {
        wait_for(&rt, id, |r| {
            matches!(r.wait, Some(reprise_host::execution::Wait::Signal { .. }))
        })
        .await;
    }
    // The record changes before the store forgets, so a waiter may see the
    // change first: the count must reach 0, and stay there.
    settles_at_zero(&store, "parked").await;
    for id in &ids {
        rt.signal(id, "approve", encode(&json!({"by": "ops"})))
            .await
            .unwrap();
    }
    for id in &ids {
        assert_eq!(wait(&rt, id).await.status, Status::Completed);
    }
    settles_at_zero(&store, "ended").await;
}

async fn settles_at_zero(store: &RedisStore, when: &str) {
    for _ in 0..100 {
        if store.noted_workflows() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} workflows still noted once {when}",
        store.noted_workflows()
    );
}

/// A store written before the indexes existed (records, and the retention
/// list of that version) gets them built when a host connects: every
/// execution is listed under its status and workflow, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_before_the_indexes_gets_them_on_connect() {
    let server = RedisServer::start();
    let store = server.store().await;
    let mut by_status = std::collections::HashMap::new();
    for i in 0..30 {
        let id = ExecutionId::new(format!("old-{i}")).unwrap();
        let wf = if i % 2 == 0 { "even" } else { "odd" };
        store
            .create_execution(&ExecutionRecord::new(
                id.clone(),
                wf.into(),
                Digest::of(b"c"),
                vec![],
                now_ms(),
            ))
            .await
            .unwrap();
        match i % 3 {
            0 => {
                store.cancel(&id).await.unwrap();
            }
            1 => {
                store
                    .acquire_lease(&id, "h", std::time::Duration::from_secs(30))
                    .await
                    .unwrap();
            }
            _ => {}
        }
        let status = store.get_execution(&id).await.unwrap().status;
        by_status.entry(status).or_insert_with(Vec::new).push(id);
    }
    // Back to the earlier layout: no index lists, no marker, and the
    // retention list that version kept.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for key in server.cli(&["KEYS", "*ix*"]).lines() {
        server.cli(&["DEL", key]);
    }
    server.cli(&["DEL", "reprise:indexed"]);
    server.cli(&["ZADD", "reprise:finished", "1", "old-0"]);
    assert!(
        store
            .list_executions(Some(Status::Cancelled))
            .await
            .unwrap()
            .is_empty()
    );

    let store = server.store().await;
    for (status, ids) in &by_status {
        let mut listed: Vec<_> = store
            .list_executions(Some(*status))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        listed.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected, "{status}");
    }
    let odd = store
        .list_page(&reprise_host::store::ListQuery {
            workflow: Some("odd".into()),
            status: Some(Status::Suspended),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!odd.executions.is_empty());
    assert!(odd.executions.iter().all(|r| r.workflow == "odd"));
    assert_eq!(server.cli(&["EXISTS", "reprise:finished"]), "0");
    assert_eq!(server.cli(&["EXISTS", "reprise:indexed"]), "1");
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts.values().sum::<u64>(), 30);
}

/// `rediss://` works against a TLS-only Redis whose certificate is signed by
/// a private CA given in the options; without the CA it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_urls_connect_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("running openssl (install it: the TLS test makes its own certificates)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
    ]);
    std::fs::write(
        path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &path("ext.cnf"),
        "-out",
        &path("server.pem"),
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let _server = RedisServer::start_with(&[
        "--tls-port",
        &port,
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://localhost:{port}");
    let options = RedisOptions {
        tls_ca: Some(std::fs::read(&ca).unwrap()),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&url, options)
        .await
        .expect("connecting over TLS with the private CA");
    store
        .put_deployment(
            "wf",
            &reprise_tests::conformance::version(Digest::of(b"tls"), 1),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_deployment("wf").await.unwrap(),
        Some(Digest::of(b"tls"))
    );
    let untrusted = RedisStore::connect(
        &url,
        RedisOptions {
            connection_timeout: Duration::from_secs(2),
            ..RedisOptions::default()
        },
    )
    .await;
    assert!(
        untrusted.is_err(),
        "a certificate from an unknown CA must be refused"
    );
}

/// A host dies mid-step (its tasks stop, its lease is never released);
/// another host recovers the execution once the lease expires and finishes
/// it, running only the steps that were not recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_recovers_the_executions_of_a_dead_one() {
    let server = RedisServer::start();
    let k = 3;
    let config = RuntimeConfig {
        lease_ttl: Duration::from_millis(600),
        ..RuntimeConfig::default()
    };
    let (host_a, id) = stalled_host(&server, 6, k, Default::default(), config).await;
    host_a.shutdown().await;
    drop(host_a);
    let rec = server.store().await.get_execution(&id).await.unwrap();
    assert_eq!(rec.status, Status::Running, "A died holding the lease");

    let (host_b, b_calls) = runtime(Arc::new(server.store().await), RuntimeConfig::default());
    assert_eq!(host_b.recover().await.unwrap(), 1);
    let rec = wait(&host_b, &id).await;
    assert_eq!(result::<Value>(&rec)["steps"], 6);
    assert_eq!(rec.journal_len, 6);
    assert_eq!(b_calls.total(), 6 - k, "B ran only what A had not recorded");
}

/// A start cancelled while its record is being written (its client went
/// away while Redis stalled) loses nothing: the record it wrote is leased
/// to this host, which drives the execution anyway instead of leaving it
/// running under a lease nobody renews (an hour's, here, so an execution
/// left so would not end within the test's wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cancelled_while_it_is_written_still_runs() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(server.store().await);
    let config = RuntimeConfig {
        lease_ttl: Duration::from_secs(3600),
        ..RuntimeConfig::default()
    };
    let (rt, _) = runtime(store.clone(), config);
    deploy(&rt, "hello").await;
    // Once, so the scripts are loaded and the stalled write is one request
    // (a first use of a script would be a second one, never sent).
    run_to_end(&rt, "hello", json!({})).await;
    let id = ExecutionId::new("cancelled-start").unwrap();
    // Writes stall for a second: the start's read of the deployment goes
    // through, its write waits, and the start is given up after 300 ms.
    server.cli(&["CLIENT", "PAUSE", "1000", "WRITE"]);
    let options = reprise_host::runtime::StartOptions {
        id: Some(id.clone()),
        ..Default::default()
    };
    let start = rt.start_with_options("hello", encode(&json!({"name": "late"})), options);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), start)
            .await
            .is_err(),
        "the start finished while writes were paused"
    );
    // The record lands when writes resume.
    for _ in 0..500 {
        if store.get_execution(&id).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rec = wait(&rt, &id).await;
    assert_eq!(result::<String>(&rec), "Hello, late!");
    assert_eq!(rec.status, Status::Completed);
}
