//! What a durable step costs against the floor of this machine, side by
//! side in one run (the machine may be shared and noisy, so compare rows of
//! one run, not runs):
//!
//! - the floor: one small append plus `fdatasync` to a file in the same
//!   kind of temp dir as the store's, and one raw `RPUSH` to a private
//!   `redis-server` with AOF `appendfsync always` (Redis's own fsync and
//!   one round trip);
//! - one live step as the host writes it: `Store::append_many` of one
//!   tool-call entry under a lease, on the file store and on that Redis.
//!
//! `cargo bench -p reprise-tests --bench durable` (`BENCH_STEPS` overrides
//! 1,000 sequential steps each). With `BENCH_SYNCS=1` it also reports the
//! file store's `fdatasync`/`fsync` calls per step, counted with `strace`
//! when it is installed.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use reprise_host::journal::{Entry, EntryKind, InputKey};
use reprise_host::store::{DeploymentVersion, now_ms};
use reprise_host::{Digest, EmbeddedStore, ExecutionId, RedisOptions, RedisStore, Store};
use reprise_tests::measure::{Stats, row, time_many, us};
use reprise_tests::redis::RedisServer;

fn steps() -> usize {
    std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// A step's entry as a small tool call records it (name, input hash, a
/// 64-byte result).
fn entry(i: usize) -> Entry {
    Entry {
        at_ms: now_ms(),
        duration_us: 40,
        kind: EntryKind::Tool {
            category: "api".into(),
            name: "user".into(),
            input: InputKey::of(&i.to_le_bytes()),
            input_len: 8,
            result: Ok(vec![7u8; 64].into()),
        },
    }
}

/// `steps()` sequential live steps on `store`, each one append of one entry.
async fn live_steps(store: Arc<dyn Store>) -> Stats {
    let version = DeploymentVersion {
        version: 0,
        digest: Digest::of(b"component"),
        deployed_at_ms: now_ms(),
        imports: vec![],
    };
    store.put_deployment("bench", &version).await.unwrap();
    let id = ExecutionId::generate();
    let record = reprise_host::ExecutionRecord::new(
        id.clone(),
        "bench".into(),
        version.digest,
        vec![],
        now_ms(),
    );
    store.create_execution(&record).await.unwrap();
    let lease = store
        .acquire_lease(&id, "bench", Duration::from_secs(600))
        .await
        .unwrap();
    time_many(steps(), |i| {
        let (store, id, lease) = (store.clone(), id.clone(), lease.clone());
        async move {
            store
                .append_many(&id, &lease, i as u64, &[entry(i)])
                .await
                .unwrap();
        }
    })
    .await
}

/// One 64-byte append and `fdatasync`, the file-store floor.
async fn fdatasync_floor(dir: &std::path::Path) -> Stats {
    let mut file = std::fs::File::create(dir.join("floor")).unwrap();
    time_many(steps(), |_| {
        file.write_all(&[7u8; 64]).unwrap();
        file.sync_data().unwrap();
        std::future::ready(())
    })
    .await
}

fn ratio(name: &str, of: &Stats, floor: &Stats) {
    println!(
        "{name}: {:.2}x the floor (p50 {:.1} us against {:.1} us)",
        us(of.median) / us(floor.median),
        us(of.median),
        us(floor.median)
    );
}

/// The `fdatasync` and `fsync` calls this process makes while `steps()`
/// more live steps run on a fresh file store, per step (`strace -f -c`
/// attached to this process), or `None` without strace.
fn syncs_per_step(tokio: &tokio::runtime::Runtime) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path().join("s.redb")).unwrap());
    let out = dir.path().join("strace.txt");
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-c", "-e", "trace=fdatasync,fsync", "-o"])
        .arg(&out)
        .args(["-p", &std::process::id().to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    tokio.block_on(live_steps(store));
    // SIGINT detaches strace, which then writes its summary.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    strace.wait().ok()?;
    let text = std::fs::read_to_string(&out).ok()?;
    let calls: u64 = text
        .lines()
        .filter(|l| l.ends_with("fdatasync") || l.ends_with("fsync"))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    Some(calls as f64 / steps() as f64)
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let floor = fdatasync_floor(dir.path()).await;
        let file: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path().join("bench.redb")).unwrap());
        let file = live_steps(file).await;
        let floor_after = fdatasync_floor(dir.path()).await;
        row("floor: 64-byte append + fdatasync", &floor);
        row("file store: live step (append_many)", &file);
        row("floor again, after the store", &floor_after);
        ratio("file store step", &file, &floor);

        let (server, url) = RedisServer::start_tcp(&["--appendfsync", "always"]);
        let client = ::redis::Client::open(url.as_str()).unwrap();
        let conn = ::redis::aio::ConnectionManager::new(client).await.unwrap();
        let rpush = time_many(steps(), |_| {
            let mut c = conn.clone();
            async move {
                let _: u64 = ::redis::cmd("RPUSH")
                    .arg("floor")
                    .arg(&[7u8; 64][..])
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        })
        .await;
        let redis: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&url, RedisOptions::default())
                .await
                .unwrap(),
        );
        let redis = live_steps(redis).await;
        row("floor: raw RPUSH, AOF always", &rpush);
        row("Redis store: live step (append_many)", &redis);
        ratio("Redis store step", &redis, &rpush);
        drop(server);
    });
    if std::env::var("BENCH_SYNCS").as_deref() == Ok("1") {
        match syncs_per_step(&tokio) {
            Some(n) => println!("file store: {n:.2} fdatasync/fsync calls per step"),
            None => println!("file store: syncs per step not counted (strace is missing)"),
        }
    }
}
