//! Pacing a streaming execution by its consumers (backpressure).
//!
//! A streaming execution (one started with a [`StreamPolicy`]) may run at
//! most `window` items ahead of the slowest live consumer. Consumers are
//! sessions in the store ([`ConsumerSession`]): each read records the
//! highest offset the consumer has seen. Before an `emit` records a new
//! item, the invocation asks [`window`] whether there is room. When there
//! is not, it waits a moment for a read with its instance alive, then
//! suspends the execution ([`crate::Wait::Consumers`]); a read that frees
//! the window wakes it. So a slow consumer costs store space for at most
//! `window` items and no host memory.
//!
//! This module holds the rule once: [`window`] (may the next item go out),
//! [`everyone_left`] / [`abandoned`] (did every consumer leave, and does
//! that cancel), and the producer's side in [`pacer`], which an invocation
//! asks before each new `emit`.

pub mod pacer;

use crate::config::StreamConfig;
use crate::execution::{ConsumerSession, OnAbandon, StreamPolicy};

/// How a start asks for its stream to be paced (the `stream` object of an
/// HTTP start, or the JSON text of a queue start message's `stream`
/// field): the wire type, defined once in `reprise-api`.
pub use reprise_api::StreamOptions;

/// Largest stream window a start may ask for.
pub const MAX_WINDOW: u64 = 1_000_000;

/// Stream options a host cannot honour; the message says which field is
/// wrong and what it accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidStreamOptions(pub String);

/// The policy `options` ask for on a host with `defaults` (what they leave
/// out comes from there).
pub fn policy(
    options: &StreamOptions,
    defaults: &StreamConfig,
) -> Result<StreamPolicy, InvalidStreamOptions> {
    let window = options.window.unwrap_or(defaults.window);
    let window_bytes = options.window_bytes.or(defaults.window_bytes);
    if window_bytes == Some(0) {
        return Err(InvalidStreamOptions(
            "stream.window_bytes 0 is out of range: use at least 1".to_string(),
        ));
    }
    if !(1..=MAX_WINDOW).contains(&window) {
        return Err(InvalidStreamOptions(format!(
            "stream.window {window} is out of range: use 1 to {MAX_WINDOW}"
        )));
    }
    let on_abandon = match options.on_abandon.unwrap_or_default() {
        reprise_api::OnAbandon::Cancel => OnAbandon::Cancel,
        reprise_api::OnAbandon::Continue => OnAbandon::Continue,
    };
    Ok(StreamPolicy {
        window,
        on_abandon,
        window_bytes,
    })
}

/// The options that give `policy` (what an execution's view shows).
pub fn options(policy: &StreamPolicy) -> StreamOptions {
    StreamOptions {
        window: Some(policy.window),
        on_abandon: Some(match policy.on_abandon {
            OnAbandon::Cancel => reprise_api::OnAbandon::Cancel,
            OnAbandon::Continue => reprise_api::OnAbandon::Continue,
        }),
        window_bytes: policy.window_bytes,
    }
}

/// Whether an execution may emit its next item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Items with offsets below `until` fit the item window; `low` is the
    /// first offset some live consumer has not read (what a byte window
    /// counts from).
    Open {
        /// First offset that does not fit.
        until: u64,
        /// Lowest unread offset.
        low: u64,
    },
    /// No room: wait for a consumer. Look again at `wake_at_ms` (when the
    /// first live session would expire), if any consumer is live.
    Full {
        /// When to look again, ms since the Unix epoch.
        wake_at_ms: Option<u64>,
    },
    /// Every consumer has left and the policy cancels the execution.
    Abandoned,
}

/// Where the window of an execution stands when its next item would have
/// offset `next` (= items emitted so far) and `len` bytes, given its
/// consumer `sessions`; `unread_bytes(low)` is the size of the items from
/// offset `low` on (only asked for a byte window).
///
/// Before any consumer comes, the window counts from offset 0, so a
/// producer started ahead of its consumer waits for it. Once consumers
/// came and all left, the policy decides: cancel, or run on unpaced.
pub fn window(
    policy: &StreamPolicy,
    sessions: &[ConsumerSession],
    (next, len): (u64, u64),
    unread_bytes: impl Fn(u64) -> u64,
    session_ttl_ms: u64,
    now_ms: u64,
) -> Window {
    let live: Vec<&ConsumerSession> = sessions
        .iter()
        .filter(|s| s.is_live(session_ttl_ms, now_ms))
        .collect();
    if everyone_left(sessions, session_ttl_ms, now_ms) {
        return match policy.on_abandon {
            OnAbandon::Cancel => Window::Abandoned,
            OnAbandon::Continue => Window::Open {
                until: next.saturating_add(policy.window.max(1)),
                low: next,
            },
        };
    }
    let low = live
        .iter()
        .map(|s| s.acked.map_or(0, |a| a.saturating_add(1)))
        .min()
        .unwrap_or(0);
    let until = low.saturating_add(policy.window);
    if next < until && fits_bytes(policy, unread_bytes(low), len) {
        Window::Open { until, low }
    } else {
        Window::Full {
            wake_at_ms: live
                .iter()
                .map(|s| s.last_access_ms.saturating_add(session_ttl_ms))
                .min(),
        }
    }
}

/// The abandonment rule: consumers came, and every one of them has left
/// (closed its session, or let it expire). Before the first consumer comes
/// nobody has left: the producer waits for it.
pub fn everyone_left(sessions: &[ConsumerSession], session_ttl_ms: u64, now_ms: u64) -> bool {
    !sessions.is_empty() && !sessions.iter().any(|s| s.is_live(session_ttl_ms, now_ms))
}

/// Whether a stream with `policy` is cancelled now: every consumer left
/// and the policy says `cancel`.
pub fn abandoned(
    policy: &StreamPolicy,
    sessions: &[ConsumerSession],
    session_ttl_ms: u64,
    now_ms: u64,
) -> bool {
    policy.on_abandon == OnAbandon::Cancel && everyone_left(sessions, session_ttl_ms, now_ms)
}

/// Whether an item of `len` bytes fits the byte window (if any) with
/// `unread` bytes not yet read. Something always fits an empty window.
pub fn fits_bytes(policy: &StreamPolicy, unread: u64, len: u64) -> bool {
    policy
        .window_bytes
        .is_none_or(|max| unread == 0 || unread.saturating_add(len) <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, acked: Option<u64>, last: u64, closed: bool) -> ConsumerSession {
        ConsumerSession {
            id: id.into(),
            acked,
            last_access_ms: last,
            closed,
        }
    }

    const CANCEL: StreamPolicy = StreamPolicy {
        window: 10,
        on_abandon: OnAbandon::Cancel,
        window_bytes: None,
    };

    /// `window` for items of 1 byte, without a byte window.
    fn look(policy: &StreamPolicy, s: &[ConsumerSession], next: u64, ttl: u64, now: u64) -> Window {
        window(policy, s, (next, 1), |_| 0, ttl, now)
    }

    #[test]
    fn counts_from_the_slowest_live_consumer() {
        let now = 1_000;
        let fast = session("a", Some(50), now, false);
        let slow = session("b", Some(4), now, false);
        // Slow has read 0..=4: offsets 5..15 fit.
        let s = [fast.clone(), slow.clone()];
        assert_eq!(
            look(&CANCEL, &s, 14, 100, now),
            Window::Open { until: 15, low: 5 }
        );
        assert_eq!(
            look(&CANCEL, &s, 15, 100, now),
            Window::Full {
                wake_at_ms: Some(1_100)
            }
        );
        // Once slow expires, only fast counts.
        let later = now + 100;
        let fresh = session("a", Some(50), later, false);
        assert_eq!(
            look(&CANCEL, &[fresh, slow], 15, 100, later),
            Window::Open { until: 61, low: 51 }
        );
    }

    #[test]
    fn before_any_consumer_the_window_counts_from_zero() {
        assert_eq!(
            look(&CANCEL, &[], 9, 100, 0),
            Window::Open { until: 10, low: 0 }
        );
        assert_eq!(
            look(&CANCEL, &[], 10, 100, 0),
            Window::Full { wake_at_ms: None }
        );
        // A consumer that has read nothing yet holds it at zero too.
        let s = [session("a", None, 0, false)];
        assert_eq!(
            look(&CANCEL, &s, 10, 100, 0),
            Window::Full {
                wake_at_ms: Some(100)
            }
        );
    }

    #[test]
    fn a_byte_window_bounds_what_is_unread() {
        let policy = StreamPolicy {
            window_bytes: Some(100),
            ..CANCEL
        };
        let s = [session("a", Some(1), 0, false)];
        // Offsets 2.. are unread: 60 bytes of them.
        let unread = |low: u64| {
            assert_eq!(low, 2);
            60
        };
        assert_eq!(
            window(&policy, &s, (5, 40), unread, 100, 0),
            Window::Open { until: 12, low: 2 }
        );
        assert_eq!(
            window(&policy, &s, (5, 41), unread, 100, 0),
            Window::Full {
                wake_at_ms: Some(100)
            }
        );
        // Nothing unread: even an item larger than the window goes.
        assert_eq!(
            window(&policy, &s, (2, 500), |_| 0, 100, 0),
            Window::Open { until: 12, low: 2 }
        );
    }

    #[test]
    fn when_every_consumer_left_the_policy_decides() {
        let gone = [
            session("a", Some(3), 0, true),
            session("b", Some(3), 0, false),
        ];
        assert_eq!(look(&CANCEL, &gone, 5, 100, 500), Window::Abandoned);
        let cont = StreamPolicy {
            on_abandon: OnAbandon::Continue,
            ..CANCEL
        };
        assert_eq!(
            look(&cont, &gone, 500, 100, 500),
            Window::Open {
                until: 510,
                low: 500
            }
        );
    }
}
