//! `reprise serve` configuration: a TOML file, then environment variables,
//! then flags, each overriding the one before (the binary applies the last
//! two). Unknown keys are errors that name the key, so a typo never turns
//! into a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{DEFAULT_RETENTION, duration_serde};
use crate::tools::http::HttpConfig;
use crate::tools::webhook::WebhookConfig;

/// Everything `reprise serve` can be told.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded store (used when `redis` is not set).
    pub data_dir: PathBuf,
    /// Memory the embedded store caches its file's pages in, at most.
    pub store_cache_bytes: usize,
    /// Redis URL; the journal store is Redis when set.
    pub redis: Option<String>,
    /// CA certificate (PEM) to trust for a `rediss://` URL.
    pub redis_ca: Option<PathBuf>,
    /// `redis` names seed nodes of a Redis Cluster (comma-separated URLs).
    pub redis_cluster: bool,
    /// How long finished executions are kept; `"0s"` keeps them.
    #[serde(with = "duration_serde")]
    pub retention: Duration,
    /// Largest component a deploy accepts, in bytes.
    pub max_component_bytes: usize,
    /// Largest total of a component's custom sections (debug info, names),
    /// in bytes: a deploy over it is refused.
    pub max_custom_section_bytes: usize,
    /// Compiled components kept in memory (least recently used dropped).
    pub component_cache: usize,
    /// Bytes of compiled code kept in memory (likewise).
    pub component_cache_bytes: usize,
    /// Where compiled components are kept between processes, so a
    /// restarted host loads them instead of compiling (default: `compiled`
    /// in `data_dir` for `serve`, the user's cache directory for `run`).
    pub compiled_dir: Option<PathBuf>,
    /// Bytes of compiled components kept there at most, least recently
    /// used removed first; 0 keeps none.
    pub compiled_dir_bytes: u64,
    /// Largest body of any other request, in bytes.
    pub max_request_bytes: usize,
    /// Time limit of a request, reading its body included (a `?wait` is
    /// capped below it).
    #[serde(with = "duration_serde")]
    pub request_timeout: Duration,
    /// Time a client has to send a request's head, and that an idle
    /// keep-alive connection is kept.
    #[serde(with = "duration_serde")]
    pub header_timeout: Duration,
    /// Connections open at once; past it, new ones wait to be accepted.
    pub max_connections: usize,
    /// Executions this host drives at once before new starts get 429.
    pub max_active: usize,
    /// On SIGTERM or Ctrl-C, how long running invocations get to reach
    /// their next journal write before they are stopped.
    #[serde(with = "duration_serde")]
    pub shutdown_grace: Duration,
    /// Bearer tokens. None configured: no authentication (and a warning
    /// unless the listen address is loopback).
    pub auth: AuthConfig,
    /// Per-invocation limits and budget.
    pub limits: LimitsConfig,
    /// Tools offered to workflows besides the built-in ones.
    pub tools: ToolsConfig,
    /// How long an invocation's lease lasts without renewal (renewed every
    /// third of it). After a host dies, its executions wait this long at
    /// most before another host may run them.
    #[serde(with = "duration_serde")]
    pub lease_ttl: Duration,
    /// The work queue shared by several hosts (Redis only).
    pub queue: QueueConfig,
    /// This host's id in leases and as its queue consumer name; unique per
    /// running host (default: random per start).
    pub host_id: Option<String>,
    /// Streaming executions: windows and consumer sessions.
    pub stream: StreamSection,
    /// Web origins (`https://app.example.com`) whose pages may call the API
    /// from a browser (CORS); `"*"` allows any. None: browsers allow only
    /// pages the host itself serves. Requests still need a token.
    pub cors_origins: Vec<String>,
    /// OpenTelemetry traces (off unless an endpoint is set).
    pub telemetry: TelemetrySection,
}

/// `[telemetry]`: where traces go (see `reprise_host::telemetry`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// The collector's OTLP/HTTP traces URL
    /// (`http://collector:4318/v1/traces`); none: no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of this host's spans.
    pub service_name: String,
    /// Longest an export to the collector may take.
    #[serde(with = "duration_serde")]
    pub export_timeout: Duration,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "reprise".into(),
            export_timeout: Duration::from_secs(10),
        }
    }
}

impl TelemetrySection {
    /// The telemetry this section asks for.
    pub fn telemetry(&self) -> Result<crate::telemetry::Telemetry, ConfigError> {
        match &self.otlp_endpoint {
            None => Ok(crate::telemetry::Telemetry::off()),
            Some(url) => {
                let parsed = reqwest::Url::parse(url).map_err(|e| {
                    ConfigError::Value(format!("telemetry.otlp_endpoint {url:?}: {e}"))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ConfigError::Value(format!(
                        "telemetry.otlp_endpoint {url:?}: use an http:// or https:// URL \
                         (OTLP over HTTP)"
                    )));
                }
                crate::telemetry::Telemetry::otlp(url, &self.service_name, self.export_timeout)
                    .map_err(|e| ConfigError::Value(e.to_string()))
            }
        }
    }
}

/// `[stream]`: how streaming executions are paced by their consumers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSection {
    /// Window of a stream whose start does not choose one (items).
    pub window: u64,
    /// Byte window of a stream whose start does not choose one (none: items only).
    pub window_bytes: Option<u64>,
    /// A consumer that has not read for this long has left.
    #[serde(with = "duration_serde")]
    pub session_ttl: Duration,
    /// How long a producer whose window is full keeps its instance before
    /// it is suspended.
    #[serde(with = "duration_serde")]
    pub hold: Duration,
}

impl Default for StreamSection {
    fn default() -> Self {
        let s = crate::config::StreamConfig::default();
        Self {
            window: s.window,
            window_bytes: s.window_bytes,
            session_ttl: s.session_ttl,
            hold: s.hold,
        }
    }
}

/// `[queue]`: take work from a Redis stream shared with other hosts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// The stream; setting it turns the queue on.
    pub stream: Option<String>,
    /// Partitions: streams the queue is split into, so a Redis Cluster
    /// spreads the queue over its nodes (see `reprise_host::queue::partition`).
    /// Raising it later keeps every message; lowering it has no effect
    /// (the queue keeps the partitions it has).
    pub partitions: usize,
    /// The consumer group every host joins.
    pub group: String,
    /// A message its host has not refreshed for this long is taken over by
    /// another host.
    #[serde(with = "duration_serde")]
    pub claim_after: Duration,
    /// Deliveries before a message goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// Messages this host works on at once.
    pub concurrency: usize,
    /// Longest time between two looks at the timers.
    #[serde(with = "duration_serde")]
    pub timer_poll: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        let o = crate::queue::QueueOptions::default();
        Self {
            stream: None,
            partitions: o.partitions,
            group: o.group,
            claim_after: o.claim_after,
            max_deliveries: o.max_deliveries,
            concurrency: o.concurrency,
            timer_poll: o.timer_poll,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        let engine = crate::config::EngineConfig::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("reprise-data"),
            store_cache_bytes: crate::store::EMBEDDED_CACHE_BYTES,
            redis: None,
            redis_ca: None,
            redis_cluster: false,
            retention: DEFAULT_RETENTION,
            max_component_bytes: 64 << 20,
            max_custom_section_bytes: engine.max_custom_section_bytes,
            component_cache: engine.cache_components,
            component_cache_bytes: engine.cache_bytes,
            compiled_dir: None,
            compiled_dir_bytes: engine.compiled_dir_bytes,
            max_request_bytes: 4 << 20,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_active: 512,
            shutdown_grace: Duration::from_secs(30),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            tools: ToolsConfig::default(),
            lease_ttl: crate::config::RuntimeConfig::default().lease_ttl,
            queue: QueueConfig::default(),
            host_id: None,
            stream: StreamSection::default(),
            cors_origins: Vec::new(),
            telemetry: TelemetrySection::default(),
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`, one per client.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// `/metrics` requires a token with the `metrics` scope (health
    /// endpoints stay open).
    #[serde(default)]
    pub metrics_token: bool,
}

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Deploy workflows.
    Deploy,
    /// Start, signal, cancel and read executions, and list workflows.
    Invoke,
    /// Read `/metrics` (when `auth.metrics_token` is set).
    Metrics,
}

/// One `[[auth.tokens]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs.
    pub name: String,
    /// The token itself. Prefer `token_env`, which keeps it out of the file.
    #[serde(default)]
    pub token: Option<String>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// What it allows.
    pub scopes: Vec<Scope>,
}

/// `[limits]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest guest memory, in MiB.
    pub memory_mib: usize,
    /// Longest a guest may run without calling the host.
    #[serde(with = "duration_serde")]
    pub time_without_progress: Duration,
    /// Instances that may run at once (pooling allocator slots).
    pub max_instances: u32,
    /// New journal entries per invocation before it is resumed in a fresh
    /// instance (none: unbounded).
    pub max_steps_per_invocation: Option<u32>,
    /// Guest log lines an invocation may write at once before lines are
    /// dropped (and counted in `reprise_guest_log_dropped_total`).
    pub log_burst: u32,
    /// Guest log lines per second the allowance refills by.
    pub log_per_second: u32,
    /// Longest guest log line kept, in bytes.
    pub log_line_bytes: usize,
    /// Most handles (started, not yet awaited) one execution may hold.
    pub max_handles: usize,
    /// Tool calls started without waiting that run at once on this host.
    pub max_concurrent_calls: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = crate::config::Limits::default();
        Self {
            memory_mib: limits.memory_bytes >> 20,
            time_without_progress: limits.time_without_progress,
            max_instances: crate::config::EngineConfig::default().max_instances,
            max_steps_per_invocation: None,
            log_burst: limits.log_burst,
            log_per_second: limits.log_per_second,
            log_line_bytes: limits.log_line_bytes,
            max_handles: limits.max_handles,
            max_concurrent_calls: crate::config::RuntimeConfig::default().max_concurrent_calls,
        }
    }
}

/// `[tools]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsConfig {
    /// `[tools.webhook.<category>]`: every call in that category is POSTed
    /// to a URL.
    #[serde(default)]
    pub webhook: BTreeMap<String, WebhookConfig>,
    /// `[tools.http]`: enables the `http/request` tool.
    #[serde(default)]
    pub http: Option<HttpConfig>,
}

/// A config that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid TOML or has a wrong or unknown key; the
    /// parser's message names the key and line.
    #[error("{0}")]
    Invalid(String),
    /// A value is out of range or inconsistent.
    #[error("config: {0}")]
    Value(String),
}

impl ServeConfig {
    /// Parses TOML text (the binary reads the file: the library reads no
    /// files but its store's).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string().trim_end().to_string()))
    }

    /// Resolves the secrets the config names by environment variable
    /// (`token_env`, `headers_from_env`) through `lookup`, which the binary
    /// gives as the process environment: the library itself never reads
    /// it, so embedders and tests decide where secrets come from. A name
    /// `lookup` does not know is an error that names it.
    pub fn resolve_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for t in &mut self.auth.tokens {
            if let (None, Some(var)) = (&t.token, &t.token_env) {
                let value = lookup(var).ok_or_else(|| {
                    ConfigError::Value(format!(
                        "auth token {:?} reads ${var}, which is not set",
                        t.name
                    ))
                })?;
                t.token = Some(value);
                t.token_env = None;
            }
        }
        for (category, hook) in &mut self.tools.webhook {
            for (name, var) in &hook.headers_from_env {
                let value = lookup(var).ok_or_else(|| {
                    ConfigError::Value(format!(
                        "webhook {category}: header {name} reads ${var}, which is not set"
                    ))
                })?;
                hook.headers.insert(name.clone(), value);
            }
        }
        Ok(())
    }

    /// Checks what parsing cannot: each token given once (by value, or by
    /// a variable [`ServeConfig::resolve_env`] resolved), long enough, with
    /// a scope.
    pub fn tokens(&self) -> Result<Vec<(String, String, Vec<Scope>)>, ConfigError> {
        let mut out = Vec::new();
        for t in &self.auth.tokens {
            let token = match (&t.token, &t.token_env) {
                (Some(tok), None) => tok.clone(),
                (None, Some(var)) => {
                    return Err(ConfigError::Value(format!(
                        "auth token {:?} reads ${var}, which is not set",
                        t.name
                    )));
                }
                _ => {
                    return Err(ConfigError::Value(format!(
                        "auth token {:?}: give exactly one of `token` and `token_env`",
                        t.name
                    )));
                }
            };
            if token.len() < 16 {
                return Err(ConfigError::Value(format!(
                    "auth token {:?} is shorter than 16 characters",
                    t.name
                )));
            }
            if t.scopes.is_empty() {
                return Err(ConfigError::Value(format!(
                    "auth token {:?} has no scopes (use \"deploy\", \"invoke\" and/or \"metrics\")",
                    t.name
                )));
            }
            out.push((t.name.clone(), token, t.scopes.clone()));
        }
        if self.auth.metrics_token
            && !out
                .iter()
                .any(|(_, _, scopes)| scopes.contains(&Scope::Metrics))
        {
            return Err(ConfigError::Value(
                "auth.metrics_token is set but no token has the \"metrics\" scope: nobody \
                 could read /metrics"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// Checks `cors_origins`: each is `*` or a bare origin (scheme, host,
    /// optional port; no path).
    pub fn cors_origins(&self) -> Result<(), ConfigError> {
        for origin in &self.cors_origins {
            let bare = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
            });
            if origin != "*" && !(bare && axum::http::HeaderValue::from_str(origin).is_ok()) {
                return Err(ConfigError::Value(format!(
                    "cors_origins: {origin:?} is not an origin like \"https://app.example.com\" \
                     (scheme and host, no path) or \"*\""
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's configuration block is a config this release reads, and
    /// the defaults it states are the defaults.
    #[test]
    fn the_readme_config_is_valid_and_states_the_defaults() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split("Every key, with its default:\n\n```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the README's config block");
        let c = ServeConfig::from_toml(block).unwrap();
        let d = ServeConfig::default();
        assert_eq!(
            (c.listen, &c.data_dir, c.retention, c.max_component_bytes),
            (d.listen, &d.data_dir, d.retention, d.max_component_bytes)
        );
        assert_eq!(
            (c.max_request_bytes, c.request_timeout, c.header_timeout),
            (d.max_request_bytes, d.request_timeout, d.header_timeout)
        );
        assert_eq!(
            (
                c.max_connections,
                c.max_active,
                c.shutdown_grace,
                c.lease_ttl
            ),
            (
                d.max_connections,
                d.max_active,
                d.shutdown_grace,
                d.lease_ttl
            )
        );
        let (l, dl) = (&c.limits, &d.limits);
        assert_eq!(
            (l.memory_mib, l.time_without_progress, l.max_instances),
            (dl.memory_mib, dl.time_without_progress, dl.max_instances)
        );
        assert_eq!(
            (l.log_burst, l.log_per_second, l.log_line_bytes),
            (dl.log_burst, dl.log_per_second, dl.log_line_bytes)
        );
        assert_eq!(
            (l.max_handles, l.max_concurrent_calls),
            (dl.max_handles, dl.max_concurrent_calls)
        );
        assert_eq!(c.auth.metrics_token, d.auth.metrics_token);
        assert_eq!(
            (
                c.max_custom_section_bytes,
                c.component_cache,
                c.component_cache_bytes
            ),
            (
                d.max_custom_section_bytes,
                d.component_cache,
                d.component_cache_bytes
            )
        );
        assert_eq!(
            (&c.compiled_dir, c.compiled_dir_bytes, c.store_cache_bytes),
            (&d.compiled_dir, d.compiled_dir_bytes, d.store_cache_bytes)
        );
        assert_eq!(
            (c.stream.window, c.stream.session_ttl, c.stream.hold),
            (d.stream.window, d.stream.session_ttl, d.stream.hold)
        );
        assert_eq!(
            (&c.queue.group, c.queue.claim_after, c.queue.max_deliveries),
            (&d.queue.group, d.queue.claim_after, d.queue.max_deliveries)
        );
        assert_eq!(
            (
                &c.telemetry.otlp_endpoint,
                &c.telemetry.service_name,
                c.telemetry.export_timeout
            ),
            (
                &d.telemetry.otlp_endpoint,
                &d.telemetry.service_name,
                d.telemetry.export_timeout
            )
        );
        assert!(c.telemetry.telemetry().is_ok_and(|t| !t.exporting()));
        let bad = ServeConfig::from_toml("[telemetry]\notlp_endpoint = \"udp://x:4318\"\n")
            .unwrap()
            .telemetry
            .telemetry()
            .err()
            .map(|e| e.to_string());
        assert!(bad.is_some_and(|e| e.contains("http://")));
        // Copied as it is, it starts: no secret to find, no tool to build.
        let mut c = c;
        c.resolve_env(|_| None).unwrap();
        crate::server::tools_from(&c.tools).unwrap();
        c.tokens().unwrap();
    }

    /// The README's examples parse, and the optional webhook keys they
    /// show are at their defaults.
    #[test]
    fn the_readme_examples_are_valid_and_state_the_webhook_defaults() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split("these are examples, with each optional key at its default:\n\n```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the README's config examples");
        let c = ServeConfig::from_toml(block).unwrap();
        let hook = &c.tools.webhook["billing"];
        let d = ServeConfig::from_toml("[tools.webhook.d]\nurl = \"http://x\"\n").unwrap();
        let dh = &d.tools.webhook["d"];
        assert_eq!(
            (hook.timeout, hook.retries, hook.backoff, hook.max_backoff),
            (dh.timeout, dh.retries, dh.backoff, dh.max_backoff)
        );
        assert_eq!(
            (hook.on_unavailable, hook.retry_for, hook.max_response_bytes),
            (dh.on_unavailable, dh.retry_for, dh.max_response_bytes)
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = ServeConfig::from_toml("listen = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
        let err = ServeConfig::from_toml("[tools.webhook.pay]\nurl = \"http://x\"\nurll = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn durations_and_defaults() {
        let c = ServeConfig::from_toml(
            "shutdown_grace = \"5s\"\n[tools.webhook.pay]\nurl = \"http://x\"\ntimeout = \"250ms\"\n",
        )
        .unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.tools.webhook["pay"].timeout, Duration::from_millis(250));
        assert_eq!(c.tools.webhook["pay"].retries, 3);
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        let err = ServeConfig::from_toml("retention = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("soon"), "{err}");
    }
}
