//! What the Redis store does across executions rather than to one: list
//! and count them (a `SCAN` of the record keys, on every primary of a
//! cluster), and delete the finished ones, found through the `finished`
//! index that `index_finished` keeps.

use std::collections::HashMap;

use redis::Value;

use super::reply::{Reply, parse_status};
use super::scripts::scripts;
use super::{RedisStore, redis_err};
use crate::execution::{ExecutionRecord, Status};
use crate::ids::ExecutionId;
use crate::store::{Store, StoreError, now_ms};

impl RedisStore {
    /// Every execution with `status` (all when `None`): a `SCAN` of the
    /// record keys (on every primary of a cluster), then each record.
    pub(super) async fn scan_executions(
        &self,
        status: Option<Status>,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let pattern = format!("{}:x:{{*}}", self.options.prefix);
        let mut out = Vec::new();
        for key in self.conn.scan(&pattern).await? {
            let Some(id) = key
                .rsplit_once('{')
                .and_then(|(_, rest)| rest.strip_suffix('}'))
                .and_then(|id| ExecutionId::new(id).ok())
            else {
                continue;
            };
            match self.get_execution(&id).await {
                Ok(rec) if status.is_none_or(|s| s == rec.status) => out.push(rec),
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// How many executions there are of each status: one `HGET st` per execution, a chunk in flight at a time (each
    /// routed to its own node on a cluster): no record is transferred.
    pub(super) async fn scan_statuses(&self) -> Result<HashMap<Status, u64>, StoreError> {
        let pattern = format!("{}:x:{{*}}", self.options.prefix);
        let mut counts = HashMap::new();
        let keys = self.conn.scan(&pattern).await?;
        for chunk in keys.chunks(256) {
            let statuses = futures_util::future::try_join_all(chunk.iter().map(|key| {
                let mut conn = self.conn();
                async move {
                    redis::cmd("HGET")
                        .arg(key)
                        .arg("st")
                        .query_async::<Option<String>>(&mut conn)
                        .await
                }
            }))
            .await
            .map_err(redis_err)?;
            // A key deleted since the scan has no status.
            for st in statuses.into_iter().flatten() {
                *counts.entry(parse_status(&st)?).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Deletes up to `limit` executions that ended before `before_ms`,
    /// found through the finished index; returns how many.
    pub(super) async fn purge_ended_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.finished_key())
            .arg("-inf")
            .arg(format!("({before_ms}"))
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut deleted = 0;
        for raw in ids {
            let Ok(id) = ExecutionId::new(raw.clone()) else {
                continue;
            };
            match self.delete_inner(&id, Some(before_ms)).await {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                // Gone already, or it did not end after all (it is indexed
                // again when it does): drop the index entry.
                Err(StoreError::NotFound(_)) | Err(StoreError::Active { .. }) => {
                    redis::cmd("ZREM")
                        .arg(self.finished_key())
                        .arg(raw)
                        .query_async::<()>(&mut self.conn())
                        .await
                        .map_err(redis_err)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// Runs the delete script for `id`; `before_ms` limits it to executions
    /// that ended before then. Returns whether it deleted.
    pub(super) async fn delete_inner(
        &self,
        id: &ExecutionId,
        before_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let v: Value = scripts()
            .delete
            .key(self.key("x", id))
            .key(self.key("j", id))
            .key(self.key("s", id))
            .key(self.key("sk", id))
            .key(self.key("sc", id))
            .key(self.key("b", id))
            .key(self.key("i", id))
            .key(self.key("c", id))
            .arg(before_ms.map(|t| t.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let reply = Reply::new(v, "delete")?;
        if reply.tag == "kept" {
            return Ok(false);
        }
        let mut reply = reply.check(id)?;
        let blobs: Vec<String> = reply.next()?;
        let _: () = redis::cmd("ZREM")
            .arg(self.finished_key())
            .arg(id.as_str())
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        self.unref_blobs(&blobs).await?;
        Ok(true)
    }

    /// Notes that `id` ends now, for the retention sweep. Written before the
    /// execution ends; the sweep re-checks, so an entry for an execution
    /// that did not end after all is harmless.
    pub(super) async fn index_finished(&self, id: &ExecutionId) -> Result<(), StoreError> {
        let mut conn = self.conn();
        redis::cmd("ZADD")
            .arg(self.finished_key())
            .arg(now_ms())
            .arg(id.as_str())
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }
}
