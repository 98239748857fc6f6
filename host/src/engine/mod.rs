//! The wasmtime side: one `Engine`, compiled components, invocations.
//!
//! A [`WorkflowEngine`] owns one wasmtime `Engine` (component model, async,
//! pooling allocator, epoch interruption) and a cache of compiled components
//! keyed by content digest, each kept as an instantiate-ready `WorkflowPre`.
//! The cache is bounded in count and in bytes of compiled code, least
//! recently used first out: a component dropped from it is compiled again
//! from the store the next time it runs, or loaded from the compiled
//! components kept on disk ([`artifacts`]) when the engine has a directory
//! for them.
//! Every invocation gets a fresh `Store`; nothing of an execution outlives its
//! invocation in the engine.

pub mod artifacts;
mod bindings;
pub(crate) mod determinism;
pub(crate) mod invocation;
mod writer;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::EngineConfig;
use crate::execution::UNCODED_WORKFLOW_ERROR;
use crate::ids::Digest;
use artifacts::{ArtifactStats, Artifacts};
use invocation::InvocationState;

/// How often the epoch advances; the granularity of the time limit and of
/// the cooperative yields that keep a busy guest from starving others.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each pooled linear memory kept resident between invocations
/// where the kernel has `PAGEMAP_SCAN` (Linux 6.7+): the pages a guest
/// wrote are found and reset with `memset` up to this many bytes, and only
/// the rest is given back with `madvise`, whose TLB shootdown interrupts
/// every CPU the process runs on. 256 KiB covers a guest that replays a
/// long journal (the steps guest touches 64 to 128 KiB replaying 1,000
/// entries of 16 bytes); a slot then keeps at most that resident, zeroed.
const KEEP_RESIDENT: usize = 256 << 10;

/// The same without `PAGEMAP_SCAN`: the first bytes of memory are reset
/// with `memset` whether the guest touched them or not (faulting them in
/// if not), so this stays small.
const KEEP_RESIDENT_WITHOUT_SCAN: usize = 64 << 10;

/// A component rejected by [`WorkflowEngine::compile`].
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Not a valid WebAssembly component.
    #[error("not a valid wasm component: {0}")]
    Invalid(String),
    /// A component, but not of the `reprise:workflow` world.
    #[error("component does not match the reprise:workflow world: {0}")]
    WrongWorld(String),
    /// Its custom sections (debug info, names) are over the limit.
    #[error(
        "the component's custom sections take {size} bytes, over the limit of {limit} \
         (max_custom_section_bytes): strip debug info (e.g. `strip = true` or \
         `debug = false` in the release profile) or raise the limit"
    )]
    CustomSections {
        /// Their total size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// A compiled component, ready to instantiate.
pub struct CompiledWorkflow {
    /// Digest of the component bytes.
    pub digest: Digest,
    pub(crate) pre: Pre,
    /// Names of the component's imports.
    pub imports: Vec<String>,
    /// Bytes of compiled code it holds in memory.
    pub code_bytes: usize,
}

/// A component ready to instantiate, by the world its `run` export is of.
pub(crate) enum Pre {
    /// World 0.3.0: `run` fails with a `workflow-error`.
    Current(bindings::WorkflowPre<InvocationState>),
    /// Worlds 0.1.0 and 0.2.0: `run` fails with a string.
    Before0_3(bindings::v0_2::WorkflowPre<InvocationState>),
}

/// An instance of either world.
pub(crate) enum Instance {
    Current(bindings::Workflow),
    Before0_3(bindings::v0_2::Workflow),
}

impl Pre {
    fn new(
        instance_pre: wasmtime::component::InstancePre<InvocationState>,
    ) -> Result<Self, CompileError> {
        match bindings::WorkflowPre::new(instance_pre.clone()) {
            Ok(pre) => Ok(Pre::Current(pre)),
            Err(current) => bindings::v0_2::WorkflowPre::new(instance_pre)
                .map(Pre::Before0_3)
                // The current world's complaint is the one worth reading.
                .map_err(|_| CompileError::WrongWorld(format!("{current:#}"))),
        }
    }

    pub(crate) async fn instantiate_async(
        &self,
        store: &mut wasmtime::Store<InvocationState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Current(pre) => Instance::Current(pre.instantiate_async(store).await?),
            Pre::Before0_3(pre) => Instance::Before0_3(pre.instantiate_async(store).await?),
        })
    }
}

impl Instance {
    /// Runs the workflow; an error of an older world gets the code
    /// [`UNCODED_WORKFLOW_ERROR`].
    #[allow(
        clippy::ptr_arg,
        reason = "the generated `call_run` takes a `&Vec<u8>`"
    )]
    pub(crate) async fn call_run(
        &self,
        store: &mut wasmtime::Store<InvocationState>,
        input: &Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, bindings::WorkflowError>> {
        Ok(match self {
            Instance::Current(i) => i.call_run(store, input).await?,
            Instance::Before0_3(i) => {
                i.call_run(store, input)
                    .await?
                    .map_err(|message| bindings::WorkflowError {
                        code: UNCODED_WORKFLOW_ERROR.into(),
                        message,
                        details: None,
                    })
            }
        })
    }
}

/// Compiled components by digest, least recently used first out.
struct Cache {
    lru: lru::LruCache<Digest, Arc<CompiledWorkflow>>,
    bytes: usize,
    max_bytes: usize,
}

impl Cache {
    fn insert(&mut self, compiled: Arc<CompiledWorkflow>) {
        self.bytes += compiled.code_bytes;
        if let Some((_, old)) = self.lru.push(compiled.digest, compiled) {
            self.bytes -= old.code_bytes;
        }
        // Always keep the newest, even alone over the byte bound: it is
        // about to run.
        while self.bytes > self.max_bytes && self.lru.len() > 1 {
            if let Some((_, old)) = self.lru.pop_lru() {
                self.bytes -= old.code_bytes;
            }
        }
    }
}

/// One wasmtime engine and the components compiled for it. Cheap to share:
/// wrap it in an `Arc` and give it to every runtime of the process.
pub struct WorkflowEngine {
    engine: Engine,
    linker: Linker<InvocationState>,
    compiled: Mutex<Cache>,
    /// Compiled components on disk, if configured.
    artifacts: Option<Artifacts>,
    config: EngineConfig,
    /// One permit per instance slot of the pool: an invocation waits for a
    /// slot here, in order, instead of failing to instantiate and retrying.
    slots: Arc<tokio::sync::Semaphore>,
}

impl WorkflowEngine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, wasmtime::Error> {
        let mut pool = PoolingAllocationConfig::default();
        let keep_resident = if PoolingAllocationConfig::is_pagemap_scan_available() {
            KEEP_RESIDENT
        } else {
            KEEP_RESIDENT_WITHOUT_SCAN
        };
        let slots = config.max_instances;
        // A Rust component has a few core instances (the program, shims), each
        // with at most one memory and a couple of tables.
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .total_memories(slots * 2)
            .total_tables(slots * 8)
            .max_memory_size(config.max_memory_bytes)
            // Reset a slot by zeroing what the guest touched instead of
            // `madvise`, whose TLB shootdown on every invocation's end
            // costs more than a small guest's pages.
            .linear_memory_keep_resident(keep_resident)
            // Tables are reset the same way, 4 KiB of each.
            .table_keep_resident(4 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        invocation::add_to_linker(&mut linker)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("reprise-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| wasmtime::Error::msg(format!("cannot start epoch thread: {e}")))?;

        let artifacts = config
            .compiled_dir
            .clone()
            .filter(|_| config.compiled_dir_bytes > 0)
            .map(|dir| Artifacts::new(&engine, dir, config.compiled_dir_bytes));
        Ok(Self {
            artifacts,
            engine,
            linker,
            compiled: Mutex::new(Cache {
                lru: lru::LruCache::new(
                    NonZeroUsize::new(config.cache_components).unwrap_or(NonZeroUsize::MIN),
                ),
                bytes: 0,
                max_bytes: config.cache_bytes,
            }),
            slots: Arc::new(tokio::sync::Semaphore::new(slots as usize)),
            config,
        })
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Compiles a component (or returns the cached compilation) and checks it
    /// against the workflow world. CPU-heavy: call it from a blocking context.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledWorkflow>, CompileError> {
        let digest = Digest::of(bytes);
        if let Some(c) = self.cached(&digest) {
            return Ok(c);
        }
        check_custom_sections(bytes, self.config.max_custom_section_bytes)?;
        let component = match &self.artifacts {
            Some(artifacts) => artifacts.component(&self.engine, &digest, bytes),
            None => Component::new(&self.engine, bytes),
        }
        .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        let code = component.image_range();
        let code_bytes = (code.end as usize).saturating_sub(code.start as usize);
        let imports = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| CompileError::WrongWorld(format!("{e:#}")))?;
        let pre = Pre::new(instance_pre)?;
        let compiled = Arc::new(CompiledWorkflow {
            digest,
            pre,
            imports,
            code_bytes,
        });
        self.compiled
            .lock()
            .expect("component cache poisoned")
            .insert(compiled.clone());
        Ok(compiled)
    }

    /// The compilation of `digest`, if this engine has one.
    pub fn cached(&self, digest: &Digest) -> Option<Arc<CompiledWorkflow>> {
        self.compiled
            .lock()
            .expect("component cache poisoned")
            .lru
            .get(digest)
            .cloned()
    }

    /// How many compiled components the cache holds, and their bytes of
    /// compiled code.
    pub fn cache_size(&self) -> (usize, usize) {
        let cache = self.compiled.lock().expect("component cache poisoned");
        (cache.lru.len(), cache.bytes)
    }

    /// What the directory of compiled components did (`None` without
    /// one).
    pub fn artifact_stats(&self) -> Option<ArtifactStats> {
        self.artifacts.as_ref().map(Artifacts::stats)
    }

    /// Waits for a free instance slot; the slot is the invocation's until
    /// the permit is dropped (after its instance is).
    pub(crate) async fn slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed")
    }

    /// A slot if one is free now, without waiting.
    pub(crate) fn try_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Refuses a component whose custom sections (in it and in every module and
/// component nested in it) add up to more than `limit` bytes, before it is
/// compiled. Malformed bytes are left to the compiler, which says what is
/// wrong with them.
fn check_custom_sections(bytes: &[u8], limit: usize) -> Result<(), CompileError> {
    let mut size = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(section)) => {
                size = size.saturating_add(section.range().len());
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    if size > limit {
        return Err(CompileError::CustomSections { size, limit });
    }
    Ok(())
}
