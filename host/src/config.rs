//! Typed configuration of the engine and the runtime.

use std::time::Duration;

/// Per-invocation resource limits. Exceeding one fails that execution only,
/// with a message naming the limit.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest linear memory a guest may grow to, in bytes.
    pub memory_bytes: usize,
    /// Largest table a guest may grow to, in elements.
    pub table_elements: usize,
    /// Longest a guest may run without reaching a host call. A guest that
    /// loops without ever calling the host, or blocks in a WASI call (a
    /// sleep), is stopped after this. `log` does not count as a host call.
    pub time_without_progress: Duration,
    /// Guest log lines an invocation may write at once; past it, lines are
    /// dropped (and counted) until the allowance refills.
    pub log_burst: u32,
    /// Guest log lines per second the allowance refills by.
    pub log_per_second: u32,
    /// Longest guest log line kept, in bytes; the rest is cut.
    pub log_line_bytes: usize,
    /// Most handles (work started with `start-*` and not yet awaited or
    /// forgotten) an execution may hold; one more fails it.
    pub max_handles: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            time_without_progress: Duration::from_secs(10),
            log_burst: 256,
            log_per_second: 64,
            log_line_bytes: 4096,
            max_handles: 1000,
        }
    }
}

/// How much new work one invocation may do before the host ends it and
/// resumes the execution in a fresh instance (the edge pattern: save, exit,
/// resume). Replayed entries do not count. `None` means unbounded.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    /// New journal entries per invocation.
    pub max_steps: Option<u32>,
    /// Wall-clock time per invocation, checked at each journaled call.
    pub max_time: Option<Duration>,
}

/// How streaming executions are paced by their consumers.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// The window of a stream whose start does not choose one: most items
    /// emitted beyond what every live consumer has read.
    pub window: u64,
    /// The byte window of a stream whose start does not choose one, if any.
    pub window_bytes: Option<u64>,
    /// A consumer session that has not read (or said it is there) for this
    /// long has left.
    pub session_ttl: Duration,
    /// How long an `emit` that finds the window full keeps its instance,
    /// waiting for a consumer to read, before the execution is suspended
    /// and the instance dropped. Short: it trades a little memory for not
    /// replaying when consumers keep up.
    pub hold: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            window: 1000,
            window_bytes: None,
            session_ttl: Duration::from_secs(30),
            hold: Duration::from_secs(1),
        }
    }
}

/// How long finished executions are kept by default: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Settings of a [`crate::Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Resource limits for every invocation.
    pub limits: Limits,
    /// The invocation budget.
    pub budget: Budget,
    /// Lease time-to-live; leases are renewed at a third of it.
    pub lease_ttl: Duration,
    /// A `sleep` at most this long waits inside the invocation; a longer one
    /// suspends the execution and drops the instance.
    pub inline_sleep_max: Duration,
    /// Delay before retrying an invocation that stopped on a retriable
    /// store error; doubles up to 30 s.
    pub retry_delay: Duration,
    /// This host's id, recorded in leases. Unique per runtime (the default
    /// is random): a host may take over a lease held under its own id, which
    /// is only safe because one runtime drives an execution from one task.
    pub host_id: String,
    /// How long a finished (completed, failed or cancelled) execution is
    /// kept before it is deleted with its journal; `None` keeps them all.
    pub retention: Option<Duration>,
    /// Streaming executions: windows and consumer sessions.
    pub stream: StreamConfig,
    /// Tool calls started with `start-tool` that run at once on this host,
    /// across all executions; more wait for one to end (in the order they
    /// were started).
    pub max_concurrent_calls: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            budget: Budget::default(),
            lease_ttl: Duration::from_secs(30),
            inline_sleep_max: Duration::from_millis(100),
            retry_delay: Duration::from_millis(100),
            host_id: format!("host-{}", hex::encode(rand::random::<[u8; 6]>())),
            retention: Some(DEFAULT_RETENTION),
            stream: StreamConfig::default(),
            max_concurrent_calls: 1024,
        }
    }
}

/// Settings of a [`crate::WorkflowEngine`], shared by every runtime that uses it.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Instance slots kept by the pooling allocator: the most invocations
    /// that can run at once. More wait for a slot.
    pub max_instances: u32,
    /// Upper bound for [`Limits::memory_bytes`] of any runtime on this engine.
    pub max_memory_bytes: usize,
    /// Compiled components kept in memory at most; the least recently used
    /// is dropped past it (and compiled again from the store when needed).
    pub cache_components: usize,
    /// Bytes of compiled code kept in memory at most, likewise.
    pub cache_bytes: usize,
    /// Largest total size of a component's custom sections (debug info,
    /// names, producers): a component over it is refused at deploy.
    pub max_custom_section_bytes: usize,
    /// Where compiled components are kept on disk, so a process started
    /// later loads them instead of compiling (see
    /// [`crate::engine::artifacts`]); `None` keeps them in memory only.
    pub compiled_dir: Option<std::path::PathBuf>,
    /// Bytes of compiled components kept in `compiled_dir` at most (least
    /// recently used removed first); 0 keeps none.
    pub compiled_dir_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_instances: 128,
            max_memory_bytes: 1 << 30,
            cache_components: 64,
            cache_bytes: 512 << 20,
            max_custom_section_bytes: 16 << 20,
            compiled_dir: None,
            compiled_dir_bytes: 1 << 30,
        }
    }
}

/// Serde for durations written as text, e.g. `"250ms"`, `"30s"`, `"7d"`
/// (humantime's format), in config files.
pub mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `"1m 30s"`-style text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads `"250ms"`, `"30s"`, `"7d"`...
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"250ms\", \"30s\", \"5m\", \"7d\""
            ))
        })
    }
}
