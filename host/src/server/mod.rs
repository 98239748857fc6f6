//! `reprise serve`: the HTTP API in front of a [`Runtime`].
//!
//! Routes are under `/v1` (see [`api`]); `/healthz`, `/readyz` and
//! `/metrics` are for operators; `/ui/` is the dashboard (see `ui`);
//! `/v1/openapi.json` describes the API and is generated from the same
//! annotations the router is built from.
//!
//! Requests are bounded three ways: body size (`max_component_bytes` for a
//! deploy, `max_request_bytes` for the rest: 413), time (`request_timeout`:
//! 503), and admission (`max_active` executions driven by this host: new
//! starts get 429 with `Retry-After` instead of queueing without bound).
//!
//! Shutdown is graceful: the host stops taking work (starts get 503, `/readyz`
//! fails, waiting requests reply 202 at once), running invocations get
//! `shutdown_grace` to reach their next journal write and suspend there,
//! and what is left is stopped. Nothing recorded is lost either way: the
//! next host to start recovers every runnable execution.

pub mod api;
pub mod body;
pub mod config;
pub mod extract;
pub mod listen;
mod openapi;
pub mod problem;
mod ui;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{Budget, EngineConfig, Limits, RuntimeConfig};
use crate::execution::{ExecutionRecord, Status};
use crate::ids::ExecutionId;
use crate::metrics::StatusLabel;
use crate::queue::QueueOptions;
use crate::runtime::{Runtime, RuntimeError};
use crate::tools::ToolRegistry;
use crate::tools::http::HttpTool;
use crate::tools::webhook::Webhook;
use config::{ConfigError, Scope, ServeConfig};
use problem::Problem;

/// How long the per-status execution counts of `/metrics` are reused:
/// counting reads every execution's status.
const COUNT_TTL: Duration = Duration::from_secs(15);

/// A configured token: the sha256 of its text (compared instead of the
/// text, so the comparison's timing says nothing about the token), its
/// name and scopes.
struct Token {
    hash: [u8; 32],
    name: String,
    scopes: Vec<Scope>,
}

/// Executions by status, when they were counted (an `Instant` for the
/// reuse, and ms since the epoch for the answer).
type Counted = (Instant, u64, HashMap<Status, u64>);

/// What every handler shares.
pub struct AppState {
    runtime: Arc<Runtime>,
    config: ServeConfig,
    tokens: Vec<Token>,
    shutting_down: watch::Sender<bool>,
    /// The last counts and when they were taken. An async lock, held while
    /// counting, so concurrent scrapes wait for one count and share it.
    counts: tokio::sync::Mutex<Option<Counted>>,
}

impl AppState {
    /// Checks the bearer token against `scope`. With no tokens configured,
    /// everything is allowed.
    fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<(), Problem> {
        let token = self.token(headers)?;
        match token {
            None => Ok(()),
            Some(t) if t.scopes.contains(&scope) => Ok(()),
            Some(t) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "The token does not allow this",
                format!(
                    "token {:?} lacks the {:?} scope this request needs",
                    t.name,
                    format!("{scope:?}").to_lowercase()
                ),
            )),
        }
    }

    /// Any valid token will do (reads of deployments).
    fn authorize_any(&self, headers: &HeaderMap) -> Result<(), Problem> {
        self.token(headers).map(|_| ())
    }

    fn token(&self, headers: &HeaderMap) -> Result<Option<&Token>, Problem> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Problem::unauthorized(
                "this host requires a bearer token: send `Authorization: Bearer <token>`",
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let hash: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        self.tokens
            .iter()
            .find(|t| t.hash == hash)
            .map(Some)
            .ok_or_else(|| Problem::unauthorized("the bearer token is not valid on this host"))
    }

    /// Admission control for new starts.
    fn admit(&self) -> Result<(), Problem> {
        if *self.shutting_down.borrow() || self.runtime.is_draining() {
            return Err(Problem::shutting_down());
        }
        let active = self.runtime.active_executions();
        if active >= self.config.max_active {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "saturated",
                "The host is saturated",
                format!(
                    "this host is driving {active} executions (max_active = {}); retry later",
                    self.config.max_active
                ),
            )
            .retry_after(1));
        }
        Ok(())
    }

    /// Waits up to `wait` (capped below the request timeout) until the
    /// execution ends or waits for a signal, or the host shuts down.
    async fn wait_settled(
        &self,
        id: &ExecutionId,
        wait: Duration,
    ) -> Result<ExecutionRecord, RuntimeError> {
        let settled = self.runtime.wait_until(id, ExecutionRecord::is_settled);
        self.wait_for(id, wait, settled).await
    }

    /// Waits for `settled` (a wait until `id` settles) for up to `wait`
    /// (capped below the request timeout) or until the host shuts down,
    /// then reads the record if it has not settled.
    async fn wait_for(
        &self,
        id: &ExecutionId,
        wait: Duration,
        settled: impl Future<Output = Result<ExecutionRecord, RuntimeError>>,
    ) -> Result<ExecutionRecord, RuntimeError> {
        let wait = api::cap_wait(wait, self.config.request_timeout);
        let mut shutdown = self.shutting_down.subscribe();
        // `wait_for` yields a borrow guard that must not live across an await.
        let shutting_down = async move {
            let _ = shutdown.wait_for(|down| *down).await;
        };
        tokio::select! {
            r = settled => r,
            _ = tokio::time::sleep(wait) => self.runtime.status(id).await,
            _ = shutting_down => self.runtime.status(id).await,
        }
    }

    /// Executions in the store by status, counted at most every `max_age`
    /// ([`COUNT_TTL`] for `/metrics`, a second for the API) and by one
    /// request at a time (others wait for it and share its result), with
    /// when they were counted. The store counts without decoding records,
    /// so a count costs the same whatever the records hold.
    async fn counts(&self, max_age: Duration) -> Result<(HashMap<Status, u64>, u64), RuntimeError> {
        let mut cached = self.counts.lock().await;
        if let Some((at, at_ms, counts)) = &*cached
            && at.elapsed() < max_age
        {
            return Ok((counts.clone(), *at_ms));
        }
        let counts = self.runtime.store().count_by_status().await?;
        let at_ms = crate::store::now_ms();
        *cached = Some((Instant::now(), at_ms, counts.clone()));
        Ok((counts, at_ms))
    }
}

/// The tools `config` asks for, besides the built-in ones.
pub fn tools_from(config: &config::ToolsConfig) -> Result<ToolRegistry, ConfigError> {
    let mut tools = ToolRegistry::with_builtins();
    for (category, hook) in &config.webhook {
        if matches!(category.as_str(), "builtin" | "demo" | "http") {
            return Err(ConfigError::Value(format!(
                "webhook category {category:?} is reserved for the built-in tools"
            )));
        }
        tools.register_category(
            category.clone(),
            Webhook::new(category, hook.clone()).map_err(|e| ConfigError::Value(e.0))?,
        );
    }
    if let Some(http) = &config.http {
        tools.register(
            "http",
            "request",
            HttpTool::new(http.clone()).map_err(|e| ConfigError::Value(e.0))?,
        );
    }
    Ok(tools)
}

/// The engine settings `config` asks for.
pub fn engine_config(config: &ServeConfig) -> EngineConfig {
    EngineConfig {
        max_instances: config.limits.max_instances,
        max_memory_bytes: (config.limits.memory_mib << 20)
            .max(EngineConfig::default().max_memory_bytes),
        cache_components: config.component_cache,
        cache_bytes: config.component_cache_bytes,
        max_custom_section_bytes: config.max_custom_section_bytes,
        compiled_dir: config.compiled_dir.clone(),
        compiled_dir_bytes: config.compiled_dir_bytes,
    }
}

/// The runtime settings `config` asks for.
pub fn runtime_config(config: &ServeConfig) -> RuntimeConfig {
    RuntimeConfig {
        limits: Limits {
            memory_bytes: config.limits.memory_mib << 20,
            time_without_progress: config.limits.time_without_progress,
            log_burst: config.limits.log_burst,
            log_per_second: config.limits.log_per_second,
            log_line_bytes: config.limits.log_line_bytes,
            max_handles: config.limits.max_handles.max(1),
            ..Limits::default()
        },
        max_concurrent_calls: config.limits.max_concurrent_calls.max(1),
        budget: Budget {
            max_steps: config.limits.max_steps_per_invocation,
            max_time: None,
        },
        retention: (!config.retention.is_zero()).then_some(config.retention),
        lease_ttl: config.lease_ttl,
        stream: crate::config::StreamConfig {
            window: config.stream.window.max(1),
            window_bytes: config.stream.window_bytes.filter(|b| *b > 0),
            session_ttl: config.stream.session_ttl,
            hold: config.stream.hold,
        },
        host_id: config
            .host_id
            .clone()
            .unwrap_or_else(|| RuntimeConfig::default().host_id),
        ..RuntimeConfig::default()
    }
}

/// The work queue settings `config` asks for, if it turns the queue on.
pub fn queue_options(config: &ServeConfig) -> Result<Option<QueueOptions>, ConfigError> {
    let q = &config.queue;
    let Some(stream) = &q.stream else {
        return Ok(None);
    };
    if config.redis.is_none() {
        return Err(ConfigError::Value(format!(
            "the queue (stream {stream:?}) needs the Redis store: set `redis` or --redis"
        )));
    }
    if q.concurrency == 0 || q.max_deliveries == 0 || q.claim_after.is_zero() {
        return Err(ConfigError::Value(
            "queue: concurrency, max_deliveries and claim_after must be above zero".into(),
        ));
    }
    let most = crate::queue::partition::MAX_PARTITIONS;
    if !(1..=most).contains(&q.partitions) || q.concurrency < q.partitions {
        return Err(ConfigError::Value(format!(
            "queue: partitions must be 1 to {most} and at most concurrency (every partition's \
             reader needs room for a message), got partitions = {} and concurrency = {}",
            q.partitions, q.concurrency
        )));
    }
    Ok(Some(QueueOptions {
        stream: stream.clone(),
        partitions: q.partitions,
        group: q.group.clone(),
        claim_after: q.claim_after,
        max_deliveries: q.max_deliveries,
        concurrency: q.concurrency,
        timer_poll: q.timer_poll,
        ..QueueOptions::default()
    }))
}

/// A configured HTTP front end for a runtime.
pub struct Server {
    state: Arc<AppState>,
}

/// The CORS layer for `origins` (checked by [`ServeConfig::cors_origins`]);
/// none without any, so the API answers exactly as before and browsers
/// keep other origins' pages out. A preflight is answered before routing
/// and authentication, as browsers send it without the token.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            axum::http::HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600));
    Some(layer)
}

impl Server {
    /// A server for `runtime`, configured by `config` (its store, engine
    /// and tool settings are the caller's business: see [`tools_from`],
    /// [`engine_config`], [`runtime_config`]).
    pub fn new(config: ServeConfig, runtime: Arc<Runtime>) -> Result<Self, ConfigError> {
        config.cors_origins()?;
        let tokens = config
            .tokens()?
            .into_iter()
            .map(|(name, token, scopes)| Token {
                hash: Sha256::digest(token.as_bytes()).into(),
                name,
                scopes,
            })
            .collect::<Vec<_>>();
        if tokens.is_empty() && !config.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %config.listen,
                "no auth tokens are configured, and the API listens beyond this machine: anyone \
                 who can reach it can deploy and run code; configure [[auth.tokens]]"
            );
        }
        Ok(Self {
            state: Arc::new(AppState {
                runtime,
                config,
                tokens,
                shutting_down: watch::channel(false).0,
                counts: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The router and the OpenAPI document it serves.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let deploy = OpenApiRouter::new()
            .routes(routes!(api::workflows::deploy))
            .layer(DefaultBodyLimit::max(state.config.max_component_bytes))
            .layer(axum::middleware::from_fn_with_state(
                state.config.max_component_bytes,
                body::declared_length,
            ));
        let rest = OpenApiRouter::new()
            .routes(routes!(api::workflows::list_workflows))
            .routes(routes!(api::workflows::get_workflow))
            .routes(routes!(api::executions::start))
            .routes(routes!(api::executions::list_executions))
            .routes(routes!(
                api::executions::get_execution,
                api::executions::cancel
            ))
            .routes(routes!(api::executions::journal))
            .routes(routes!(api::items::items))
            .routes(routes!(
                api::sessions::open_session,
                api::sessions::list_sessions
            ))
            .routes(routes!(api::sessions::close_session))
            .routes(routes!(api::executions::signal))
            .routes(routes!(api::inspect::counts))
            .routes(routes!(api::inspect::replay))
            .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
            .layer(axum::middleware::from_fn_with_state(
                state.config.max_request_bytes,
                body::declared_length,
            ));
        let (router, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
            .merge(deploy)
            .merge(rest)
            .split_for_parts();
        openapi::complete(&mut doc);
        let doc = Arc::new(doc);
        let router = router
            .route(
                "/v1/openapi.json",
                get(move || {
                    let doc = doc.clone();
                    async move { axum::Json(doc.as_ref().clone()) }
                }),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .merge(ui::routes())
            .fallback(|req: Request| async move { Problem::no_route(req.uri().path()) })
            .method_not_allowed_fallback(|req: Request| async move {
                Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    "Method not allowed",
                    format!("{} is not allowed on {}", req.method(), req.uri().path()),
                )
            })
            .layer(axum::middleware::from_fn_with_state(state.clone(), timeout))
            .layer(axum::middleware::from_fn(body::drain_unread));
        match cors(&state.config.cors_origins) {
            Some(cors) => router.layer(cors).with_state(state),
            None => router.with_state(state),
        }
    }

    /// Serves on `listener` until `shutdown` completes, then shuts down
    /// gracefully (see the module docs). Returns once the runtime's tasks
    /// have stopped.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let router = self.router();
        let (begin_tx, begin_rx) = tokio::sync::oneshot::channel::<()>();
        let http = listen::serve(
            listener,
            router,
            listen::ConnLimits {
                header_timeout: state.config.header_timeout,
                max_connections: state.config.max_connections,
            },
            state.shutting_down.subscribe(),
        );
        let watcher = {
            let state = state.clone();
            async move {
                shutdown.await;
                tracing::info!(
                    grace = ?state.config.shutdown_grace,
                    "shutting down: taking no new work, letting invocations reach their next step"
                );
                state.shutting_down.send_replace(true);
                let left = state.runtime.drain(state.config.shutdown_grace).await;
                if left > 0 {
                    tracing::warn!(
                        left,
                        "invocations still running after the grace period were stopped; they \
                         resume from their last recorded step"
                    );
                }
                let _ = begin_tx.send(());
            }
        };
        let watcher = tokio::spawn(watcher);
        let served = http.await;
        // The HTTP side only stops after the drain began; wait for it to end.
        let _ = begin_rx.await;
        let _ = watcher.await;
        served
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if *state.shutting_down.borrow() {
        return Problem::shutting_down().into_response();
    }
    match state.runtime.store().get_deployment("-").await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if state.config.auth.metrics_token
        && let Err(p) = state.authorize(&headers, Scope::Metrics)
    {
        return p.into_response();
    }
    let m = state.runtime.metrics();
    match state.counts(COUNT_TTL).await {
        Ok((counts, _)) => {
            for status in [
                Status::Running,
                Status::Suspended,
                Status::Completed,
                Status::Failed,
                Status::Cancelled,
            ] {
                m.executions
                    .get_or_create(&StatusLabel {
                        status: status.as_str().to_string(),
                    })
                    .set(counts.get(&status).copied().unwrap_or(0) as i64);
            }
        }
        Err(e) => tracing::warn!("cannot count executions for /metrics: {e}"),
    }
    if let Some(queue) = state.runtime.queue() {
        let depth = [
            ("pending", queue.pending().await),
            ("stream", queue.stream_len().await),
            ("timers", queue.timers().await),
        ];
        for (kind, n) in depth {
            match n {
                Ok(n) => {
                    m.queue_depth
                        .get_or_create(&crate::metrics::KindLabel {
                            kind: kind.to_string(),
                        })
                        .set(n as i64);
                }
                Err(e) => tracing::warn!("cannot read the queue depth for /metrics: {e}"),
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

/// Bounds every request by `request_timeout`.
async fn timeout(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The request took too long",
            format!("the request did not complete within {limit:?} (request_timeout)"),
        )
        .retry_after(1)
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_needs_redis_and_sane_numbers() {
        let mut c = ServeConfig::from_toml("[queue]\nstream = \"q\"\n").unwrap();
        let err = queue_options(&c).unwrap_err().to_string();
        assert!(err.contains("needs the Redis store"), "{err}");
        c.redis = Some("redis://127.0.0.1".into());
        let o = queue_options(&c).unwrap().unwrap();
        assert_eq!((o.stream.as_str(), o.group.as_str()), ("q", "reprise"));
        c.queue.concurrency = 0;
        assert!(queue_options(&c).is_err());
        assert!(queue_options(&ServeConfig::default()).unwrap().is_none());
    }
}
