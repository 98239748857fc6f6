//! The queue's partitions: the work queue is K streams, each with its own
//! hash tag, so a Redis Cluster spreads them (and the timers and dead
//! letters that go with each) over its nodes.
//!
//! - **Partition 0** is the stream the queue has always had (`reprise:queue`,
//!   its timers at `{reprise:queue}:timers`, ...): a queue of one partition
//!   is the layout of every release before partitions, and plain `XADD`
//!   producers keep writing to it.
//! - **Partition p ≥ 1** is the stream `{<stream>:p<p>:<n>}` (the stream's
//!   name without braces), its timers at `{<stream>:p<p>:<n>}:timers`, and
//!   so on. `n` is the first number that puts it in the Cluster slot
//!   `slot0 + p × 16384 / K` (K the count it was made for): K partitions
//!   sit evenly apart in the slot space, so a cluster whose primaries hold
//!   equal slot ranges (what `redis-cli --cluster create` makes) gets K / N
//!   of them on each of its N nodes when N divides K.
//! - **The names are recorded** in Redis, in the list
//!   `{<stream>}:partitions` (partitions 1.. in order), by the first host
//!   that needs them, and every host and producer reads them there: all
//!   agree on the streams whatever their own setting. The count only
//!   grows. A host configured with fewer partitions than recorded uses the
//!   recorded ones (and says so), so no message, timer or dead letter is
//!   stranded in a partition nobody reads; one configured with more adds
//!   the missing ones.
//! - **An execution belongs to one partition**, `stable_hash(id) % K`: its
//!   resumes and its timer go there, so they stay in order. A start without
//!   an id goes to partition 0.

use crate::ids::ExecutionId;

/// Slots of a Redis Cluster.
const SLOTS: u64 = 16_384;

/// Most partitions a queue may have: every host runs a blocking read per
/// partition, on a connection of its own.
pub const MAX_PARTITIONS: usize = 64;

/// The Redis Cluster slot of `key`: CRC16 of its hash tag (the text
/// between the first `{` and the next `}`, when not empty) or of the key.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tag = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tag.unwrap_or(bytes)) % SLOTS as u16
}

/// The stream of partition `p` (at least 1) of the queue on `stream`, made
/// when the queue has `count` partitions.
pub fn stream_name(stream: &str, p: usize, count: usize) -> String {
    let base: String = stream.chars().filter(|c| !matches!(c, '{' | '}')).collect();
    let target =
        ((u64::from(slot(stream)) + p as u64 * SLOTS / count.max(1) as u64) % SLOTS) as u16;
    let name = |n: u32| format!("{{{base}:p{p}:{n}}}");
    // About 16,384 tries on average; a name that misses its slot only
    // spreads the partitions less evenly.
    (0..1 << 22)
        .map(name)
        .find(|candidate| slot(candidate) == target)
        .unwrap_or_else(|| name(0))
}

/// The partition of execution `id` in a queue of `count` partitions.
pub fn of(id: &ExecutionId, count: usize) -> usize {
    id.stable_hash() as usize % count.max(1)
}

/// The keys of one partition.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    /// The stream of messages.
    pub stream: String,
    /// Durable timers: execution ids by due time.
    pub timers: String,
    /// Dead letters.
    pub dead: String,
    /// Progress marks of taken-over messages.
    pub progress: String,
}

impl Keys {
    /// The keys of the partition on `stream`: the stream's own hash tag
    /// (or, without one, its whole name as the tag), so a script touching
    /// two of them runs on one Cluster slot.
    pub fn new(stream: String) -> Self {
        let tag = tag(&stream);
        Self {
            timers: format!("{tag}:timers"),
            dead: format!("{tag}:dead"),
            progress: format!("{tag}:progress"),
            stream,
        }
    }
}

/// The hash tag keys derived from `stream` use: with a tag in the name,
/// the name (appended to); without, the whole name made the tag.
pub(super) fn tag(stream: &str) -> String {
    if stream.contains('{') {
        stream.to_string()
    } else {
        format!("{{{stream}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot function agrees with Redis's (values from `CLUSTER KEYSLOT`).
    #[test]
    fn slots_match_redis() {
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("{}foo"), slot("{}foo"));
        assert_ne!(slot("{}foo"), slot("foo"));
        assert_eq!(slot("reprise:queue"), slot("{reprise:queue}:timers"));
    }

    /// Partitions sit evenly apart in the slot space, each with its own
    /// tag, and a name depends only on the stream, the partition and the
    /// count it was made for.
    #[test]
    fn partitions_spread_over_the_slots() {
        let count = 3;
        let slot0 = u64::from(slot("reprise:queue"));
        for p in 1..count {
            let name = stream_name("reprise:queue", p, count);
            assert!(
                name.starts_with(&format!("{{reprise:queue:p{p}:")),
                "{name}"
            );
            let want = (slot0 + p as u64 * SLOTS / count as u64) % SLOTS;
            assert_eq!(u64::from(slot(&name)), want, "{name}");
            assert_eq!(slot(&Keys::new(name.clone()).timers), slot(&name));
            assert_eq!(stream_name("reprise:queue", p, count), name);
        }
        let braced = stream_name("app:{jobs}", 1, 2);
        assert!(braced.starts_with("{app:jobs:p1:"), "{braced}");
    }

    /// Every partition gets executions, and an execution always the same.
    #[test]
    fn executions_spread_over_partitions() {
        let mut seen = [0usize; 4];
        for i in 0..4000 {
            let id = ExecutionId::new(format!("e-{i}")).unwrap();
            let p = of(&id, 4);
            assert_eq!(of(&id, 4), p);
            seen[p] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(of(&ExecutionId::new("x").unwrap(), 1), 0);
    }
}
