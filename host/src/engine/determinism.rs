//! Deterministic WASI clocks and random numbers.
//!
//! A workflow that reads the time or random numbers through std (WASI) must
//! see the same values when it is replayed. The host provides:
//!
//! - a wall clock that reads the timestamp of the latest journal entry the
//!   guest has reached (the execution's creation time before the first one).
//!   Code between two journal entries is deterministic, so every reading is
//!   the same on replay. After a `sleep` the clock reads the wake time.
//! - a monotonic clock derived from it, that also advances by 1 ns per reading
//!   so it is strictly increasing.
//! - random generators seeded from a per-execution seed stored with the
//!   execution; replay restarts them from the seed, so they yield the same
//!   sequence.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// The clock state an invocation advances as it walks the journal.
pub(crate) struct JournalClock {
    wall_ns: AtomicU64,
    mono_ns: AtomicU64,
    origin_ns: u64,
}

impl JournalClock {
    pub(crate) fn new(origin_ms: u64) -> Arc<Self> {
        let origin_ns = origin_ms.saturating_mul(1_000_000);
        Arc::new(Self {
            wall_ns: AtomicU64::new(origin_ns),
            mono_ns: AtomicU64::new(0),
            origin_ns,
        })
    }

    /// Moves the clock to `ms` (never backwards).
    pub(crate) fn advance_to(&self, ms: u64) {
        self.wall_ns
            .fetch_max(ms.saturating_mul(1_000_000), Ordering::Relaxed);
    }

    fn wall(&self) -> u64 {
        self.wall_ns.load(Ordering::Relaxed)
    }
}

struct Wall(Arc<JournalClock>);

impl HostWallClock for Wall {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.wall())
    }
}

struct Monotonic(Arc<JournalClock>);

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let floor = self.0.wall().saturating_sub(self.0.origin_ns);
        let prev = self
            .0
            .mono_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some(floor.max(m + 1))
            })
            .unwrap_or(0);
        floor.max(prev + 1)
    }
}

/// Installs the deterministic clocks and random generators on `builder`.
pub(crate) fn install(builder: &mut WasiCtxBuilder, clock: &Arc<JournalClock>, seed: u64) {
    builder
        .wall_clock(Wall(clock.clone()))
        .monotonic_clock(Monotonic(clock.clone()))
        .secure_random(StdRng::seed_from_u64(seed))
        .insecure_random(StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15))
        .insecure_random_seed(u128::from(seed) << 64 | u128::from(!seed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_follow_the_journal() {
        let c = JournalClock::new(1_000);
        let wall = Wall(c.clone());
        let mono = Monotonic(c.clone());
        assert_eq!(wall.now(), Duration::from_millis(1_000));
        let m1 = mono.now();
        let m2 = mono.now();
        assert!(m2 > m1);
        c.advance_to(1_500);
        assert_eq!(wall.now(), Duration::from_millis(1_500));
        assert!(mono.now() >= 500_000_000);
        c.advance_to(1_200);
        assert_eq!(wall.now(), Duration::from_millis(1_500), "never backwards");
    }
}
