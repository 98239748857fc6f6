//! Emits `n` items `{i, pad}` (`pad` is `size` bytes) to its output stream,
//! optionally sleeping `sleep_ms` (a durable timer) before each, and fails
//! after the last item if `fail` is set. Returns how many it emitted.

use std::time::Duration;

use reprise_sdk::{Context, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    n: u32,
    #[serde(default)]
    size: usize,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    fail: bool,
}

#[derive(Serialize)]
struct Item<'a> {
    i: u32,
    pad: &'a str,
}

#[workflow]
fn producer(ctx: &Context, input: Input) -> Result<u32, String> {
    let pad = "x".repeat(input.size);
    for i in 0..input.n {
        if input.sleep_ms > 0 {
            ctx.sleep(Duration::from_millis(input.sleep_ms));
        }
        ctx.emit(&Item { i, pad: &pad });
    }
    if input.fail {
        return Err(format!("failed after {} items", input.n));
    }
    Ok(input.n)
}
