//! Reading a page of a long journal, side by side with reading it whole
//! and with one raw Redis round trip (compare rows of one run: the machine
//! may be shared and noisy).
//!
//! `cargo bench -p reprise-tests --bench journal` writes one execution of
//! 100,000 entries (16-byte tool results) to the file store and to a
//! private `redis-server` over loopback TCP, then times
//! `Store::journal_page` (100 entries from the middle, what
//! `GET /v1/executions/{id}/journal?after=50000&limit=100` reads) against
//! `Store::load` (the whole journal, what that request read before pages
//! were ranges). The file store is read twice: with its default page
//! cache, and with one of 64 MiB that holds the whole journal.

use std::sync::Arc;

use reprise_host::journal::{Entry, EntryKind};
use reprise_host::store::{DeploymentVersion, now_ms};
use reprise_host::{Digest, EmbeddedStore, ExecutionId, RedisOptions, RedisStore, Store};
use reprise_tests::measure::{row, time_many};
use reprise_tests::redis::RedisServer;
use reprise_tests::with_journal;

const ENTRIES: u64 = 100_000;

/// One execution holding `ENTRIES` journal entries (of a deployment
/// named `bench` whose component is never run).
async fn long_journal(store: &Arc<dyn Store>) -> ExecutionId {
    let version = DeploymentVersion {
        version: 0,
        digest: Digest::of(b"component"),
        deployed_at_ms: now_ms(),
        imports: vec![],
    };
    store.put_deployment("bench", &version).await.unwrap();
    let journal: Vec<Entry> = (0..ENTRIES)
        .map(|i| Entry {
            at_ms: now_ms(),
            duration_us: 10,
            kind: EntryKind::Random { value: i },
        })
        .collect();
    let id = ExecutionId::generate();
    with_journal(store, "bench", vec![], &id, &journal).await;
    id
}

async fn compare(name: &str, store: Arc<dyn Store>) {
    let id = long_journal(&store).await;
    let page = time_many(500, |_| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let page = store.journal_page(&id, ENTRIES / 2, 100).await.unwrap();
            assert_eq!((page.entries.len(), page.total), (100, ENTRIES));
        }
    })
    .await;
    let whole = time_many(10, |_| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            assert_eq!(store.load(&id).await.unwrap().journal.len() as u64, ENTRIES);
        }
    })
    .await;
    row(&format!("{name}: page of 100 of 100,000 entries"), &page);
    row(&format!("{name}: whole journal of 100,000 entries"), &whole);
    println!(
        "{name}: a page costs {:.4} of the whole journal",
        page.median.as_secs_f64() / whole.median.as_secs_f64()
    );
}

fn main() {
    reprise_tests::measure::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.redb");
        // The file store with its default page cache, then with a cache of
        // 64 MiB, which holds this whole journal: what reads past the
        // cache (from the OS page cache) cost.
        let file: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path).unwrap());
        compare("file store", file).await;
        let big = EmbeddedStore::open_with_cache(&path, 64 << 20).unwrap();
        let file: Arc<dyn Store> = Arc::new(big);
        compare("file store, 64 MiB cache", file).await;

        let (_server, url) = RedisServer::start_tcp(&["--appendfsync", "everysec"]);
        let redis = RedisStore::connect(&url, RedisOptions::default())
            .await
            .unwrap();
        let client = ::redis::Client::open(url.as_str()).unwrap();
        let conn = ::redis::aio::ConnectionManager::new(client).await.unwrap();
        let ping = time_many(2000, |_| {
            let mut c = conn.clone();
            async move {
                let _: String = ::redis::cmd("PING").query_async(&mut c).await.unwrap();
            }
        })
        .await;
        row("Redis: one PING round trip", &ping);
        let redis: Arc<dyn Store> = Arc::new(redis);
        compare("Redis", redis).await;
    });
}
