//! Appends: the append script's invocation and how its answer is read,
//! alone or as a continuation's start, with the acquire in the same
//! script.

use std::time::Duration;

use redis::Value;

use super::RedisStore;
use super::reply::Reply;
use super::scripts::{self, scripts};
use crate::execution::{Lease, Snapshot, Status};
use crate::ids::{Digest, ExecutionId};
use crate::journal::Entry;
use crate::persist::encode;
use crate::store::StoreError;

impl RedisStore {
    /// The append script's invocation for `entries` at `index` under
    /// `lease` (with `acquire`, an owner and ttl, the script that then takes
    /// the lease again and loads), with the digests of the large results
    /// it refers to, stored first: once under their digest, the journal
    /// getting a reference.
    pub(super) async fn append_invocation(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        index: u64,
        entries: &[Entry],
        acquire: Option<(&str, Duration)>,
    ) -> Result<(redis::ScriptInvocation<'static>, Vec<Digest>), StoreError> {
        let mut stored = Vec::new();
        let mut inv = match acquire {
            None => {
                let mut inv = scripts().append.prepare_invoke();
                for k in ["x", "j", "b", "i"] {
                    inv.key(self.key(k, id));
                }
                inv
            }
            Some((owner, ttl)) => {
                let mut inv = scripts().append_acquire_load.prepare_invoke();
                for k in ["x", "j", "s", "sk", "b", "i"] {
                    inv.key(self.key(k, id));
                }
                inv.arg(owner).arg(ttl.as_millis() as u64);
                inv
            }
        };
        inv.arg(lease.token).arg(index);
        for entry in entries {
            let large = match self.store_large_result(entry).await {
                Ok(large) => large,
                Err(e) => {
                    self.release_failed_refs(&stored).await;
                    return Err(e);
                }
            };
            if let Some((digest, bytes)) = large {
                inv.arg(bytes).arg(digest.to_hex()).arg("0").arg("");
                stored.push(digest);
                continue;
            }
            // An emitted item goes to the output stream, in the same
            // script; the journal records its digest.
            let (written, item) = entry.split_item();
            inv.arg(encode(written.as_ref())).arg("");
            match item {
                Some(item) => inv.arg("1").arg(item),
                None => inv.arg("0").arg(""),
            };
        }
        Ok((inv, stored))
    }

    /// What an append at `index` that referred to `stored` came to: the
    /// references of a refused append are released.
    pub(super) async fn appended<T>(
        &self,
        index: u64,
        stored: &[Digest],
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(done) => Ok(done),
            Err(StoreError::Conflict { id, len, .. }) => {
                self.release_failed_refs(stored).await;
                Err(StoreError::Conflict { id, index, len })
            }
            // Whether a retriable failure wrote the entries is unknown (the
            // reply may be what got lost), so their references are kept.
            Err(e) if e.is_retriable() => Err(e),
            Err(e) => {
                self.release_failed_refs(stored).await;
                Err(e)
            }
        }
    }

    /// Runs `script` (the `acquire_load` script, or the continuation's
    /// that appends first) with the journal's `LRANGE` from index `from`
    /// after it, in one round trip with the index's entry: the lease taken
    /// and the snapshot, as [`crate::store::Store::acquire_and_load`] gives
    /// them (with the journal from `from` on).
    pub(super) async fn acquire_and_load_with(
        &self,
        id: &ExecutionId,
        owner: &str,
        script: redis::ScriptInvocation<'_>,
        from: u64,
    ) -> Result<(Lease, Snapshot), StoreError> {
        let pipe = scripts::then_journal(&script, &self.key("j", id), from);
        let noted = self.noted_workflow(id);
        let (entered, replies) = self
            .enter_then(id, Status::Running, noted.as_deref(), &pipe, &script)
            .await?;
        let at = entered.at;
        let (v, journal): (Value, Vec<Vec<u8>>) = redis::from_redis_value(Value::Array(replies))
            .map_err(|e| StoreError::Corrupt(format!("redis: acquire and load: {e}")))?;
        let mut reply = self.checked(v, "acquire and load", id, Status::Running, "", at)?;
        let lease = Lease {
            owner: owner.to_string(),
            token: reply.next()?,
            expires_at_ms: reply.next()?,
        };
        // The lease is ours, so the journal cannot grow in between; a
        // shorter one was deleted after the lease was taken.
        let snapshot = reply
            .snapshot_from(journal, from)?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        self.remember_workflow(id, &snapshot.record.workflow);
        self.settle_unless(
            &entered,
            id,
            Status::Running,
            Some(snapshot.record.workflow.clone()),
        );
        Ok((lease, snapshot))
    }

    /// Checks an append's reply.
    pub(super) fn append_reply(id: &ExecutionId, answer: Value) -> Result<(), StoreError> {
        Reply::new(answer, "append")?.check(id).map(|_| ())
    }
}
