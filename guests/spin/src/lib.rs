//! Misbehaves: never makes progress. By default it loops forever without
//! calling the host; `{"sleep_secs": N}` blocks in a WASI sleep instead,
//! `{"log_forever": true}` calls `log` in a loop, and `{"logs": N,
//! "log_bytes": B}` writes N log lines of B bytes (with a newline inside)
//! and returns N.

use reprise_sdk::{Context, workflow};

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct How {
    sleep_secs: Option<u64>,
    log_forever: bool,
    logs: Option<u64>,
    log_bytes: usize,
}

#[workflow]
fn spin(ctx: &Context, how: Option<How>) -> Result<u64, String> {
    let how = how.unwrap_or_default();
    if let Some(secs) = how.sleep_secs {
        std::thread::sleep(std::time::Duration::from_secs(secs));
        return Ok(secs);
    }
    if let Some(n) = how.logs {
        let line = format!("forged\nINFO host: {}", "x".repeat(how.log_bytes));
        for _ in 0..n {
            ctx.info(&line);
        }
        return Ok(n);
    }
    if how.log_forever {
        loop {
            ctx.info("still here");
        }
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
        if n == 0 {
            return Ok(n);
        }
    }
}
