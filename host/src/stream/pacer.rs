//! The producer's side of a paced stream: before each new `emit`, an
//! invocation asks its [`Pacer`] whether the item fits the window.
//!
//! The pacer keeps what it last saw of the consumers (up to which offset
//! the window is open, and for a byte window the sizes of the items not
//! yet read by everyone), so a producer far behind its window costs no
//! store round trip per item. It reads the sessions again only when the
//! item would not fit as last seen, or every quarter of the session TTL,
//! so consumers that leave are noticed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use super::{Window, fits_bytes, window};
use crate::config::StreamConfig;
use crate::execution::StreamPolicy;
use crate::ids::ExecutionId;
use crate::store::{Store, StoreError, now_ms};

/// Why the next item cannot go out now.
#[derive(Debug)]
pub enum Blocked {
    /// The window stayed full for `stream.hold` (or the host drains): the
    /// execution suspends until a consumer reads. `wake_at_ms` is when the
    /// first live session would expire, if any is live.
    Full {
        /// When to look again for consumers that left.
        wake_at_ms: Option<u64>,
    },
    /// Every consumer left and the policy cancels the execution.
    Abandoned,
    /// The sessions could not be read.
    Store(StoreError),
}

/// Paces one invocation's emits (see the module docs).
pub struct Pacer {
    policy: Option<StreamPolicy>,
    config: StreamConfig,
    /// Notified when a consumer reads on this host.
    reads: Arc<Notify>,
    /// Items emitted so far (replayed and new): the next item's offset.
    emitted: u64,
    /// Offsets below this fit the window as last seen.
    window_until: u64,
    /// When the consumer sessions were last read, ms since the Unix epoch.
    window_seen_ms: u64,
    /// For a byte window: sizes of the items from offset `unread_base` on
    /// (those not known to be read by every consumer), and their sum.
    unread: VecDeque<u64>,
    unread_base: u64,
    unread_bytes: u64,
}

impl Pacer {
    /// The pacer of an execution with `policy` (none: never paced).
    pub fn new(policy: Option<StreamPolicy>, config: StreamConfig, reads: Arc<Notify>) -> Self {
        Self {
            policy,
            config,
            reads,
            emitted: 0,
            window_until: 0,
            window_seen_ms: 0,
            unread: VecDeque::new(),
            unread_base: 0,
            unread_bytes: 0,
        }
    }

    /// Returns once the next item, of `len` bytes, fits the window; waits
    /// up to `stream.hold` for a read first (not while `drain` is set).
    pub async fn make_room(
        &mut self,
        store: &dyn Store,
        id: &ExecutionId,
        len: u64,
        drain: &AtomicBool,
    ) -> Result<(), Blocked> {
        let Some(policy) = self.policy else {
            return Ok(());
        };
        let ttl_ms = self.config.session_ttl.as_millis() as u64;
        let hold_until = Instant::now() + self.config.hold;
        loop {
            let now = now_ms();
            if self.emitted < self.window_until
                && fits_bytes(&policy, self.unread_bytes, len)
                && now < self.window_seen_ms + ttl_ms / 4
            {
                return Ok(());
            }
            let sessions = store.sessions(id).await.map_err(Blocked::Store)?;
            self.window_seen_ms = now;
            let look = window(
                &policy,
                &sessions,
                (self.emitted, len),
                |low| self.unread_from(low),
                ttl_ms,
                now,
            );
            match look {
                Window::Open { until, low } => {
                    self.window_until = until;
                    self.forget_read(low);
                    return Ok(());
                }
                Window::Abandoned => return Err(Blocked::Abandoned),
                Window::Full { wake_at_ms } => {
                    self.window_until = 0;
                    let left = hold_until.saturating_duration_since(Instant::now());
                    if left.is_zero() || drain.load(Ordering::Relaxed) {
                        return Err(Blocked::Full { wake_at_ms });
                    }
                    let _ = tokio::time::timeout(left, self.reads.notified()).await;
                }
            }
        }
    }

    /// An item of `len` bytes went out (replayed or new).
    pub fn emitted(&mut self, len: u64) {
        self.emitted += 1;
        if self.policy.is_some_and(|p| p.window_bytes.is_some()) {
            self.unread.push_back(len);
            self.unread_bytes += len;
        }
    }

    /// Bytes of the items from offset `low` on.
    fn unread_from(&self, low: u64) -> u64 {
        let skip = low.saturating_sub(self.unread_base) as usize;
        let read: u64 = self.unread.iter().take(skip).sum();
        self.unread_bytes - read
    }

    /// Every consumer has read the items below `low`.
    fn forget_read(&mut self, low: u64) {
        while self.unread_base < low {
            let Some(len) = self.unread.pop_front() else {
                break;
            };
            self.unread_bytes -= len;
            self.unread_base += 1;
        }
    }
}
