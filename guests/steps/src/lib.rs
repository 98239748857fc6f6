//! `n` echo steps through `builtin/echo`, each with a payload of `size`
//! bytes, one after the other or (`parallel`) all started at once and then
//! joined. Checks every echo and returns a checksum, so a wrong replayed
//! value fails the run.

use std::sync::atomic::{AtomicU32, Ordering};

use reprise_sdk::{Context, ToolError, workflow};
use serde::{Deserialize, Serialize};

/// Workflows this instance has run. Every invocation gets a fresh instance
/// (the host resets a pooled slot's memory to the component's image), so
/// this is 0 whenever a run starts; a slot reused without that reset fails
/// the run.
static RUNS: AtomicU32 = AtomicU32::new(0);

#[derive(Deserialize)]
struct Input {
    n: u32,
    #[serde(default)]
    size: usize,
    #[serde(default)]
    parallel: bool,
}

#[derive(Serialize)]
struct Output {
    steps: u32,
    checksum: u64,
}

#[workflow]
fn steps(ctx: &Context, input: Input) -> Result<Output, String> {
    if RUNS.fetch_add(1, Ordering::Relaxed) != 0 {
        return Err("this instance ran a workflow before".into());
    }
    let payload = |i: u32| -> Vec<u8> { (0..input.size).map(|j| (i as usize + j) as u8).collect() };
    let echoes: Vec<Result<(u32, Vec<u8>), ToolError>> = if input.parallel {
        let calls = (0..input.n)
            .map(|i| ctx.start("builtin", "echo", &(i, &payload(i))))
            .collect();
        ctx.join_all(calls)
    } else {
        (0..input.n)
            .map(|i| ctx.call("builtin", "echo", &(i, &payload(i))))
            .collect()
    };
    let mut checksum = 0u64;
    for (i, echoed) in (0..input.n).zip(echoes) {
        let echoed = echoed.map_err(|e| format!("step {i}: {e}"))?;
        if echoed.0 != i || echoed.1 != payload(i) {
            return Err(format!("step {i}: echo returned something else"));
        }
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(u64::from(i) + echoed.1.len() as u64);
    }
    Ok(Output {
        steps: input.n,
        checksum,
    })
}
