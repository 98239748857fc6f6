//! Bounds on a guest besides its memory: the time it may go without
//! calling the host ([`Progress`]), and how much it may log ([`LogLimit`]).
//!
//! Time is checked in two places, because a guest can spend it in two
//! ways: running wasm (the engine's epoch callback interrupts it) and
//! blocked in a WASI call such as a sleep, where no wasm runs and the
//! epoch callback never fires. For the second, [`Progress::overdue`]
//! races the whole call and ends it at the limit. Time inside the host's
//! own imports (a tool call, a durable sleep, a window wait) is the host's
//! and never counts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::time::Instant as Clock;

/// How often the guest has made progress (returned from one of the
/// host's imports), and whether it is inside one now. Shared between the
/// store's data and the watchdog racing the call.
///
/// Progress is a count, not a time: an import returns on every replayed
/// entry, and reading the clock there was ~2% of replay. The observers
/// read the clock instead, at their own pace ([`Watch`]).
pub(crate) struct Progress {
    made: AtomicU64,
    in_host: AtomicBool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            made: AtomicU64::new(0),
            in_host: AtomicBool::new(false),
        }
    }

    /// The guest entered one of the host's imports: its time is not the
    /// guest's until [`Progress::made`].
    pub(crate) fn enter(&self) {
        self.in_host.store(true, Ordering::Relaxed);
    }

    /// The guest made progress: an import returned.
    pub(crate) fn made(&self) {
        self.made.fetch_add(1, Ordering::Relaxed);
        self.in_host.store(false, Ordering::Relaxed);
    }

    /// Completes once the guest has gone `limit` without progress, however
    /// it spent the time: it looks every quarter of the limit, so it ends
    /// the call between `limit` and 1.25 x `limit` after the last progress.
    pub(crate) async fn overdue(&self, limit: Duration) {
        let mut watch = Watch::new();
        let every = (limit / 4).max(Duration::from_millis(1));
        loop {
            if watch.idle(self) > limit {
                return;
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// One observer's view of a [`Progress`]: the count it last saw, and when
/// it first saw it.
pub(crate) struct Watch {
    seen: u64,
    since: Clock,
}

impl Watch {
    pub(crate) fn new() -> Self {
        Self {
            seen: 0,
            since: Clock::now(),
        }
    }

    /// How long the guest has gone without progress, as far as this
    /// observer can tell: zero if it made some since the last look (or is
    /// inside one of the host's imports), else the time since the look that
    /// first found the count as it is. Progress made just after a look is
    /// dated at the next look, so looks at least every `d` may count up to
    /// `d` short, never long.
    pub(crate) fn idle(&mut self, progress: &Progress) -> Duration {
        let now = Clock::now();
        let made = progress.made.load(Ordering::Relaxed);
        if made != self.seen || progress.in_host.load(Ordering::Relaxed) {
            self.seen = made;
            self.since = now;
            return Duration::ZERO;
        }
        now.saturating_duration_since(self.since)
    }
}

/// A token bucket of log lines for one invocation, and what it dropped.
pub(crate) struct LogLimit {
    burst: f64,
    per_second: f64,
    line_bytes: usize,
    tokens: f64,
    refilled: Instant,
    /// Lines dropped so far.
    pub(crate) dropped: u64,
}

impl LogLimit {
    pub(crate) fn new(burst: u32, per_second: u32, line_bytes: usize) -> Self {
        Self {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            line_bytes,
            tokens: f64::from(burst),
            refilled: Instant::now(),
            dropped: 0,
        }
    }

    /// The longest line kept, in bytes.
    pub(crate) fn line_bytes(&self) -> usize {
        self.line_bytes
    }

    /// The line to write for `message`, or `None` if it is dropped: cut to
    /// the line limit, with control characters (newlines above all, which
    /// would forge host log lines) escaped.
    pub(crate) fn admit(&mut self, message: &str) -> Option<String> {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return None;
        }
        self.tokens -= 1.0;
        Some(sanitize(message, self.line_bytes))
    }
}

/// `message` cut to at most `max` bytes (at a character boundary, saying
/// how much was cut) with control characters escaped.
pub(crate) fn sanitize(message: &str, max: usize) -> String {
    let mut cut = max.min(message.len());
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + 32);
    for c in message[..cut].chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut < message.len() {
        out.push_str(&format!("... ({} more bytes cut)", message.len() - cut));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_escaped_and_cut() {
        assert_eq!(sanitize("a\nb\r\u{1b}[2Jc", 100), "a\\nb\\r\\u{1b}[2Jc");
        assert_eq!(sanitize("héllo", 2), "h... (5 more bytes cut)");
        assert_eq!(sanitize("ok", 2), "ok");
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_and_counted() {
        let mut limit = LogLimit::new(10, 1, 64);
        let kept = (0..1000).filter(|_| limit.admit("x").is_some()).count();
        // The burst, plus at most a line or two refilled meanwhile.
        assert!((10..=12).contains(&kept), "{kept}");
        assert_eq!(limit.dropped, 1000 - kept as u64);
    }

    #[tokio::test]
    async fn time_in_the_host_does_not_count() {
        let p = Progress::new();
        p.enter();
        let limit = Duration::from_millis(100);
        let in_host = tokio::time::timeout(limit * 3, p.overdue(limit));
        assert!(in_host.await.is_err(), "time in the host counted");
        p.made();
        let began = Clock::now();
        let outside = tokio::time::timeout(Duration::from_secs(5), p.overdue(limit));
        assert!(outside.await.is_ok(), "time outside the host did not count");
        assert!(began.elapsed() > limit, "ended before the limit");
    }

    #[test]
    fn a_watch_counts_from_the_last_progress_it_saw() {
        let p = Progress::new();
        let mut watch = Watch::new();
        std::thread::sleep(Duration::from_millis(20));
        assert!(watch.idle(&p) >= Duration::from_millis(20));
        p.enter();
        assert_eq!(watch.idle(&p), Duration::ZERO, "inside the host");
        p.made();
        assert_eq!(
            watch.idle(&p),
            Duration::ZERO,
            "progress since the last look"
        );
        std::thread::sleep(Duration::from_millis(20));
        let idle = watch.idle(&p);
        assert!(idle >= Duration::from_millis(20), "{idle:?}");
    }
}
