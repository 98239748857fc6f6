//! Retention: finished executions are deleted `RuntimeConfig::retention`
//! after they ended, by a sweep every runtime runs (every tenth of the
//! retention, at most 5 minutes apart), a batch at a time.

use std::time::Duration;

use super::Inner;
use crate::store::now_ms;

/// Executions deleted per store call by the retention sweep.
pub(super) const PURGE_BATCH: usize = 500;

impl Inner {
    /// Deletes executions that finished more than `retention` ago, checking
    /// every tenth of it (at least every 5 minutes).
    pub(super) async fn expire_finished(&self, retention: Duration) {
        let every = (retention / 10).clamp(Duration::from_millis(50), Duration::from_secs(300));
        loop {
            tokio::time::sleep(every).await;
            let before = now_ms().saturating_sub(retention.as_millis() as u64);
            loop {
                match self.store.purge_finished(before, PURGE_BATCH).await {
                    Ok(n) if n >= PURGE_BATCH => continue,
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!("deleted {n} expired executions");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("cannot delete expired executions yet: {e}");
                        break;
                    }
                }
            }
        }
    }
}
