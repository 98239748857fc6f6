//! What the queue holds (pending messages, stream lengths, dead letters,
//! consumers) and the few things hosts coordinate besides messages: the
//! sweep's turn, ended invocations, consumers of hosts that stopped.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redis::{Script, Value};

use super::{DeadLetter, Entry, QueueError, RedisQueue, redis_err};
use crate::ids::ExecutionId;

/// Deletes a consumer of the group if it has nothing pending.
const PRUNE_CONSUMER: &str = include_str!("lua/prune_consumer.lua");

impl RedisQueue {
    /// The consumers of partition `p`'s group, as `XINFO CONSUMERS` gives
    /// them.
    async fn consumers_of(&self, p: usize) -> Result<Vec<HashMap<String, Value>>, QueueError> {
        redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.parts[p].stream)
            .arg(&self.options.group)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Removes consumers (hosts that stopped: each start of a host is a new
    /// consumer) with nothing pending and idle longer than `idle`, from
    /// every partition. A live host removed this way is added back by its
    /// next read, and nothing pending is ever dropped. Returns how many
    /// were removed.
    pub async fn prune_consumers(&self, idle: Duration) -> Result<usize, QueueError> {
        let mut removed = 0;
        for p in 0..self.parts.len() {
            let number = |c: &HashMap<String, Value>, k: &str| match c.get(k) {
                Some(Value::Int(n)) => *n,
                _ => -1,
            };
            for c in &self.consumers_of(p).await? {
                let Some(Value::BulkString(name)) = c.get("name") else {
                    continue;
                };
                if number(c, "pending") != 0 || number(c, "idle") < idle.as_millis() as i64 {
                    continue;
                }
                // DELCONSUMER drops the consumer's pending entries, so only
                // delete it if it still has none (one script, no race).
                let gone: i64 = Script::new(PRUNE_CONSUMER)
                    .key(&self.parts[p].stream)
                    .arg(&self.options.group)
                    .arg(name.as_slice())
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(redis_err)?;
                removed += gone as usize;
            }
        }
        Ok(removed)
    }

    /// Consumers in the group, counted once however many partitions they
    /// read.
    pub async fn consumers(&self) -> Result<usize, QueueError> {
        let mut names = HashSet::new();
        for p in 0..self.parts.len() {
            for c in self.consumers_of(p).await? {
                if let Some(Value::BulkString(name)) = c.get("name") {
                    names.insert(name.clone());
                }
            }
        }
        Ok(names.len())
    }

    /// Tells every host that an invocation of `id` ended (it finished or
    /// suspended), so requests waiting on it there look at once instead of
    /// at their next poll. Best effort: waiters poll anyway.
    pub async fn publish_settled(&self, id: &ExecutionId) -> Result<(), QueueError> {
        redis::cmd("PUBLISH")
            .arg(&self.settled)
            .arg(id.as_str())
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// A subscription to [`RedisQueue::publish_settled`]: read it with
    /// `on_message`; it ends when the connection drops.
    pub async fn subscribe_settled(&self) -> Result<redis::aio::PubSub, QueueError> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(redis_err)?;
        pubsub.subscribe(&self.settled).await.map_err(redis_err)?;
        Ok(pubsub)
    }

    /// Whether `host` sweeps for lost executions in the period `every`
    /// that starts now: the first host to ask in a period gets it (`SET NX`
    /// with the period as expiry), so a cluster of N hosts sweeps once per
    /// period, not N times. A host that dies holding the turn loses it when
    /// the period ends.
    pub async fn take_sweep_turn(&self, host: &str, every: Duration) -> Result<bool, QueueError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(&self.sweeper)
            .arg(host)
            .arg("NX")
            .arg("PX")
            .arg(every.as_millis().max(1) as u64)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(taken.is_some())
    }

    /// Messages delivered but not acknowledged, over every host and
    /// partition.
    pub async fn pending(&self) -> Result<u64, QueueError> {
        let mut total = 0;
        for part in &self.parts {
            let summary: Vec<Value> = redis::cmd("XPENDING")
                .arg(&part.stream)
                .arg(&self.options.group)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(redis_err)?;
            if let Some(v) = summary.into_iter().next() {
                total += redis::from_redis_value::<u64>(v)
                    .map_err(|e| QueueError::Corrupt(format!("redis: XPENDING: {e}")))?;
            }
        }
        Ok(total)
    }

    /// Messages in the streams: pending or not yet read.
    pub async fn stream_len(&self) -> Result<u64, QueueError> {
        self.sum_over_partitions(|part| redis::cmd("XLEN").arg(&part.stream).clone())
            .await
    }

    /// The sum over the partitions of what `command` (a count) answers.
    pub(super) async fn sum_over_partitions(
        &self,
        command: impl Fn(&super::Keys) -> redis::Cmd,
    ) -> Result<u64, QueueError> {
        let mut total = 0;
        for part in &self.parts {
            total += command(part)
                .query_async::<u64>(&mut self.conn.clone())
                .await
                .map_err(redis_err)?;
        }
        Ok(total)
    }

    /// Up to `count` dead letters, oldest first over every partition.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut out = Vec::new();
        for (p, part) in self.parts.iter().enumerate() {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&part.dead)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(count.max(1))
                .query_async(&mut self.conn.clone())
                .await
                .map_err(redis_err)?;
            out.extend(reply.ids.into_iter().map(|id| {
                DeadLetter {
                    entry: Entry {
                        partition: p,
                        id: id.id,
                    },
                    fields: id
                        .map
                        .into_iter()
                        .map(|(k, v)| {
                            let text = match v {
                                Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                                other => format!("{other:?}"),
                            };
                            (k, text)
                        })
                        .collect(),
                }
            }));
        }
        // An entry id is `<ms>-<sequence>`.
        out.sort_by_cached_key(|d| {
            let (ms, seq) = d.entry.id.split_once('-').unwrap_or((&d.entry.id, "0"));
            (
                ms.parse::<u64>().unwrap_or(0),
                seq.parse::<u64>().unwrap_or(0),
            )
        });
        out.truncate(count.max(1));
        Ok(out)
    }
}
