//! Durable timers: per partition, a sorted set of execution ids by due
//! time, moved to the partition's stream by a script when due.

use std::time::Duration;

use super::{QueueError, RedisQueue, redis_err};
use crate::ids::ExecutionId;

/// Moves up to ARGV[1] due timers to the stream, on the Redis clock.
/// Returns how many fired and how long until the next one (-1: none).
pub(super) const FIRE_TIMERS: &str = include_str!("lua/fire_timers.lua");

impl RedisQueue {
    /// Sets execution `id`'s timer to `at_ms` (ms since the Unix epoch), in
    /// its partition.
    pub async fn add_timer(&self, id: &ExecutionId, at_ms: u64) -> Result<(), QueueError> {
        self.set_timer(id, at_ms, false).await
    }

    /// Sets execution `id`'s timer to `at_ms` unless it has one.
    pub async fn add_timer_if_missing(
        &self,
        id: &ExecutionId,
        at_ms: u64,
    ) -> Result<(), QueueError> {
        self.set_timer(id, at_ms, true).await
    }

    async fn set_timer(&self, id: &ExecutionId, at_ms: u64, nx: bool) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&self.parts[self.partition_of(id)].timers);
        if nx {
            cmd.arg("NX");
        }
        cmd.arg(at_ms)
            .arg(id.as_str())
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Moves up to `limit` due timers of partition `p` to its stream.
    /// Returns how many fired and, if any timer is left, how long until the
    /// next is due.
    pub async fn fire_timers(
        &self,
        p: usize,
        limit: usize,
    ) -> Result<(u64, Option<Duration>), QueueError> {
        let (fired, wait): (u64, i64) = self
            .fire
            .key(&self.parts[p].timers)
            .key(&self.parts[p].stream)
            .arg(limit.max(1))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        let next = u64::try_from(wait).ok().map(Duration::from_millis);
        Ok((fired, next))
    }

    /// Timers not yet fired, over every partition.
    pub async fn timers(&self) -> Result<u64, QueueError> {
        self.sum_over_partitions(|part| redis::cmd("ZCARD").arg(&part.timers).clone())
            .await
    }
}
