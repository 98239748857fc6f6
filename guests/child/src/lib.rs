//! A child workflow. `{"echo": v}` calls `builtin/echo` with `v` (after a
//! durable `sleep_ms` if given) and returns it; `{"fail": m}` fails with
//! `m`; `{"wait": name}` waits for the signal `name` and returns it.

use std::time::Duration;

use reprise_sdk::{Context, workflow};
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
    wait: Option<String>,
}

#[workflow]
fn child(ctx: &Context, input: Input) -> Result<Value, String> {
    if let Some(message) = input.fail {
        return Err(message);
    }
    if let Some(name) = input.wait {
        return ctx
            .wait_for_signal::<Value>(&name)
            .map_err(|e| e.to_string());
    }
    if input.sleep_ms > 0 {
        ctx.sleep(Duration::from_millis(input.sleep_ms));
    }
    let value = input.echo.unwrap_or(Value::Null);
    ctx.call("builtin", "echo", &value)
        .map_err(|e| e.to_string())
}
