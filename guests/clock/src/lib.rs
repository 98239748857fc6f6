//! Reads the time and random numbers through std (WASI) and through the SDK,
//! around journaled steps. Each reading is sent through `builtin/echo`, so
//! the journal records it; a replay that read different values would make a
//! different call and fail with nondeterminism, and the workflow also checks
//! the echoed (recorded) values against what it reads now.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use reprise_sdk::{Context, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    rounds: u32,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Reading {
    wall_ns: u64,
    mono_ns: u64,
    random: [u8; 16],
    hash_seeded: u64,
    sdk_now_ms: u64,
    sdk_random: u64,
}

fn read(ctx: &Context, origin: Instant) -> Reading {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("wasi random");
    let hash_seeded = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(1);
        h.finish()
    };
    Reading {
        wall_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64,
        mono_ns: origin.elapsed().as_nanos() as u64,
        random,
        hash_seeded,
        sdk_now_ms: ctx
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        sdk_random: ctx.random(),
    }
}

#[workflow]
fn clock(ctx: &Context, input: Input) -> Result<Vec<Reading>, String> {
    let origin = Instant::now();
    let mut readings = Vec::new();
    for round in 0..input.rounds {
        let reading = read(ctx, origin);
        let echoed: Reading = ctx
            .call("builtin", "echo", &reading)
            .map_err(|e| e.to_string())?;
        if echoed != reading {
            return Err(format!(
                "round {round}: replay read {reading:?} but the journal recorded {echoed:?}"
            ));
        }
        readings.push(reading);
    }
    Ok(readings)
}
