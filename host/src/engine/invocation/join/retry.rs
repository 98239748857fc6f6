//! The retry policy of a started tool call: attempts, backoff, a timeout
//! per attempt, which codes are worth another attempt. Attempts run inside
//! the call's task; none is a journal entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::bindings;
use crate::journal::ToolFailure;
use crate::metrics::{CategoryLabel, Metrics};
use crate::tools::{Tool, ToolCall};

/// A checked [`bindings::RetryPolicy`].
#[derive(Clone, Debug)]
pub(crate) struct Retry {
    max_attempts: u32,
    initial_backoff: Duration,
    factor: f64,
    max_backoff: Duration,
    attempt_timeout: Option<Duration>,
    retry_on: Vec<String>,
}

impl Retry {
    /// One attempt, no timeout: a call without a policy.
    fn once() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: Duration::ZERO,
            factor: 1.0,
            max_backoff: Duration::ZERO,
            attempt_timeout: None,
            retry_on: Vec::new(),
        }
    }

    /// The policy the guest asked for, or why it makes no sense.
    pub(crate) fn new(policy: Option<bindings::RetryPolicy>) -> Result<Self, String> {
        let Some(p) = policy else {
            return Ok(Self::once());
        };
        if p.max_attempts == 0 {
            return Err("a retry policy's max-attempts must be at least 1".into());
        }
        if !(p.backoff_factor >= 1.0 && p.backoff_factor.is_finite()) {
            return Err(format!(
                "a retry policy's backoff-factor must be a finite number of at least 1.0, not {}",
                p.backoff_factor
            ));
        }
        if p.attempt_timeout_ms == Some(0) {
            return Err("a retry policy's attempt-timeout-ms must be above 0".into());
        }
        Ok(Self {
            max_attempts: p.max_attempts,
            initial_backoff: Duration::from_millis(p.initial_backoff_ms),
            factor: p.backoff_factor,
            max_backoff: Duration::from_millis(p.max_backoff_ms),
            attempt_timeout: p.attempt_timeout_ms.map(Duration::from_millis),
            retry_on: p.retry_on,
        })
    }

    fn retriable(&self, code: &str) -> bool {
        self.retry_on.is_empty() || self.retry_on.iter().any(|c| c == code)
    }
}

/// Runs one tool call with its retry policy: attempts are not journaled,
/// and every attempt has the same idempotency key.
pub(super) async fn call_with_retry(
    tool: Arc<dyn Tool>,
    call: ToolCall,
    retry: Retry,
    metrics: Arc<Metrics>,
) -> (Result<Vec<u8>, ToolFailure>, u32) {
    let mut backoff = retry.initial_backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let started = Instant::now();
        let attempt = tool.call(call.clone());
        let result = match retry.attempt_timeout {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(ToolFailure {
                        code: "timeout".into(),
                        message: format!(
                            "attempt {attempts} of {}/{} took longer than {limit:?}",
                            call.category, call.name
                        ),
                        details: None,
                    })
                }),
            None => attempt.await,
        };
        metrics
            .tool_seconds
            .get_or_create(&CategoryLabel {
                category: call.category.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Err(e) if attempts < retry.max_attempts && retry.retriable(&e.code) => {
                call.attempts.failed(attempts, e, backoff);
                tokio::time::sleep(backoff).await;
                backoff = backoff.mul_f64(retry.factor).min(retry.max_backoff);
            }
            _ => return (result, attempts),
        }
    }
}
