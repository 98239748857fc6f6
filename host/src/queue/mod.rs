//! The work queue: how several hosts on one Redis share executions.
//!
//! Work is a message on a Redis stream read through one consumer group, so
//! each message goes to one host at a time:
//!
//! - a **start** (`workflow`, optional `input` as JSON text, optional `id`,
//!   optional `stream` as JSON text: how its output stream is paced)
//!   creates an execution and runs it;
//! - a **resume** (`resume` = execution id) runs an execution that can go
//!   on: it was started over HTTP, a signal it waited for arrived, its timer
//!   is due, or its last invocation ended on its budget.
//!
//! A message is acknowledged (and deleted from the stream) only after the
//! invocation it caused has recorded how it ended, and after whatever comes
//! next is itself durable (the next resume message, or the timer). A host
//! that dies mid-invocation leaves its messages pending; once one has been
//! idle for `claim_after` any host takes it over (`XPENDING` + `XCLAIM`) and
//! replays the execution. A host keeps the messages it works on fresh with
//! `XCLAIM … JUSTID` while it works, so a long invocation is never taken
//! from a live host. A message that can never succeed (unknown workflow,
//! malformed fields), or one whose execution made no progress (its journal
//! did not grow) over `max_deliveries` deliveries in a row, goes to the
//! dead-letter stream with the reason. Deliveries cut short by a host that
//! was killed after its execution went forward are not held against the
//! message: the limit is for messages that stop every host that takes them,
//! not for unlucky ones.
//!
//! **Durable timers** are a sorted set of execution ids by due time. Every
//! host moves due timers to the stream with one script (`ZRANGEBYSCORE`,
//! `ZREM`, `XADD`), so a timer fires once however many hosts poll, on the
//! Redis clock, and survives restarts of every host.
//!
//! The stream, the timers and the dead letters share one hash tag, so the
//! scripts that touch two of them run on one Redis Cluster slot.

use std::collections::HashMap;
use std::time::Duration;

use redis::streams::StreamReadReply;
use redis::{Script, Value};

use crate::ids::ExecutionId;
use crate::redis_conn::{
    Conn, RedisFailure, RedisOptions, client as redis_client, connection as redis_connection,
};

/// A queue operation that failed, grouped by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue is configured wrongly (an empty stream name, a malformed
    /// URL): fix the configuration.
    #[error("invalid queue configuration: {0}")]
    Invalid(String),
    /// Redis cannot be reached or failed transiently: retry later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// A reply this code cannot read.
    #[error("unexpected queue reply: {0}")]
    Corrupt(String),
}

impl QueueError {
    /// Whether retrying later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

impl From<RedisFailure> for QueueError {
    fn from(e: RedisFailure) -> Self {
        match e {
            RedisFailure::Invalid(m) => QueueError::Invalid(m),
            RedisFailure::Unavailable(m) => QueueError::Unavailable(m),
            RedisFailure::Corrupt(m) => QueueError::Corrupt(m),
        }
    }
}

fn redis_err(e: redis::RedisError) -> QueueError {
    RedisFailure::from(e).into()
}

mod message;

pub use message::{DeadLetter, Delivery, MalformedMessage, Message};

/// Settings of a [`RedisQueue`].
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// The stream's key. The timers are at `{<stream>}:timers` and the dead
    /// letters at `{<stream>}:dead` (same Cluster slot).
    pub stream: String,
    /// The consumer group every host joins.
    pub group: String,
    /// A message pending this long without its host refreshing it is taken
    /// over by another host (its host is presumed dead).
    pub claim_after: Duration,
    /// A message delivered this many times in a row without its execution
    /// making progress (see [`RedisQueue::stalled`]) goes to the
    /// dead-letter stream.
    pub max_deliveries: u64,
    /// Messages one host works on at once.
    pub concurrency: usize,
    /// Longest time between two looks at the timers (a host also looks
    /// when the next timer it knows of is due).
    pub timer_poll: Duration,
    /// How long one read waits for new messages.
    pub block: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            stream: "reprise:queue".into(),
            group: "reprise".into(),
            claim_after: Duration::from_secs(30),
            max_deliveries: 5,
            concurrency: 64,
            timer_poll: Duration::from_millis(500),
            block: Duration::from_secs(1),
        }
    }
}

/// Acknowledges and deletes entries (nobody else reads this stream's group,
/// so an acknowledged entry is of no further use).
/// Their progress marks (KEYS[2]) go with them.
const ACK: &str = include_str!("lua/ack.lua");

/// Moves one entry to the dead-letter stream. ARGV: group, entry id, then
/// field/value pairs for the dead letter.
/// Its progress mark (KEYS[3]) goes with it.
const DEAD_LETTER: &str = include_str!("lua/dead_letter.lua");

/// Records that entry ARGV[1] was taken over (its delivery ARGV[3]) while
/// its execution's journal held ARGV[2] entries, and returns how many
/// deliveries in a row ended without the journal growing. The mark
/// (`<length>:<stalled>`) is kept in the hash KEYS[1]. The first take-over
/// knows nothing of the deliveries before it, so it counts them all as
/// stalled.
const STALLED: &str = include_str!("lua/stalled.lua");

/// Moves up to ARGV[1] due timers to the stream, on the Redis clock.
/// Returns how many fired and how long until the next one (-1: none).
const FIRE_TIMERS: &str = include_str!("lua/fire_timers.lua");

/// Deletes a consumer of the group if it has nothing pending.
const PRUNE_CONSUMER: &str = include_str!("lua/prune_consumer.lua");

/// A work queue on Redis Streams; see the module documentation.
#[derive(Clone)]
pub struct RedisQueue {
    /// Shared connection for short commands.
    conn: Conn,
    /// Dedicated connection for blocking reads, which would otherwise hold
    /// up every command queued behind them.
    reader: Conn,
    options: QueueOptions,
    timers: String,
    dead: String,
    /// Progress marks of taken-over messages (see [`RedisQueue::stalled`]).
    progress: String,
    settled: String,
    /// Which host sweeps this period (see [`RedisQueue::take_sweep_turn`]).
    sweeper: String,
    /// For the pub/sub connection that hears other hosts' invocations end.
    client: redis::Client,
    ack: Script,
    dead_letter: Script,
    stalled: Script,
    fire: Script,
}

impl RedisQueue {
    /// Connects to the Redis at `url` and creates the consumer group if it
    /// does not exist yet.
    pub async fn connect(
        url: &str,
        redis: &RedisOptions,
        options: QueueOptions,
    ) -> Result<Self, QueueError> {
        if options.stream.is_empty() {
            return Err(QueueError::Invalid(
                "the queue's stream name is empty".into(),
            ));
        }
        // Keys derived from the stream share its Cluster slot: with a hash
        // tag in the name, append; without, make the whole name the tag.
        let tag = if options.stream.contains('{') {
            options.stream.clone()
        } else {
            format!("{{{}}}", options.stream)
        };
        let mut blocking = redis.clone();
        blocking.response_timeout = redis.response_timeout + options.block;
        let queue = Self {
            conn: redis_connection(url, redis).await?,
            reader: redis_connection(url, &blocking).await?,
            timers: format!("{tag}:timers"),
            dead: format!("{tag}:dead"),
            progress: format!("{tag}:progress"),
            settled: format!("{tag}:settled"),
            sweeper: format!("{tag}:sweeper"),
            client: redis_client(url, redis)?,
            options,
            ack: Script::new(ACK),
            dead_letter: Script::new(DEAD_LETTER),
            stalled: Script::new(STALLED),
            fire: Script::new(FIRE_TIMERS),
        };
        let created: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&queue.options.stream)
            .arg(&queue.options.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut queue.conn.clone())
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(redis_err(e)),
        }
        Ok(queue)
    }

    /// The settings.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Adds a message; returns its entry id.
    pub async fn enqueue(&self, message: &Message) -> Result<String, QueueError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.options.stream).arg("*");
        for (k, v) in message.fields() {
            cmd.arg(k).arg(v);
        }
        cmd.query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Up to `count` new messages for `consumer`, waiting up to the
    /// configured `block` for the first.
    pub async fn read(&self, consumer: &str, count: usize) -> Result<Vec<Delivery>, QueueError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.options.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(self.options.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.options.stream)
            .arg(">")
            .query_async(&mut self.reader.clone())
            .await
            .map_err(redis_err)?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|id| Delivery::new(id, 1))
            .collect())
    }

    /// Takes over up to `count` messages pending longer than `claim_after`
    /// (their hosts are presumed dead). Each is claimed with a minimum idle
    /// time, so two hosts never take over the same message.
    pub async fn reclaim(&self, consumer: &str, count: usize) -> Result<Vec<Delivery>, QueueError> {
        let mut conn = self.conn.clone();
        let idle = self.options.claim_after.as_millis() as u64;
        // Each row: [entry id, consumer, idle ms, deliveries].
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&self.options.stream)
            .arg(&self.options.group)
            .arg("IDLE")
            .arg(idle)
            .arg("-")
            .arg("+")
            .arg(count.max(1))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let mut out = Vec::new();
        for (entry, _, _, deliveries) in rows {
            // Empty if another host took it first (it is no longer idle).
            let claimed: redis::streams::StreamClaimReply = redis::cmd("XCLAIM")
                .arg(&self.options.stream)
                .arg(&self.options.group)
                .arg(consumer)
                .arg(idle)
                .arg(&entry)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            out.extend(
                claimed
                    .ids
                    .into_iter()
                    .map(|id| Delivery::new(id, deliveries + 1)),
            );
        }
        Ok(out)
    }

    /// Marks `entries` as still being worked on by `consumer`, so no other
    /// host takes them over.
    pub async fn refresh(&self, consumer: &str, entries: &[String]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        redis::cmd("XCLAIM")
            .arg(&self.options.stream)
            .arg(&self.options.group)
            .arg(consumer)
            .arg(0)
            .arg(entries)
            .arg("JUSTID")
            .query_async::<Value>(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    /// Removes consumers (hosts that stopped: each start of a host is a new
    /// consumer) with nothing pending and idle longer than `idle`. A live
    /// host removed this way is added back by its next read, and nothing
    /// pending is ever dropped. Returns how many were removed.
    pub async fn prune_consumers(&self, idle: Duration) -> Result<usize, QueueError> {
        let mut conn = self.conn.clone();
        let consumers: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.options.stream)
            .arg(&self.options.group)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let number = |c: &HashMap<String, Value>, k: &str| match c.get(k) {
            Some(Value::Int(n)) => *n,
            _ => -1,
        };
        let mut removed = 0;
        for c in &consumers {
            let Some(Value::BulkString(name)) = c.get("name") else {
                continue;
            };
            if number(c, "pending") != 0 || number(c, "idle") < idle.as_millis() as i64 {
                continue;
            }
            // DELCONSUMER drops the consumer's pending entries, so only
            // delete it if it still has none (one script, no race).
            let gone: i64 = Script::new(PRUNE_CONSUMER)
                .key(&self.options.stream)
                .arg(&self.options.group)
                .arg(name.as_slice())
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err)?;
            removed += gone as usize;
        }
        Ok(removed)
    }

    /// Consumers in the group.
    pub async fn consumers(&self) -> Result<usize, QueueError> {
        let consumers: Vec<Value> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.options.stream)
            .arg(&self.options.group)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(consumers.len())
    }

    /// Acknowledges and deletes `entries`.
    pub async fn ack(&self, entries: &[String]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.ack
            .key(&self.options.stream)
            .key(&self.progress)
            .arg(&self.options.group)
            .arg(entries)
            .invoke_async::<Value>(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    /// Moves a message to the dead-letter stream with `reason`, in one step
    /// with its acknowledgement.
    pub async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), QueueError> {
        let mut inv = self.dead_letter.key(&self.options.stream);
        inv.key(&self.dead)
            .key(&self.progress)
            .arg(&self.options.group)
            .arg(&d.entry)
            .arg("reason")
            .arg(reason)
            .arg("original")
            .arg(&d.entry)
            .arg("deliveries")
            .arg(d.deliveries);
        for (k, v) in &d.fields {
            inv.arg(k).arg(v);
        }
        inv.invoke_async::<Value>(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    /// Called when a host takes over `d`, whose execution's journal now
    /// holds `journal_len` entries: how many of its deliveries in a row
    /// ended without the journal growing (deliveries before the first
    /// take-over all count, since nothing recorded where they began). A
    /// host killed from outside after its invocation went forward is not
    /// the message's fault; a message that stops every host before any
    /// step is.
    pub async fn stalled(&self, d: &Delivery, journal_len: u64) -> Result<u64, QueueError> {
        self.stalled
            .key(&self.progress)
            .arg(&d.entry)
            .arg(journal_len)
            .arg(d.deliveries)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)
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

    /// Sets execution `id`'s timer to `at_ms` (ms since the Unix epoch).
    pub async fn add_timer(&self, id: &ExecutionId, at_ms: u64) -> Result<(), QueueError> {
        redis::cmd("ZADD")
            .arg(&self.timers)
            .arg(at_ms)
            .arg(id.as_str())
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
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

    /// Sets execution `id`'s timer to `at_ms` unless it has one.
    pub async fn add_timer_if_missing(
        &self,
        id: &ExecutionId,
        at_ms: u64,
    ) -> Result<(), QueueError> {
        redis::cmd("ZADD")
            .arg(&self.timers)
            .arg("NX")
            .arg(at_ms)
            .arg(id.as_str())
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Moves up to `limit` due timers to the stream. Returns how many fired
    /// and, if any timer is left, how long until the next is due.
    pub async fn fire_timers(&self, limit: usize) -> Result<(u64, Option<Duration>), QueueError> {
        let (fired, wait): (u64, i64) = self
            .fire
            .key(&self.timers)
            .key(&self.options.stream)
            .arg(limit.max(1))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        let next = u64::try_from(wait).ok().map(Duration::from_millis);
        Ok((fired, next))
    }

    /// Timers not yet fired.
    pub async fn timers(&self) -> Result<u64, QueueError> {
        redis::cmd("ZCARD")
            .arg(&self.timers)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Messages delivered but not acknowledged, over every host.
    pub async fn pending(&self) -> Result<u64, QueueError> {
        let summary: Vec<Value> = redis::cmd("XPENDING")
            .arg(&self.options.stream)
            .arg(&self.options.group)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        match summary.into_iter().next() {
            Some(v) => redis::from_redis_value(v)
                .map_err(|e| QueueError::Corrupt(format!("redis: XPENDING: {e}"))),
            None => Ok(0),
        }
    }

    /// Messages in the stream: pending or not yet read.
    pub async fn stream_len(&self) -> Result<u64, QueueError> {
        redis::cmd("XLEN")
            .arg(&self.options.stream)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Up to `count` dead letters, oldest first.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.dead)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(reply
            .ids
            .into_iter()
            .map(|id| DeadLetter {
                entry: id.id,
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
            })
            .collect())
    }
}
