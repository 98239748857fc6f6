//! Sleeps on a durable timer, then waits for the signal `approve`.

use std::time::Duration;

use reprise_sdk::{Context, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    sleep_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Approval {
    by: String,
}

#[derive(Serialize)]
struct Output {
    approved_by: String,
    slept_ms: u64,
}

#[workflow]
fn signals(ctx: &Context, input: Input) -> Result<Output, String> {
    let before = ctx.now();
    ctx.sleep(Duration::from_millis(input.sleep_ms));
    let after = ctx.now();
    let approval: Approval = ctx.wait_for_signal("approve").map_err(|e| e.to_string())?;
    let slept = after.duration_since(before).unwrap_or_default();
    Ok(Output {
        approved_by: approval.by,
        slept_ms: slept.as_millis() as u64,
    })
}
