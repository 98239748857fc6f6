//! Reading the Redis store's replies: a script's tagged reply, the record
//! rebuilt from its hash fields, a consumer session from its text, and the
//! record's fixed part (`Meta`), which is persisted encoded.

use std::collections::HashMap;

use redis::{FromRedisValue, Value};
use serde::{Deserialize, Serialize};

use crate::execution::{
    ConsumerSession, ExecutionRecord, Lease, ParentLink, SignalRecord, Snapshot, Status,
    StreamPolicy,
};
use crate::ids::{Digest, ExecutionId};
use crate::journal::Entry;
use crate::persist::{decode, decode_entry_owned};
use crate::store::StoreError;

/// The part of a record that never changes, stored encoded in one field.
#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) struct Meta {
    pub(super) id: ExecutionId,
    pub(super) workflow: String,
    pub(super) digest: Digest,
    #[serde(with = "serde_bytes")]
    pub(super) input: Vec<u8>,
    pub(super) seed: u64,
    pub(super) created_at_ms: u64,
    #[serde(default)]
    pub(super) stream: Option<StreamPolicy>,
    /// Last and left out when absent, as in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) parent: Option<ParentLink>,
}

pub(super) fn bad_reply(what: &str) -> StoreError {
    StoreError::Corrupt(format!("redis: unexpected reply to {what}"))
}

pub(super) fn parse<T: FromRedisValue>(v: Value, what: &str) -> Result<T, StoreError> {
    T::from_redis_value(v).map_err(|e| StoreError::Corrupt(format!("redis: {what}: {e}")))
}

/// A script's reply: a tag (`ok`, `notfound`, ...) and the rest.
pub(super) struct Reply {
    pub(super) tag: String,
    pub(super) rest: std::vec::IntoIter<Value>,
    pub(super) what: &'static str,
}

impl Reply {
    pub(super) fn new(v: Value, what: &'static str) -> Result<Self, StoreError> {
        let Value::Array(items) = v else {
            return Err(bad_reply(what));
        };
        let mut rest = items.into_iter();
        let tag = parse(rest.next().ok_or_else(|| bad_reply(what))?, what)?;
        Ok(Self { tag, rest, what })
    }

    pub(super) fn next<T: FromRedisValue>(&mut self) -> Result<T, StoreError> {
        parse(
            self.rest.next().ok_or_else(|| bad_reply(self.what))?,
            self.what,
        )
    }

    /// Turns the replies every execution script may give into errors.
    pub(super) fn check(mut self, id: &ExecutionId) -> Result<Self, StoreError> {
        match self.tag.as_str() {
            "ok" => Ok(self),
            "notfound" => Err(StoreError::NotFound(id.clone())),
            "terminal" => Err(StoreError::Terminal {
                id: id.clone(),
                status: parse_status(&self.next::<String>()?)?,
            }),
            "active" => Err(StoreError::Active {
                id: id.clone(),
                status: parse_status(&self.next::<String>()?)?,
            }),
            "leaselost" => Err(StoreError::LeaseLost(id.clone())),
            "held" => Err(StoreError::LeaseHeld {
                id: id.clone(),
                owner: self.next()?,
                expires_at_ms: self.next()?,
            }),
            "conflict" => Err(StoreError::Conflict {
                id: id.clone(),
                index: 0,
                len: self.next()?,
            }),
            other => Err(StoreError::Corrupt(format!(
                "redis: unexpected reply {other:?} to {}",
                self.what
            ))),
        }
    }
}

pub(super) fn parse_status(s: &str) -> Result<Status, StoreError> {
    Ok(match s {
        "running" => Status::Running,
        "suspended" => Status::Suspended,
        "completed" => Status::Completed,
        "failed" => Status::Failed,
        "cancelled" => Status::Cancelled,
        other => return Err(StoreError::Corrupt(format!("unknown status {other:?}"))),
    })
}

/// Rebuilds a record from its hash fields and the journal length.
pub(super) fn record_from(
    fields: HashMap<String, Vec<u8>>,
    journal_len: u64,
) -> Result<ExecutionRecord, StoreError> {
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| StoreError::Corrupt(format!("execution record lacks field {name}")))
    };
    let number = |name: &str| -> Result<u64, StoreError> {
        match fields.get(name) {
            None => Ok(0),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("execution field {name} is not a number"))
                }),
        }
    };
    let meta: Meta = decode(field("meta")?)?;
    let status = parse_status(&String::from_utf8_lossy(field("st")?))?;
    let lease = match fields.get("lo") {
        Some(owner) => Some(Lease {
            owner: String::from_utf8_lossy(owner).into_owned(),
            token: number("lt")?,
            expires_at_ms: number("le")?,
        }),
        None => None,
    };
    Ok(ExecutionRecord {
        id: meta.id,
        workflow: meta.workflow,
        digest: meta.digest,
        input: meta.input,
        seed: meta.seed,
        status,
        wait: fields.get("wait").map(|v| decode(v)).transpose()?,
        outcome: fields.get("out").map(|v| decode(v)).transpose()?,
        journal_len,
        invocations: number("inv")?,
        lease,
        last_token: number("tok")?,
        created_at_ms: meta.created_at_ms,
        updated_at_ms: number("upd")?,
        stream: meta.stream,
        parent: meta.parent,
        trace: fields
            .get("tp")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(crate::telemetry::TraceParent::parse),
    })
}

impl Reply {
    /// Reads a snapshot (record, signals) from the reply, with its journal
    /// `raw` read by a command pipelined after the script. Entries are only
    /// ever appended, so a journal longer than the record's length had
    /// entries appended in between, and its first `journal_len` entries
    /// are the journal as the record was read: the snapshot keeps those.
    /// A shorter one was deleted in between (and perhaps created again):
    /// `None`.
    pub(super) fn snapshot_with(
        &mut self,
        raw: Vec<Vec<u8>>,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.snapshot_from(raw, 0)
    }

    /// [`Reply::snapshot_with`] for a journal read from index `from` on.
    pub(super) fn snapshot_from(
        &mut self,
        mut raw: Vec<Vec<u8>>,
        from: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let record = self.record()?;
        let len = usize::try_from(record.journal_len.saturating_sub(from)).unwrap_or(usize::MAX);
        if raw.len() < len {
            return Ok(None);
        }
        raw.truncate(len);
        self.snapshot_of(record, raw).map(Some)
    }

    fn snapshot_of(
        &mut self,
        record: ExecutionRecord,
        raw: Vec<Vec<u8>>,
    ) -> Result<Snapshot, StoreError> {
        let journal = decode_journal(raw)?;
        let payloads: Vec<Vec<u8>> = self.next()?;
        let names: Vec<String> = self.next()?;
        let signals = payloads
            .into_iter()
            .zip(names)
            .enumerate()
            .map(|(seq, (payload, name))| SignalRecord {
                seq: seq as u64,
                name,
                payload,
            })
            .collect();
        Ok(Snapshot {
            record,
            journal,
            signals,
        })
    }

    /// Reads a record (hash fields, then journal length) from the reply.
    pub(super) fn record(&mut self) -> Result<ExecutionRecord, StoreError> {
        let fields: HashMap<String, Vec<u8>> = self.next()?;
        let len: u64 = self.next()?;
        record_from(fields, len)
    }
}

pub(super) fn parse_session(id: String, v: &str) -> Result<ConsumerSession, StoreError> {
    let bad = || StoreError::Corrupt(format!("consumer session {id} reads {v:?}"));
    let mut parts = v.split('|');
    let mut next = || parts.next().ok_or_else(bad);
    let acked: i64 = next()?.parse().map_err(|_| bad())?;
    let last_access_ms: u64 = next()?.parse().map_err(|_| bad())?;
    let closed = next()? == "1";
    Ok(ConsumerSession {
        acked: u64::try_from(acked).ok(),
        last_access_ms,
        closed,
        id,
    })
}

/// A journal's entries as `LRANGE` returned them, decoded in place (see
/// [`decode_entry_owned`]).
pub(super) fn decode_journal(raw: Vec<Vec<u8>>) -> Result<Vec<Entry>, StoreError> {
    let mut journal = Vec::with_capacity(raw.len());
    for e in raw {
        journal.push(decode_entry_owned(e)?);
    }
    Ok(journal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::OnAbandon;
    use crate::journal::EntryKind;
    use crate::persist::encode;
    use crate::persist::golden::{check, digest};

    /// A load's reply as Redis sends it: the script's (record of
    /// `journal_len` entries, no signals), and `entries` checkpoints read
    /// by the pipelined `LRANGE`.
    fn load_reply(journal_len: i64, entries: u64) -> (Reply, Vec<Vec<u8>>) {
        let meta = Meta {
            id: ExecutionId::new("order-42").unwrap(),
            workflow: "checkout".into(),
            digest: digest("component"),
            input: vec![0xc0],
            seed: 7,
            created_at_ms: 1_700_000_000_000,
            stream: None,
            parent: None,
        };
        let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
        let fields = [
            bulk(b"meta"),
            bulk(&encode(&meta)),
            bulk(b"st"),
            bulk(b"suspended"),
        ];
        let script = Value::Array(vec![
            bulk(b"ok"),
            Value::Array(fields.to_vec()),
            Value::Int(journal_len),
            Value::Array(vec![]),
            Value::Array(vec![]),
        ]);
        let journal = (0..entries)
            .map(|i| {
                encode(&Entry {
                    at_ms: 1_700_000_000_000,
                    duration_us: i,
                    kind: EntryKind::Checkpoint,
                })
            })
            .collect();
        (Reply::new(script, "load").unwrap(), journal)
    }

    /// The journal is read after the record, so it may have grown in
    /// between (the snapshot keeps what the record counts) or been deleted
    /// (no snapshot: the caller reads again).
    #[test]
    fn a_journal_read_after_its_record_is_cut_to_the_records_length() {
        let (mut reply, journal) = load_reply(2, 2);
        let same = reply.snapshot_with(journal).unwrap().unwrap();
        assert_eq!(same.record.journal_len, 2);
        assert_eq!(same.journal.len(), 2);

        let (mut reply, journal) = load_reply(2, 5);
        let grown = reply.snapshot_with(journal).unwrap().unwrap();
        assert_eq!(grown.journal, same.journal);

        let (mut reply, journal) = load_reply(2, 1);
        assert!(reply.snapshot_with(journal).unwrap().is_none());
    }

    /// The record's fixed part keeps its committed encoding (see
    /// `persist::golden`).
    #[test]
    fn meta_matches_its_committed_bytes() {
        check(
            "redis-meta",
            &Meta {
                id: ExecutionId::new("order-42").unwrap(),
                workflow: "checkout".into(),
                digest: digest("component"),
                input: vec![0x81, 0xa3, b's', b'k', b'u', 0x01],
                seed: 7,
                created_at_ms: 1_700_000_000_000,
                stream: Some(StreamPolicy {
                    window: 10,
                    on_abandon: OnAbandon::Cancel,
                    window_bytes: None,
                }),
                parent: None,
            },
        );
        check(
            "redis-meta-child",
            &Meta {
                id: ExecutionId::new("order-42.3").unwrap(),
                workflow: "invoice".into(),
                digest: digest("component"),
                input: vec![0xc0],
                seed: 7,
                created_at_ms: 1_700_000_000_000,
                stream: None,
                parent: Some(ParentLink {
                    id: ExecutionId::new("order-42").unwrap(),
                    handle: 3,
                }),
            },
        );
    }
}
