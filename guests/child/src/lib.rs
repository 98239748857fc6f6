//! A child workflow. `{"echo": v}` calls `builtin/echo` with `v` (after a
//! durable `sleep_ms` if given) and returns it; `{"fail": m}` fails with
//! the message `m` (and the `code` and `details` given, if any);
//! `{"wait": name}` waits for the signal `name` and returns it.

use std::time::Duration;

use reprise_sdk::{Context, WorkflowError, workflow};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    echo: Option<Value>,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    fail: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    details: Option<Value>,
    #[serde(default)]
    wait: Option<String>,
}

#[workflow]
fn child(ctx: &Context, input: Input) -> Result<Value, WorkflowError> {
    if let Some(message) = input.fail {
        let mut error = match input.code {
            Some(code) => WorkflowError::new(code, message),
            None => message.into(),
        };
        if let Some(details) = &input.details {
            error = error.with_details(details);
        }
        return Err(error);
    }
    if let Some(name) = input.wait {
        return Ok(ctx.wait_for_signal::<Value>(&name)?);
    }
    if input.sleep_ms > 0 {
        ctx.sleep(Duration::from_millis(input.sleep_ms));
    }
    let value = input.echo.unwrap_or(Value::Null);
    Ok(ctx.call("builtin", "echo", &value)?)
}
