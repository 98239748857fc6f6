//! Webhook tools: a category whose every call is an HTTP POST to a URL the
//! operator configures.
//!
//! The host POSTs JSON `{name, input, idempotency_key, execution_id}` (and
//! the same key in an `Idempotency-Key` header), so the receiver can make the
//! at-least-once retries of a step safe; a traced execution's call also
//! carries the step's W3C `traceparent` header (see [`crate::telemetry`]).
//! The reply decides the step:
//!
//! - `2xx`: the JSON body (or `null` if empty) is the step result;
//! - `4xx` other than 408 and 429: a tool error the workflow sees. A body
//!   `{code, message, details?}` gives its fields; otherwise the code is
//!   `http-<status>` and the message the start of the body;
//! - `408`, `429`, `5xx`, a timeout or a connection failure: retried with
//!   exponential backoff (capped at `max_backoff`). What happens when the
//!   webhook stays down is `on_unavailable`'s choice: `fail` (the default)
//!   ends the call after `retries` more attempts with a tool error of code
//!   `unavailable` (or `timeout`) naming the last failure, which the
//!   workflow sees and the journal records like any result; `retry` keeps
//!   trying until `retry_for` has passed since the first failure (then it
//!   fails the same way), so an outage shorter than that costs only time.
//!   Either way nothing is journaled until the call ends, each failed
//!   attempt is logged at warn, and the execution's status shows the call
//!   retrying (see [`super::attempts`]).
//!
//! Redirects are not followed: a webhook URL is configured, not discovered.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;

use super::builtin::{decode, encode};
use super::{Tool, ToolCall, ToolConfigError, ToolError};
use crate::config::duration_serde;

/// Largest reply body read from a webhook or an HTTP request.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

/// One webhook category, as configured under `[tools.webhook.<category>]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where calls are POSTed (`http://` or `https://`).
    pub url: String,
    /// Time limit of one attempt.
    #[serde(default = "default_timeout", with = "duration_serde")]
    pub timeout: Duration,
    /// Attempts after the first, for retriable failures.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Delay before the first retry; doubles each time, up to 10 s.
    #[serde(default = "default_backoff", with = "duration_serde")]
    pub backoff: Duration,
    /// Headers whose values are read from environment variables when the
    /// host starts: `{ "Authorization" = "PAYMENTS_TOKEN" }` sends the
    /// value of `$PAYMENTS_TOKEN`. Secrets stay out of the config file.
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
    /// The values of `headers_from_env`, by header name, as
    /// `ServeConfig::resolve_env` resolved them (never read from a file).
    #[serde(skip)]
    pub headers: BTreeMap<String, String>,
    /// Largest reply body accepted, in bytes.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// What a call does when the webhook stays unavailable.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// With `on_unavailable = "retry"`: how long after its first failure a
    /// call keeps trying.
    #[serde(default = "default_retry_for", with = "duration_serde")]
    pub retry_for: Duration,
    /// Longest wait between two attempts.
    #[serde(default = "default_max_backoff", with = "duration_serde")]
    pub max_backoff: Duration,
}

/// What a webhook call does when the webhook stays unavailable (`408`,
/// `429`, `5xx`, timeouts, failed connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// After `retries` more attempts, the call's result is the tool error
    /// `unavailable` (or `timeout`): recorded, and seen by the workflow.
    #[default]
    Fail,
    /// Keep the execution waiting and try again until `retry_for` has
    /// passed since the first failure, then fail as `Fail` does.
    Retry,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_retry_for() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_max_response() -> usize {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// A webhook category's tool.
pub struct Webhook {
    config: WebhookConfig,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    client: reqwest::Client,
}

/// What went wrong with one attempt, and whether another may succeed.
enum Attempt {
    Done(Result<Vec<u8>, ToolError>),
    Retry { code: &'static str, reason: String },
}

impl Webhook {
    /// A webhook tool for `config`; fails if the URL is invalid or a header
    /// of `headers_from_env` was not resolved.
    pub fn new(category: &str, config: WebhookConfig) -> Result<Self, ToolConfigError> {
        Self::build(category, config).map_err(ToolConfigError)
    }

    fn build(category: &str, config: WebhookConfig) -> Result<Self, String> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| format!("webhook {category}: invalid url {:?}: {e}", config.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "webhook {category}: url {:?} must be http:// or https://",
                config.url
            ));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, var) in &config.headers_from_env {
            let value = config.headers.get(name).ok_or_else(|| {
                format!("webhook {category}: header {name} reads ${var}, which is not set")
            })?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("webhook {category}: bad header name {name:?}: {e}"))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| format!("webhook {category}: bad value in ${var}: {e}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("webhook {category}: cannot build an HTTP client: {e}"))?;
        Ok(Self {
            config,
            url,
            headers,
            client,
        })
    }

    async fn attempt(
        &self,
        body: &serde_json::Value,
        key: &str,
        traceparent: Option<&str>,
    ) -> Attempt {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header("Idempotency-Key", key);
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let sent = request.json(body).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Attempt::Retry {
                    code: "timeout",
                    reason: format!("no reply within {:?}", self.config.timeout),
                };
            }
            Err(e) => {
                return Attempt::Retry {
                    code: "unavailable",
                    reason: format!("request failed: {}", error_chain(&e)),
                };
            }
        };
        let status = response.status();
        let body = match read_limited(response, self.config.max_response_bytes).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Attempt::Done(Err(ToolError::new(
                    "too-large",
                    format!(
                        "the webhook replied with more than {} bytes",
                        self.config.max_response_bytes
                    ),
                )));
            }
            Err(BodyError::Failed(e)) if e.is_timeout() => {
                return Attempt::Retry {
                    code: "timeout",
                    reason: format!("reply not read within {:?}", self.config.timeout),
                };
            }
            Err(BodyError::Failed(e)) => {
                return Attempt::Retry {
                    code: "unavailable",
                    reason: format!("reading the reply failed: {}", error_chain(&e)),
                };
            }
        };
        if status.is_success() {
            let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
                serde_json::Value::Null
            } else {
                match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        return Attempt::Done(Err(ToolError::new(
                            "bad-reply",
                            format!(
                                "the webhook replied {status} with a body that is not JSON: {e}"
                            ),
                        )));
                    }
                }
            };
            return Attempt::Done(encode(&value));
        }
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            return Attempt::Retry {
                code: "unavailable",
                reason: format!("the webhook replied {status}"),
            };
        }
        Attempt::Done(Err(tool_error_from(status, &body)))
    }
}

/// The tool error for a `4xx` reply.
fn tool_error_from(status: StatusCode, body: &[u8]) -> ToolError {
    #[derive(Deserialize)]
    struct Reported {
        code: String,
        message: String,
        #[serde(default)]
        details: Option<serde_json::Value>,
    }
    if let Ok(r) = serde_json::from_slice::<Reported>(body) {
        return ToolError {
            code: r.code,
            message: r.message,
            details: r.details.and_then(|d| rmp_serde::to_vec_named(&d).ok()),
        };
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    ToolError::new(
        format!("http-{}", status.as_u16()),
        format!("the webhook replied {status}: {}", text.trim()),
    )
}

/// An error and its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

pub(crate) enum BodyError {
    TooLarge,
    Failed(reqwest::Error),
}

/// Reads a reply body, refusing one longer than `max` bytes without
/// buffering more than that.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Failed)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl Tool for Webhook {
    async fn call(&self, call: ToolCall) -> Result<Vec<u8>, ToolError> {
        let input: serde_json::Value = decode(&call.input)?;
        let key = call.idempotency_key.to_string();
        let body = serde_json::json!({
            "name": call.name,
            "input": input,
            "idempotency_key": key,
            "execution_id": call.idempotency_key.execution.as_str(),
        });
        let mut delay = self.config.backoff;
        let mut attempt = 0;
        let first_failure = std::time::Instant::now();
        let host = self.url.host_str().unwrap_or("?");
        loop {
            match self.attempt(&body, &key, call.traceparent.as_deref()).await {
                Attempt::Done(result) => return result,
                Attempt::Retry { code, reason } => {
                    attempt += 1;
                    let give_up = match self.config.on_unavailable {
                        OnUnavailable::Fail => attempt > self.config.retries,
                        // No wait that would end past the deadline.
                        OnUnavailable::Retry => {
                            first_failure.elapsed() + delay > self.config.retry_for
                        }
                    };
                    let error = ToolError::new(
                        code,
                        format!(
                            "webhook {host} failed after {attempt} attempt{}: {reason}",
                            if attempt == 1 { "" } else { "s" }
                        ),
                    );
                    if give_up {
                        return Err(error);
                    }
                    call.attempts.failed(attempt, &error, delay);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.max_backoff);
                }
            }
        }
    }
}
