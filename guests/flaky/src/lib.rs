//! Calls `test/flaky` with a retry policy from its input and reports the
//! outcome: the value, or the error code and message of the last attempt.

use std::time::Duration;

use reprise_sdk::{Context, RetryPolicy, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    attempts: u32,
    #[serde(default)]
    retry_on: Vec<String>,
    #[serde(default)]
    attempt_timeout_ms: Option<u64>,
    /// Passed to the tool: how it should misbehave.
    plan: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Output {
    Ok(serde_json::Value),
    Failed { code: String, message: String },
}

#[workflow]
fn flaky(ctx: &Context, input: Input) -> Result<Output, String> {
    let mut policy = RetryPolicy::attempts(input.attempts)
        .backoff(Duration::from_millis(10), 2.0, Duration::from_millis(50))
        .retry_on(input.retry_on);
    if let Some(ms) = input.attempt_timeout_ms {
        policy = policy.attempt_timeout(Duration::from_millis(ms));
    }
    Ok(
        match ctx.call_with::<serde_json::Value>("test", "flaky", &input.plan, &policy) {
            Ok(value) => Output::Ok(value),
            Err(e) => Output::Failed {
                code: e.code,
                message: e.message,
            },
        },
    )
}
