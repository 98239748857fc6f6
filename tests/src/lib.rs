//! Integration-test fixtures: the guests, built once per run; one shared
//! wasmtime engine; runtimes over real stores with tools that count calls;
//! and the store conformance suite, generic over the `Store` trait.

pub mod conformance;

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
];

/// One engine for the whole test binary, so each component compiles once.
pub fn engine() -> Arc<WorkflowEngine> {
    static ENGINE: OnceLock<Arc<WorkflowEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            Arc::new(
                WorkflowEngine::new(EngineConfig {
                    max_instances: 64,
                    max_memory_bytes: 256 << 20,
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

/// A runtime on the shared engine, `store` and counting tools.
pub fn runtime(store: Arc<dyn Store>, config: RuntimeConfig) -> (Runtime, Calls) {
    let calls = Calls::default();
    let rt = Runtime::new(engine(), store, counting_tools(&calls), config);
    (rt, calls)
}

/// Deploys guest `name` under its own name.
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
