//! Fetches one large raw value from `test/blob` (the host's test tool), then
//! makes a second step, and returns the value's length and a checksum. With
//! a one-step budget the second invocation replays the large value.

use reprise_sdk::{Context, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    size: u64,
}

#[derive(Serialize)]
struct Output {
    len: u64,
    checksum: u64,
}

#[workflow]
fn bigresult(ctx: &Context, input: Input) -> Result<Output, String> {
    let value = ctx
        .call_raw("test", "blob", &input.size.to_le_bytes())
        .map_err(|e| format!("test/blob: {e}"))?;
    let checksum = checksum(&value);
    let len = value.len() as u64;
    drop(value);
    ctx.checkpoint();
    Ok(Output { len, checksum })
}

/// FNV-1a over the bytes.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
