//! The runtime's side of a paced stream: a consumer's read wakes the
//! producer (at once if its invocation waits here for room, through a
//! resume otherwise) when its pending item would now fit the window.

use std::sync::Arc;

use super::Inner;
use crate::execution::{Status, Wait};
use crate::ids::ExecutionId;
use crate::store::{StoreError, now_ms};

impl Inner {
    /// A consumer read (or left): the producer of stream `id` may have room
    /// again. An invocation here waiting for room hears it at once; an
    /// execution suspended for its consumers is woken (on any host) if it
    /// would find room.
    pub(super) async fn window_moved(self: &Arc<Self>, id: &ExecutionId) {
        let local = self.reads.lock().expect("reads poisoned").get(id).cloned();
        if let Some(reads) = local {
            reads.notify_one();
            return;
        }
        self.wake_if_room(id).await;
    }

    /// After suspending `id` for its consumers: wakes it if a read came in
    /// between its last look at the window and the suspension.
    pub(super) async fn recheck_window(self: &Arc<Self>, id: &ExecutionId) {
        self.wake_if_room(id).await;
    }

    /// Wakes `id` if it is suspended for its consumers and its pending item
    /// would now fit the window (or every consumer left).
    pub(super) async fn wake_if_room(self: &Arc<Self>, id: &ExecutionId) {
        match self.room_for_producer(id).await {
            Ok(true) => {
                if let Err(e) = self.wake(id).await {
                    tracing::warn!(execution = %id, "cannot wake the producer: {e}");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(execution = %id, "cannot look at the window: {e}"),
        }
    }

    pub(super) async fn room_for_producer(&self, id: &ExecutionId) -> Result<bool, StoreError> {
        use crate::stream::{Window, fits_bytes, window};
        let rec = self.store.get_execution(id).await?;
        let (Some(policy), Status::Suspended, Some(Wait::Consumers { item_len, .. })) =
            (rec.stream, rec.status, rec.wait)
        else {
            return Ok(false);
        };
        let next = self.store.items(id, None, 0).await?.count;
        let sessions = self.store.sessions(id).await?;
        let ttl_ms = self.config.stream.session_ttl.as_millis() as u64;
        // The byte window is checked below, from the store.
        match window(
            &policy,
            &sessions,
            (next, item_len),
            |_| 0,
            ttl_ms,
            now_ms(),
        ) {
            Window::Full { .. } => Ok(false),
            Window::Abandoned => Ok(true),
            Window::Open { low, .. } if policy.window_bytes.is_some() => {
                let unread: u64 = self
                    .store
                    .items(id, low.checked_sub(1), policy.window as usize)
                    .await?
                    .items
                    .iter()
                    .map(|(_, item)| item.len() as u64)
                    .sum();
                Ok(fits_bytes(&policy, unread, item_len))
            }
            Window::Open { .. } => Ok(true),
        }
    }
}
