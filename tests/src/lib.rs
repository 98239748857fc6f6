//! Integration-test fixtures: the guests, built once per run; one shared
//! wasmtime engine; runtimes over real stores with tools that count calls;
//! the store conformance suite, generic over the `Store` trait; and a
//! private `redis-server` per test; a `reprise serve` host per test.

pub mod chaos;
pub mod conformance;
pub mod js;
pub mod measure;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use reprise_host::tools::ToolCall;
use reprise_host::{
    EngineConfig, ExecutionId, ExecutionRecord, Outcome, Runtime, RuntimeConfig, Store,
    ToolRegistry, WorkflowEngine,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds every guest once per test run and returns the directory holding
/// the components.
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("guests/Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join("guests/target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("running cargo to build the guests");
        assert!(
            out.status.success(),
            "building guests failed (is the wasm32-wasip2 target installed? \
             `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root.join("guests/target/wasm32-wasip2/release")
    })
}

/// The component bytes of guest `name`.
pub fn guest(name: &str) -> Vec<u8> {
    let path = guests_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The guests the harness knows; every one is used by a test.
pub const GUESTS: &[&str] = &[
    "hello",
    "sequential",
    "steps",
    "signals",
    "tool_errors",
    "clock",
    "trap",
    "spin",
    "membomb",
    "missing_tool",
    "bigresult",
    "caller",
    "wrongworld",
    "producer",
    "pipeline",
    "fanout",
    "approval",
    "flaky",
    "misuse",
    "parent",
    "child",
];

/// One engine for the whole test binary, so each component compiles once.
/// `REPRISE_TEST_INSTANCES` sets its pool's slots (64 by default): a
/// profile under valgrind, which cannot reserve the address space of 64
/// slots, runs with a few.
pub fn engine() -> Arc<WorkflowEngine> {
    static ENGINE: OnceLock<Arc<WorkflowEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let slots = std::env::var("REPRISE_TEST_INSTANCES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(64);
            Arc::new(
                WorkflowEngine::new(EngineConfig {
                    max_instances: slots,
                    max_memory_bytes: 256 << 20,
                    ..EngineConfig::default()
                })
                .expect("creating the engine"),
            )
        })
        .clone()
}

/// Counts tool calls by idempotency key.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<HashMap<(String, u64), u32>>>);

impl Calls {
    /// Records one call.
    pub fn record(&self, call: &ToolCall) {
        let key = (
            call.idempotency_key.execution.to_string(),
            call.idempotency_key.index,
        );
        *self.0.lock().unwrap().entry(key).or_default() += 1;
    }

    /// Calls recorded under one key (execution id, index).
    pub fn of(&self, key: &(String, u64)) -> u32 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// Total calls.
    pub fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }

    /// Distinct keys called.
    pub fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The largest number of calls any key got.
    pub fn max_per_key(&self) -> u32 {
        self.0.lock().unwrap().values().copied().max().unwrap_or(0)
    }
}

/// The built-in tools, with `builtin/echo` counting its calls.
pub fn counting_tools(calls: &Calls) -> ToolRegistry {
    let mut tools = ToolRegistry::with_builtins();
    let calls = calls.clone();
    tools.register_fn("builtin", "echo", move |call: ToolCall| {
        calls.record(&call);
        async move { Ok(call.input) }
    });
    tools
}

/// The bytes `test/blob` returns for a size: deterministic, not repetitive
/// enough to compress.
pub fn blob_bytes(size: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a, as the `bigresult` guest computes it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Adds `test/blob`: the input is a little-endian u64 size; the result is
/// [`blob_bytes`] of that size. Counts its calls in `calls`.
pub fn add_blob_tool(tools: &mut ToolRegistry, calls: &Calls) {
    let calls = calls.clone();
    tools.register_fn("test", "blob", move |call: ToolCall| {
        calls.record(&call);
        async move {
            let size = u64::from_le_bytes(call.input.as_slice().try_into().unwrap_or_default());
            Ok(blob_bytes(size))
        }
    });
}

/// Tools whose `builtin/echo` blocks on call number `hang_at` (0-based)
/// until `go` is notified (forever if it never is), and reports the
/// journal index it got to: a way to interrupt a run mid-step.
pub fn stalling_tools(
    calls: &Calls,
    hang_at: u32,
    go: Arc<tokio::sync::Notify>,
) -> (ToolRegistry, tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tools = ToolRegistry::with_builtins();
    let calls = calls.clone();
    tools.register_fn("builtin", "echo", move |call: ToolCall| {
        let n = calls.total();
        calls.record(&call);
        let (tx, go) = (tx.clone(), go.clone());
        async move {
            if n == hang_at {
                let _ = tx.send(call.idempotency_key.index);
                go.notified().await;
            }
            Ok(call.input)
        }
    });
    (tools, rx)
}

/// A runtime on the shared engine, `store` and counting tools.
pub fn runtime(store: Arc<dyn Store>, config: RuntimeConfig) -> (Runtime, Calls) {
    let calls = Calls::default();
    let rt = Runtime::new(engine(), store, counting_tools(&calls), config);
    (rt, calls)
}

/// Deploys guest `name` under its own name.
/// The bytes of a component built against an earlier world, kept under
/// `tests/fixtures/workflow-<version>/` (see the README there).
pub fn fixture(version: &str, name: &str) -> Vec<u8> {
    let path = root()
        .join(format!("tests/fixtures/workflow-{version}"))
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub async fn deploy(rt: &Runtime, name: &str) {
    rt.deploy(name, guest(name))
        .await
        .unwrap_or_else(|e| panic!("deploying {name}: {e}"));
}

/// MessagePack, as the SDK encodes.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}

/// Decodes a completed execution's result.
pub fn result<T: DeserializeOwned>(rec: &ExecutionRecord) -> T {
    match &rec.outcome {
        Some(Outcome::Completed(bytes)) => rmp_serde::from_slice(bytes).unwrap(),
        other => panic!("execution {} did not complete: {other:?}", rec.id),
    }
}

/// Starts guest `name` (already deployed) with a JSON input and waits for
/// the end, with a generous timeout so a hang fails instead of blocking CI.
pub async fn run_to_end(rt: &Runtime, name: &str, input: serde_json::Value) -> ExecutionRecord {
    let id = rt.start(name, encode(&input), None).await.unwrap();
    wait(rt, &id).await
}

/// Waits (at most 120 s) for an execution to end.
pub async fn wait(rt: &Runtime, id: &ExecutionId) -> ExecutionRecord {
    tokio::time::timeout(std::time::Duration::from_secs(120), rt.wait(id))
        .await
        .expect("execution did not end within 120 s")
        .unwrap()
}

/// Waits (at most 60 s) for an execution to reach a state.
pub async fn wait_for(
    rt: &Runtime,
    id: &ExecutionId,
    what: impl Fn(&ExecutionRecord) -> bool,
) -> ExecutionRecord {
    tokio::time::timeout(std::time::Duration::from_secs(60), rt.wait_until(id, what))
        .await
        .expect("state not reached within 60 s")
        .unwrap()
}

/// Creates execution `id` of the deployed `workflow` on `input` whose
/// journal already holds `journal` (as if it had run that far), ready to
/// be resumed: how tests and benchmarks replay a journal, or pair one with
/// an input it does not belong to.
pub async fn with_journal(
    store: &Arc<dyn Store>,
    workflow: &str,
    input: Vec<u8>,
    id: &ExecutionId,
    journal: &[reprise_host::journal::Entry],
) {
    let digest = store.get_deployment(workflow).await.unwrap().unwrap();
    let record = ExecutionRecord::new(
        id.clone(),
        workflow.into(),
        digest,
        input,
        reprise_host::store::now_ms(),
    );
    store.create_execution(&record).await.unwrap();
    let lease = store
        .acquire_lease(id, "recorder", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    for (i, entries) in journal.chunks(256).enumerate() {
        store
            .append_many(id, &lease, (i * 256) as u64, entries)
            .await
            .unwrap();
    }
    store.release_lease(id, &lease).await.unwrap();
}

/// Keeps what a test store needs alive (a temp dir, a Redis server).
pub type Guard = Box<dyn std::any::Any + Send>;

/// A store in memory ([`reprise_host::MemoryStore`]).
pub async fn memory_store() -> (Arc<dyn Store>, Guard) {
    (Arc::new(reprise_host::MemoryStore::new()), Box::new(()))
}

/// An embedded store in a file in a temp dir.
pub async fn file_store() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let store = reprise_host::EmbeddedStore::open(dir.path().join("store.redb")).unwrap();
    (Arc::new(store), Box::new(dir))
}

/// A Redis store on a `redis-server` of the test's own.
pub async fn redis_store() -> (Arc<dyn Store>, Guard) {
    let server = redis::RedisServer::start();
    let store = server.store().await;
    (Arc::new(store), Box::new(server))
}

/// A Redis store on a three-node Redis Cluster of the test's own.
pub async fn redis_cluster_store() -> (Arc<dyn Store>, Guard) {
    let cluster = redis::RedisCluster::start();
    let store = cluster.store().await;
    (Arc::new(store), Box::new(cluster))
}

/// Defines, for each named case `async fn case(store: Arc<dyn Store>)` in
/// the calling module, one test on the embedded store and one on Redis.
#[macro_export]
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = $crate::memory_store().await;
                    super::$case(store).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = $crate::redis_store().await;
                    super::$case(store).await;
                }
            )*
        }
    };
}
