//! The work queue: how several hosts on one Redis share executions.
//!
//! Work is a message on a Redis stream read through one consumer group, so
//! each message goes to one host at a time. The queue may be split into
//! partitions, each a stream of its own on its own Cluster slot, every host
//! reading every partition (see [`partition`]); what follows holds for each.
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
//! A partition's stream, timers and dead letters share one hash tag, so the
//! scripts that touch two of them run on one Redis Cluster slot.

use std::collections::BTreeMap;
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

mod inspect;
mod message;
pub mod partition;
mod timers;

pub use message::{DeadLetter, Delivery, Entry, MalformedMessage, Message};
use partition::Keys;

/// Settings of a [`RedisQueue`].
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// The stream of partition 0. Its timers are at `{<stream>}:timers` and
    /// its dead letters at `{<stream>}:dead` (same Cluster slot); the other
    /// partitions' names are derived from it (see [`partition`]).
    pub stream: String,
    /// Partitions wanted (1 to [`partition::MAX_PARTITIONS`]). The queue
    /// has at least as many as recorded in Redis: see
    /// [`RedisQueue::partitions`].
    pub partitions: usize,
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
            partitions: 1,
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

/// Appends to the list of partition names (KEYS[1]) those of ARGV it does
/// not have yet (ARGV[i] is partition i's name), and returns the list.
const PARTITIONS: &str = include_str!("lua/partitions.lua");

/// A work queue on Redis Streams; see the module documentation.
#[derive(Clone)]
pub struct RedisQueue {
    /// Shared connection for short commands.
    conn: Conn,
    /// A dedicated connection per partition for blocking reads, which
    /// would otherwise hold up every command queued behind them.
    readers: Vec<Conn>,
    options: QueueOptions,
    /// The partitions' keys, partition 0 first.
    parts: Vec<Keys>,
    /// Pub/sub channel of ended invocations (see
    /// [`RedisQueue::publish_settled`]).
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
    /// Connects to the Redis at `url`, settles the partitions (the recorded
    /// ones, plus any `options.partitions` asks for beyond them), and
    /// creates the consumer group on each if it does not exist yet.
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
        if !(1..=partition::MAX_PARTITIONS).contains(&options.partitions) {
            return Err(QueueError::Invalid(format!(
                "the queue's partitions must be 1 to {}, got {}",
                partition::MAX_PARTITIONS,
                options.partitions
            )));
        }
        let refuse_concurrency = |partitions: usize| {
            QueueError::Invalid(format!(
                "the queue's concurrency ({}) must be at least its partition count \
                 ({partitions}): every partition's reader needs room for a message",
                options.concurrency,
            ))
        };
        if options.concurrency < options.partitions {
            return Err(refuse_concurrency(options.partitions));
        }
        let tag = partition::tag(&options.stream);
        let conn = redis_connection(url, redis).await?;
        let names = Self::partition_names(&conn, &format!("{tag}:partitions"), &options).await?;
        if options.concurrency < names.len() {
            return Err(refuse_concurrency(names.len()));
        }
        let mut blocking = redis.clone();
        blocking.response_timeout = redis.response_timeout + options.block;
        let mut readers = Vec::with_capacity(names.len());
        for _ in &names {
            readers.push(redis_connection(url, &blocking).await?);
        }
        let queue = Self {
            conn,
            readers,
            parts: names.into_iter().map(Keys::new).collect(),
            settled: format!("{tag}:settled"),
            sweeper: format!("{tag}:sweeper"),
            client: redis_client(url, redis)?,
            options,
            ack: Script::new(ACK),
            dead_letter: Script::new(DEAD_LETTER),
            stalled: Script::new(STALLED),
            fire: Script::new(timers::FIRE_TIMERS),
        };
        for part in &queue.parts {
            let created: Result<(), _> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&part.stream)
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
        }
        Ok(queue)
    }

    /// The streams of the partitions, partition 0 first: those recorded at
    /// `record`, plus the ones `options` asks for beyond them (recorded
    /// now). Names are made only for partitions not yet recorded.
    async fn partition_names(
        conn: &Conn,
        record: &str,
        options: &QueueOptions,
    ) -> Result<Vec<String>, QueueError> {
        let mut conn = conn.clone();
        let mut names: Vec<String> = redis::cmd("LRANGE")
            .arg(record)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let want = options.partitions;
        if names.len() + 1 < want {
            let mut wanted = names.clone();
            wanted.extend(
                (names.len() + 1..want).map(|p| partition::stream_name(&options.stream, p, want)),
            );
            names = Script::new(PARTITIONS)
                .key(record)
                .arg(wanted)
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err)?;
            tracing::info!(partitions = names.len() + 1, "queue partitions recorded");
        } else if names.len() + 1 > want {
            tracing::warn!(
                recorded = names.len() + 1,
                configured = want,
                "the queue has more partitions than configured; reading all of them \
                 (a queue's partitions are never removed, so no message is stranded)"
            );
        }
        names.insert(0, options.stream.clone());
        Ok(names)
    }

    /// The settings.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// How many partitions the queue has: the configured count, or more if
    /// Redis records more (a count never shrinks).
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// The stream of partition `p`.
    pub fn stream(&self, p: usize) -> &str {
        &self.parts[p].stream
    }

    /// The partition of execution `id`.
    pub fn partition_of(&self, id: &ExecutionId) -> usize {
        partition::of(id, self.parts.len())
    }

    /// Adds a message to its execution's partition (partition 0 for a
    /// start without an id); returns where it went.
    pub async fn enqueue(&self, message: &Message) -> Result<Entry, QueueError> {
        let partition = match message {
            Message::Resume(id) | Message::Start { id: Some(id), .. } => self.partition_of(id),
            Message::Start { id: None, .. } => 0,
        };
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.parts[partition].stream).arg("*");
        for (k, v) in message.fields() {
            cmd.arg(k).arg(v);
        }
        let id = cmd
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(Entry { partition, id })
    }

    /// Up to `count` new messages of partition `p` for `consumer`, waiting
    /// up to the configured `block` for the first.
    pub async fn read(
        &self,
        p: usize,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.options.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(self.options.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.parts[p].stream)
            .arg(">")
            .query_async(&mut self.readers[p].clone())
            .await
            .map_err(redis_err)?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|id| Delivery::new(p, id, 1))
            .collect())
    }

    /// Takes over up to `count` messages of partition `p` pending longer
    /// than `claim_after` (their hosts are presumed dead). Each is claimed
    /// with a minimum idle time, so two hosts never take over the same
    /// message.
    pub async fn reclaim(
        &self,
        p: usize,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut conn = self.conn.clone();
        let stream = &self.parts[p].stream;
        let idle = self.options.claim_after.as_millis() as u64;
        // Each row: [entry id, consumer, idle ms, deliveries].
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(stream)
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
                .arg(stream)
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
                    .map(|id| Delivery::new(p, id, deliveries + 1)),
            );
        }
        Ok(out)
    }

    /// `entries` grouped by partition.
    fn by_partition<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> BTreeMap<usize, Vec<&'a str>> {
        let mut out: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for e in entries {
            out.entry(e.partition).or_default().push(&e.id);
        }
        out
    }

    /// Marks `entries` as still being worked on by `consumer`, so no other
    /// host takes them over.
    pub async fn refresh(&self, consumer: &str, entries: &[Entry]) -> Result<(), QueueError> {
        for (p, ids) in self.by_partition(entries) {
            redis::cmd("XCLAIM")
                .arg(&self.parts[p].stream)
                .arg(&self.options.group)
                .arg(consumer)
                .arg(0)
                .arg(ids)
                .arg("JUSTID")
                .query_async::<Value>(&mut self.conn.clone())
                .await
                .map_err(redis_err)?;
        }
        Ok(())
    }

    /// Acknowledges and deletes `entries`.
    pub async fn ack(&self, entries: &[Entry]) -> Result<(), QueueError> {
        for (p, ids) in self.by_partition(entries) {
            self.ack
                .key(&self.parts[p].stream)
                .key(&self.parts[p].progress)
                .arg(&self.options.group)
                .arg(ids)
                .invoke_async::<Value>(&mut self.conn.clone())
                .await
                .map_err(redis_err)?;
        }
        Ok(())
    }

    /// Moves a message to its partition's dead-letter stream with `reason`,
    /// in one step with its acknowledgement.
    pub async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), QueueError> {
        let part = &self.parts[d.entry.partition];
        let mut inv = self.dead_letter.key(&part.stream);
        inv.key(&part.dead)
            .key(&part.progress)
            .arg(&self.options.group)
            .arg(&d.entry.id)
            .arg("reason")
            .arg(reason)
            .arg("original")
            .arg(&d.entry.id)
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
            .key(&self.parts[d.entry.partition].progress)
            .arg(&d.entry.id)
            .arg(journal_len)
            .arg(d.deliveries)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }
}
