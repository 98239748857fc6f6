//! Uses the handle imports wrongly, one way per `mode`, through the raw
//! bindings (the SDK's types rule these out): the host must fail this
//! execution alone, with a clear message.

use reprise_sdk::__private::bindings::reprise::workflow::{host, types};
use reprise_sdk::{Context, workflow};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    mode: String,
    #[serde(default)]
    n: u32,
}

#[workflow]
fn misuse(_ctx: &Context, input: Input) -> Result<u32, String> {
    match input.mode.as_str() {
        // A handle never started.
        "unknown" => {
            host::await_any(&[999_999]);
        }
        // A handle awaited twice.
        "twice" => {
            let h = host::start_timer(1);
            host::await_any(&[h]);
            host::await_any(&[h]);
        }
        // A handle listed twice in one await-all.
        "all_twice" => {
            let h = host::start_timer(1);
            host::await_all(&[h, h]);
        }
        // Nothing to await.
        "empty" => {
            host::await_any(&[]);
        }
        // More handles than allowed, never awaited.
        "many" => {
            for _ in 0..input.n {
                host::start_timer(3_600_000);
            }
        }
        // A retry policy that makes no sense.
        "zero_attempts" => {
            let policy = types::RetryPolicy {
                max_attempts: 0,
                initial_backoff_ms: 0,
                backoff_factor: 2.0,
                max_backoff_ms: 0,
                attempt_timeout_ms: None,
                retry_on: Vec::new(),
            };
            host::start_tool("builtin", "echo", &[0xc0], Some(&policy));
        }
        other => return Err(format!("unknown mode {other}")),
    }
    Ok(input.n)
}
