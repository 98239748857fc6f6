//! `n` echo steps through `builtin/echo`, each with a payload of `size`
//! bytes; optionally a checkpoint between steps. Checks every echo and
//! returns a checksum, so a wrong replayed value fails the run.

use reprise_sdk::{Context, ToolError, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    n: u32,
    #[serde(default)]
    size: usize,
}

#[derive(Serialize)]
struct Output {
    steps: u32,
    checksum: u64,
}

#[workflow]
fn steps(ctx: &Context, input: Input) -> Result<Output, String> {
    let mut checksum = 0u64;
    for i in 0..input.n {
        let payload: Vec<u8> = (0..input.size).map(|j| (i as usize + j) as u8).collect();
        let echoed: (u32, Vec<u8>) = ctx
            .call("builtin", "echo", &(i, &payload))
            .map_err(|e: ToolError| format!("step {i}: {e}"))?;
        if echoed.0 != i || echoed.1 != payload {
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
