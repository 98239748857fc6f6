//! Compiled components kept on disk, so a restarted host or a `reprise
//! run` compiles a component once per machine, not once per process.
//!
//! A file is `<component digest>-<engine key>.cwasm`: the engine key is a
//! hash of what wasmtime says makes compiled code loadable by an engine
//! (`Engine::precompile_compatibility_hash`: its version, compiler and
//! settings), so engines of other settings keep files of their own. The
//! file holds a header (magic and the SHA-256 of the rest) and the artifact
//! wasmtime serialized.
//!
//! **Never trusted blindly.** Loading compiled code skips validation, so a
//! file is read whole into memory, its checksum checked, and only then
//! handed to wasmtime, which checks again that it was made by a matching
//! engine. A file that fails either check (truncated, flipped bits, written
//! by another engine under this name) is removed and the component
//! compiled again. The directory is trusted as the data directory is: who
//! can write to it can write the store too.
//!
//! **Bounded.** After each write, files beyond the byte bound are removed,
//! least recently used first (a load refreshes a file's modification time).
//! A write goes to a temporary file that is renamed into place, so readers
//! never see half a file, and several processes can share the directory.
//! Failing to read or write the directory is logged and costs a compile,
//! never an error.

use std::hash::Hasher;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::ids::Digest;

/// The first bytes of a file, then the artifact's SHA-256.
const MAGIC: &[u8; 8] = b"reprise1";
const HEADER: usize = MAGIC.len() + 32;
const EXTENSION: &str = "cwasm";

/// What the directory did, since the engine was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArtifactStats {
    /// Components loaded from a file instead of compiled.
    pub loaded: u64,
    /// Components compiled (no usable file).
    pub compiled: u64,
    /// Files refused (corrupt, or made by another engine) and removed.
    pub rejected: u64,
    /// Files removed to stay within the bound.
    pub evicted: u64,
}

/// Compiled components on disk for one engine.
pub(super) struct Artifacts {
    dir: PathBuf,
    max_bytes: u64,
    /// Distinguishes this engine's files from other engines'.
    engine_key: String,
    loaded: AtomicU64,
    compiled: AtomicU64,
    rejected: AtomicU64,
    evicted: AtomicU64,
}

/// Feeds what wasmtime hashes into SHA-256, so the key is the same in
/// every process and build of one wasmtime version.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 is read")
    }
}

impl Artifacts {
    /// Compiled components of `engine` in `dir` (made if missing), at most
    /// `max_bytes` of them.
    pub(super) fn new(engine: &Engine, dir: PathBuf, max_bytes: u64) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let key = hasher.0.finalize();
        Self {
            dir,
            max_bytes,
            engine_key: hex::encode(&key[..8]),
            loaded: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    pub(super) fn stats(&self) -> ArtifactStats {
        ArtifactStats {
            loaded: self.loaded.load(Ordering::Relaxed),
            compiled: self.compiled.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.{EXTENSION}",
            digest.to_hex(),
            self.engine_key
        ))
    }

    /// The component `bytes` (of digest `digest`): loaded from its file if
    /// there is a sound one, else compiled and its file written.
    pub(super) fn component(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.path(digest);
        if let Some(component) = self.load(engine, &path) {
            self.loaded.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        let component = Component::new(engine, bytes)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        match component.serialize() {
            Ok(artifact) => {
                if let Err(e) = self.store(&path, &artifact) {
                    tracing::warn!(path = %path.display(), "cannot keep the compiled component: {e}");
                } else {
                    self.evict(&path);
                }
            }
            Err(e) => tracing::warn!("cannot serialize a compiled component: {e:#}"),
        }
        Ok(component)
    }

    /// The component in `path`, if it is there and sound; an unsound file
    /// is removed.
    fn load(&self, engine: &Engine, path: &Path) -> Option<Component> {
        let file = match std::fs::read(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read a compiled component: {e}");
                return None;
            }
        };
        let sound = file.len() >= HEADER
            && &file[..MAGIC.len()] == MAGIC
            && file[MAGIC.len()..HEADER] == Sha256::digest(&file[HEADER..])[..];
        let component = if sound {
            // SAFETY: the bytes are those this module wrote after wasmtime
            // serialized them (the checksum just matched), and wasmtime
            // checks they were made by an engine like this one.
            unsafe { Component::deserialize(engine, &file[HEADER..]) }.map_err(|e| format!("{e:#}"))
        } else {
            Err("its checksum does not match".to_string())
        };
        match component {
            Ok(component) => {
                // The modification time is the eviction order.
                if let Err(e) = std::fs::File::options()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_modified(SystemTime::now()))
                {
                    tracing::debug!(path = %path.display(), "cannot touch a compiled component: {e}");
                }
                Some(component)
            }
            Err(why) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    path = %path.display(),
                    "removing a compiled component that cannot be used ({why}); compiling again"
                );
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// Writes `artifact` to `path` through a temporary file renamed into
    /// place.
    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&Sha256::digest(artifact))?;
        tmp.write_all(artifact)?;
        tmp.as_file().sync_data()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Removes the least recently used files until the directory's files
    /// fit in the bound, never `keep` (just written).
    fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == EXTENSION))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
