//! Compiled components kept on disk: a later engine loads them instead of
//! compiling; a file that is corrupt or not a compiled component is
//! removed and the component compiled again; the directory stays within
//! its bound.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reprise_host::engine::artifacts::ArtifactStats;
use reprise_host::{EngineConfig, Runtime, RuntimeConfig, Status, ToolRegistry, WorkflowEngine};
use reprise_tests::*;
use serde_json::json;

/// An engine keeping compiled components in `dir`, at most `bytes`.
fn engine_in(dir: &Path, bytes: u64) -> Arc<WorkflowEngine> {
    Arc::new(
        WorkflowEngine::new(EngineConfig {
            max_instances: 4,
            compiled_dir: Some(dir.to_path_buf()),
            compiled_dir_bytes: bytes,
            ..EngineConfig::default()
        })
        .unwrap(),
    )
}

/// A runtime on `engine` with a fresh memory store.
async fn runtime_on(engine: &Arc<WorkflowEngine>) -> (Runtime, Guard) {
    let (store, guard) = memory_store().await;
    let rt = Runtime::new(
        engine.clone(),
        store,
        ToolRegistry::with_builtins(),
        RuntimeConfig::default(),
    );
    (rt, guard)
}

/// Runs `hello` to the end on `engine` and returns what the engine's
/// directory did.
async fn run_hello(engine: &Arc<WorkflowEngine>) -> ArtifactStats {
    let (rt, _guard) = runtime_on(engine).await;
    deploy(&rt, "hello").await;
    let rec = run_to_end(&rt, "hello", json!({"name": "disk"})).await;
    assert_eq!(rec.status, Status::Completed, "{rec:?}");
    engine.artifact_stats().unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    files.sort();
    files
}

/// The first engine compiles and keeps the file; the next one (a new
/// process, as far as the engine knows) loads it and compiles nothing.
#[tokio::test]
async fn a_later_engine_loads_what_an_earlier_one_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let first = run_hello(&engine_in(dir.path(), 1 << 30)).await;
    assert_eq!((first.compiled, first.loaded), (1, 0), "{first:?}");
    let kept = files(dir.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    let digest = reprise_host::Digest::of(&guest("hello")).to_hex();
    let name = kept[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&digest), "{name}");
    let second = run_hello(&engine_in(dir.path(), 1 << 30)).await;
    assert_eq!((second.compiled, second.loaded), (0, 1), "{second:?}");
    // Without a directory, nothing is kept.
    let none = Arc::new(WorkflowEngine::new(EngineConfig::default()).unwrap());
    assert_eq!(none.artifact_stats(), None);
}

/// A flipped byte fails the checksum; bytes with a sound checksum that
/// are not a compiled component fail wasmtime's check. Either way the file
/// is removed, the component compiled again and the workflow runs; the
/// file written again is sound.
#[tokio::test]
async fn a_corrupt_or_foreign_file_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    run_hello(&engine_in(dir.path(), 1 << 30)).await;
    let file = files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let stats = run_hello(&engine_in(dir.path(), 1 << 30)).await;
    assert_eq!(
        (stats.rejected, stats.compiled, stats.loaded),
        (1, 1, 0),
        "{stats:?}"
    );
    let stats = run_hello(&engine_in(dir.path(), 1 << 30)).await;
    assert_eq!((stats.loaded, stats.rejected), (1, 0), "{stats:?}");

    // A sound header over what is not a compiled component (the source
    // wasm): wasmtime refuses it.
    use sha2::Digest as _;
    let source = guest("hello");
    let mut forged = b"reprise1".to_vec();
    forged.extend_from_slice(&sha2::Sha256::digest(&source));
    forged.extend_from_slice(&source);
    std::fs::write(&file, forged).unwrap();
    let stats = run_hello(&engine_in(dir.path(), 1 << 30)).await;
    assert_eq!(
        (stats.rejected, stats.compiled, stats.loaded),
        (1, 1, 0),
        "{stats:?}"
    );
    // Truncated to less than a header.
    std::fs::write(&file, b"rep").unwrap();
    let stats = run_hello(&engine_in(dir.path(), 1 << 30)).await;
    assert_eq!((stats.rejected, stats.compiled), (1, 1), "{stats:?}");
}

/// Past the bound the least recently used files go; the newest stays even
/// alone over it.
#[tokio::test]
async fn the_directory_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path(), 1);
    let (rt, _guard) = runtime_on(&engine).await;
    deploy(&rt, "hello").await;
    deploy(&rt, "steps").await;
    let kept = files(dir.path());
    let steps = reprise_host::Digest::of(&guest("steps")).to_hex();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&steps),
        "{kept:?}"
    );
    assert_eq!(engine.artifact_stats().unwrap().evicted, 1);
    // A bound of 0 keeps nothing and costs nothing.
    let off = engine_in(dir.path(), 0);
    assert_eq!(off.artifact_stats(), None);
}
