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

use crate::execution::{ConsumerSession, OnAbandon, StreamPolicy};

/// Whether an execution may emit its next item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Items with offsets below `until` fit.
    Open {
        /// First offset that does not fit.
        until: u64,
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
/// offset `next` (= items emitted so far), given its consumer `sessions`.
///
/// Before any consumer comes, the window counts from offset 0, so a
/// producer started ahead of its consumer waits for it. Once consumers
/// came and all left, the policy decides: cancel, or run on unpaced.
pub fn window(
    policy: &StreamPolicy,
    sessions: &[ConsumerSession],
    next: u64,
    session_ttl_ms: u64,
    now_ms: u64,
) -> Window {
    let live: Vec<&ConsumerSession> = sessions
        .iter()
        .filter(|s| s.is_live(session_ttl_ms, now_ms))
        .collect();
    if live.is_empty() && !sessions.is_empty() {
        return match policy.on_abandon {
            OnAbandon::Cancel => Window::Abandoned,
            OnAbandon::Continue => Window::Open {
                until: next.saturating_add(policy.window.max(1)),
            },
        };
    }
    let low = live
        .iter()
        .map(|s| s.acked.map_or(0, |a| a.saturating_add(1)))
        .min()
        .unwrap_or(0);
    let until = low.saturating_add(policy.window);
    if next < until {
        Window::Open { until }
    } else {
        Window::Full {
            wake_at_ms: live
                .iter()
                .map(|s| s.last_access_ms.saturating_add(session_ttl_ms))
                .min(),
        }
    }
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
    };

    #[test]
    fn counts_from_the_slowest_live_consumer() {
        let now = 1_000;
        let fast = session("a", Some(50), now, false);
        let slow = session("b", Some(4), now, false);
        // Slow has read 0..=4: offsets 5..15 fit.
        let s = [fast.clone(), slow.clone()];
        assert_eq!(
            window(&CANCEL, &s, 14, 100, now),
            Window::Open { until: 15 }
        );
        assert_eq!(
            window(&CANCEL, &s, 15, 100, now),
            Window::Full {
                wake_at_ms: Some(1_100)
            }
        );
        // Once slow expires, only fast counts.
        let later = now + 100;
        let fresh = session("a", Some(50), later, false);
        assert_eq!(
            window(&CANCEL, &[fresh, slow], 15, 100, later),
            Window::Open { until: 61 }
        );
    }

    #[test]
    fn before_any_consumer_the_window_counts_from_zero() {
        assert_eq!(window(&CANCEL, &[], 9, 100, 0), Window::Open { until: 10 });
        assert_eq!(
            window(&CANCEL, &[], 10, 100, 0),
            Window::Full { wake_at_ms: None }
        );
        // A consumer that has read nothing yet holds it at zero too.
        let s = [session("a", None, 0, false)];
        assert_eq!(
            window(&CANCEL, &s, 10, 100, 0),
            Window::Full {
                wake_at_ms: Some(100)
            }
        );
    }

    #[test]
    fn when_every_consumer_left_the_policy_decides() {
        let gone = [
            session("a", Some(3), 0, true),
            session("b", Some(3), 0, false),
        ];
        assert_eq!(window(&CANCEL, &gone, 5, 100, 500), Window::Abandoned);
        let cont = StreamPolicy {
            on_abandon: OnAbandon::Continue,
            ..CANCEL
        };
        assert_eq!(
            window(&cont, &gone, 500, 100, 500),
            Window::Open { until: 510 }
        );
    }
}
