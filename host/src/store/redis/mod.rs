//! The Redis store: the production backend, shared by many hosts.
//!
//! Layout (ARCHITECTURE.md has the full table). Every key of one execution
//! carries the hash tag `{<id>}`, so an execution lives in one Redis Cluster
//! slot and each of its operations is one Lua script, atomic on the server:
//!
//! - `P:x:{id}` hash: the record (`meta` = encoded immutable part, `st`,
//!   `wait`, `out`, `inv`, `tok`, lease `lo`/`lt`/`le`, `upd`);
//! - `P:j:{id}` list: the journal, one encoded [`Entry`] per element;
//! - `P:s:{id}`, `P:sk:{id}` lists: signal payloads and names, by sequence;
//!   `P:sc:{id}` hash: signals received per name;
//! - `P:b:{id}` list: digests of the stored values the journal refers to;
//! - `P:i:{id}` list: the items emitted, by offset;
//! - `P:c:{id}` hash: consumer sessions, `acked|last access|closed` by
//!   session id.
//!
//! Values shared across executions live under their own keys: components
//! (`P:component:<hex>`), the deployment table (`P:deployments`), the index
//! of finished executions by end time (`P:finished`, a sorted set), and
//! large tool results (`P:blob:{<hex>}` with reference count
//! `P:blobref:{<hex>}`).
//!
//! An append is one `EVALSHA` (the lease's fencing token, its expiry and the
//! expected index are checked, the entry pushed: four commands, one write,
//! as lean as the check allows); loading an execution with its whole
//! journal is one round trip whatever the journal's length (a script and
//! the journal's `LRANGE`, pipelined). Lease expiry uses
//! the Redis server's clock, so hosts with skewed clocks still agree.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisError, Value};

use super::{
    Created, Delivered, DeploymentVersion, ExecutionPage, ItemsPage, JournalSlice, ListQuery,
    Store, StoreError, Suspended,
};
use crate::execution::{
    ConsumerSession, ExecutionRecord, Lease, Outcome, SignalRecord, Snapshot, Status, Wait,
};
use crate::ids::{Digest, ExecutionId};
use crate::journal::Entry;
use crate::persist::encode;
use crate::redis_conn::{Conn, RedisFailure, RedisOptions, connection};

mod append;
mod blobs;
mod deployments;
mod index;
mod reply;
mod scripts;

use reply::{Meta, Reply, parse_session};
use scripts::{scripts, waited_names};

/// A Redis error as a store error (see [`RedisFailure`]).
fn redis_err(e: RedisError) -> StoreError {
    RedisFailure::from(e).into()
}

/// A store in Redis; see the module documentation for the layout.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    options: RedisOptions,
    /// Workflow names of executions this host drives, to settle their
    /// index entries without a lookup (see `index/mod.rs`).
    workflows: std::sync::Arc<std::sync::Mutex<HashMap<ExecutionId, std::sync::Arc<str>>>>,
    /// Index settles sent as round trips of their own (see
    /// [`RedisStore::settles_in_background`]).
    background_settles: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://`, `rediss://` for TLS,
    /// `redis+unix://` or `unix://` for a socket; a password goes in the
    /// URL). Fails if Redis cannot be reached now; later outages make
    /// operations fail as retriable while the connection is re-established
    /// in the background. A store written before the execution indexes
    /// existed gets them built first (see `index/mod.rs`).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let conn = connection(url, &options).await?;
        let store = Self {
            conn,
            options,
            workflows: Default::default(),
            background_settles: Default::default(),
        };
        store.build(super::INDEX_BUILD_BATCH).await?;
        Ok(store)
    }

    fn key(&self, kind: &str, id: &ExecutionId) -> String {
        format!("{}:{kind}:{{{id}}}", self.options.prefix)
    }

    fn blob_keys(&self, digest: &Digest) -> (String, String) {
        let hex = digest.to_hex();
        let p = &self.options.prefix;
        (
            format!("{p}:blobref:{{{hex}}}"),
            format!("{p}:blob:{{{hex}}}"),
        )
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_component_bytes(digest, bytes).await
    }

    async fn get_component(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        self.component_bytes(digest).await
    }

    async fn put_deployment(
        &self,
        name: &str,
        version: &DeploymentVersion,
    ) -> Result<DeploymentVersion, StoreError> {
        self.deploy(name, version).await
    }

    async fn deployment_versions(&self, name: &str) -> Result<Vec<DeploymentVersion>, StoreError> {
        self.versions(name).await
    }

    async fn list_deployments(&self) -> Result<Vec<(String, DeploymentVersion)>, StoreError> {
        self.deployments().await
    }

    async fn get_deployment(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        self.deployed(name).await
    }

    async fn create_execution(&self, record: &ExecutionRecord) -> Result<Created, StoreError> {
        let meta = encode(&Meta {
            id: record.id.clone(),
            workflow: record.workflow.clone(),
            digest: record.digest,
            input: record.input.clone(),
            seed: record.seed,
            created_at_ms: record.created_at_ms,
            stream: record.stream,
            parent: record.parent.clone(),
        });
        // A record created leased (an execution started where it runs) is
        // written as its first acquire would leave it, the lease dated by
        // the Redis clock (the script adds `le`).
        let ttl_ms = record.lease.as_ref().map_or(0, |l| {
            l.expires_at_ms.saturating_sub(record.updated_at_ms).max(1)
        });
        let mut inv = scripts().create.prepare_invoke();
        inv.key(self.key("x", &record.id))
            .key(self.key("j", &record.id))
            .arg(ttl_ms)
            .arg("meta")
            .arg(meta)
            .arg("st")
            .arg(record.status.as_str())
            .arg("inv")
            .arg(record.invocations)
            .arg("tok")
            .arg(record.last_token)
            .arg("upd")
            .arg(record.updated_at_ms);
        if let Some(wait) = &record.wait {
            inv.arg("wait").arg(encode(wait));
        }
        if let Some(out) = &record.outcome {
            inv.arg("out").arg(encode(out));
        }
        if let Some(lease) = &record.lease {
            inv.arg("lo").arg(&lease.owner).arg("lt").arg(lease.token);
        }
        // Written once; a hash field of its own, read with the record.
        if let Some(trace) = &record.trace {
            inv.arg("tp").arg(trace.as_str());
        }
        let (entered, v) = self
            .enter_then_run(&record.id, record.status, Some(&record.workflow), &inv)
            .await?;
        let mut reply = Reply::new(v, "create")?;
        match reply.tag.as_str() {
            "exists" => {
                let existing = reply.record()?;
                if existing.status != record.status {
                    self.unenter_later(&record.id, record.status, &record.workflow, entered.at);
                }
                Ok(Created::Existing(Box::new(existing)))
            }
            _ => {
                reply.check(&record.id)?;
                self.remember_workflow(&record.id, &record.workflow);
                // An id used before (and deleted) may have entries left.
                self.settle_unless(
                    &entered,
                    &record.id,
                    record.status,
                    Some(record.workflow.clone()),
                );
                Ok(Created::New)
            }
        }
    }

    async fn get_execution(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError> {
        let v: Value = scripts()
            .get
            .key(self.key("x", id))
            .key(self.key("j", id))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Reply::new(v, "get")?.check(id)?.record()
    }

    async fn load(&self, id: &ExecutionId) -> Result<Snapshot, StoreError> {
        let keys = ["x", "j", "s", "sk"].map(|k| self.key(k, id));
        let (pipe, script) = scripts::load(&keys);
        // A journal shorter than the record says was deleted between the
        // two reads: read again, which finds it gone (or its successor).
        for _ in 0..3 {
            let (v, journal): (Value, Vec<Vec<u8>>) =
                scripts::query_with_script(&mut self.conn(), &pipe, &script)
                    .await
                    .map_err(redis_err)?;
            if let Some(snapshot) = Reply::new(v, "load")?.check(id)?.snapshot_with(journal)? {
                return Ok(snapshot);
            }
        }
        Err(StoreError::Unavailable(format!(
            "redis: the journal of {id} changed under every read"
        )))
    }

    async fn journal_page(
        &self,
        id: &ExecutionId,
        from: u64,
        max: usize,
    ) -> Result<JournalSlice, StoreError> {
        // LRANGE's stop is inclusive (and -1 would mean the last entry).
        let (first, last) = range_bounds(from, max.max(1));
        let v: Value = scripts()
            .range
            .key(self.key("x", id))
            .key(self.key("j", id))
            .arg(first)
            .arg(last)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "journal page")?.check(id)?;
        let total: u64 = reply.next()?;
        let mut raw: Vec<Vec<u8>> = reply.next()?;
        raw.truncate(max);
        let entries = reply::decode_journal(raw)?;
        Ok(JournalSlice { entries, total })
    }

    async fn acquire_and_load(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<(Lease, Snapshot), StoreError> {
        let keys = ["x", "j", "s", "sk"].map(|k| self.key(k, id));
        let script = scripts::acquire_load(&keys, owner, ttl);
        self.acquire_and_load_with(id, owner, script, 0).await
    }

    async fn append_and_acquire(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        index: u64,
        entries: &[Entry],
        owner: &str,
        ttl: Duration,
        journal_from: u64,
    ) -> Result<(Lease, Snapshot), StoreError> {
        // One script appends and takes the lease again (a refused append
        // takes nothing), the journal's `LRANGE` right after it: one round
        // trip and, with AOF `always`, one fsync.
        let (script, stored) = self
            .append_invocation(id, lease, index, entries, Some((owner, ttl)))
            .await?;
        let taken = self
            .acquire_and_load_with(id, owner, script, journal_from)
            .await;
        self.appended(index, &stored, taken).await
    }

    async fn list_page(&self, query: &ListQuery) -> Result<ExecutionPage, StoreError> {
        self.page(query).await
    }

    async fn count_by_status(&self) -> Result<HashMap<Status, u64>, StoreError> {
        self.counts().await
    }

    async fn delete_execution(&self, id: &ExecutionId) -> Result<(), StoreError> {
        self.delete_inner(id, None).await.map(|_| ())
    }

    async fn purge_finished(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.purge_ended_before(before_ms, limit).await
    }

    async fn get_blob(&self, digest: &Digest, len: u64) -> Result<Vec<u8>, StoreError> {
        self.fetch_blob(digest, len).await
    }

    async fn acquire_lease(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let mut script = scripts().acquire.prepare_invoke();
        script
            .key(self.key("x", id))
            .arg(owner)
            .arg(ttl.as_millis() as u64);
        let noted = self.noted_workflow(id);
        let (entered, v) = self
            .enter_then_run(id, Status::Running, noted.as_deref(), &script)
            .await?;
        let mut reply = self.checked(v, "acquire lease", id, Status::Running, "", entered.at)?;
        let lease = Lease {
            owner: owner.to_string(),
            token: reply.next()?,
            expires_at_ms: reply.next()?,
        };
        self.settle_unless(&entered, id, Status::Running, noted.map(|w| w.to_string()));
        Ok(lease)
    }

    async fn renew_lease(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let v: Value = scripts()
            .renew
            .key(self.key("x", id))
            .arg(lease.token)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "renew lease")?.check(id)?;
        Ok(Lease {
            expires_at_ms: reply.next()?,
            ..lease.clone()
        })
    }

    async fn append_many(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        index: u64,
        entries: &[Entry],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let (inv, stored) = self
            .append_invocation(id, lease, index, entries, None)
            .await?;
        let answer = inv
            .invoke_async::<Value>(&mut self.conn())
            .await
            .map_err(redis_err)
            .and_then(|v| Self::append_reply(id, v));
        self.appended(index, &stored, answer).await
    }

    async fn suspend(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        wait: &Wait,
        consumed: u64,
    ) -> Result<Suspended, StoreError> {
        // The names a signal must have to end this wait, each with how many
        // of that name the journal has consumed.
        let signals: Vec<(&str, u64)> = match wait {
            Wait::Signal { name } => vec![(name.as_str(), consumed)],
            Wait::Any { signals, .. } => signals
                .iter()
                .map(|s| (s.name.as_str(), s.consumed))
                .collect(),
            _ => Vec::new(),
        };
        let workflow = self.workflow_of(id).await?;
        let mut invocation = scripts().suspend.prepare_invoke();
        invocation
            .key(self.key("x", id))
            .key(self.key("sc", id))
            .arg(lease.token)
            .arg(encode(wait))
            .arg(encode(&Wait::Ready))
            .arg(waited_names(signals.iter().map(|(name, _)| *name)));
        for (name, consumed) in &signals {
            invocation.arg(*name).arg(*consumed);
        }
        let (entered, v) = self
            .enter_then_run(id, Status::Suspended, Some(&workflow), &invocation)
            .await?;
        let mut reply = self.checked(v, "suspend", id, Status::Suspended, &workflow, entered.at)?;
        self.settle_unless(&entered, id, Status::Suspended, Some(workflow));
        Ok(if reply.next::<i64>()? == 1 {
            Suspended::Ready
        } else {
            Suspended::Waiting
        })
    }

    async fn finish(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        outcome: &Outcome,
    ) -> Result<ExecutionRecord, StoreError> {
        let status = outcome.status();
        let workflow = self.workflow_of(id).await?;
        let mut script = scripts().finish.prepare_invoke();
        script
            .key(self.key("x", id))
            .key(self.key("j", id))
            .arg(lease.token)
            .arg(outcome.status().as_str())
            .arg(encode(outcome));
        let (entered, v) = self
            .enter_then_run(id, status, Some(&workflow), &script)
            .await?;
        let record = self
            .checked(v, "finish", id, status, &workflow, entered.at)?
            .record()?;
        self.settle_unless(&entered, id, status, Some(workflow));
        Ok(record)
    }

    async fn release_lease(&self, id: &ExecutionId, lease: &Lease) -> Result<(), StoreError> {
        let workflow = self.workflow_of(id).await?;
        let mut script = scripts().release.prepare_invoke();
        script
            .key(self.key("x", id))
            .arg(lease.token)
            .arg(encode(&Wait::Ready));
        let (entered, v) = self
            .enter_then_run(id, Status::Suspended, Some(&workflow), &script)
            .await?;
        self.checked(
            v,
            "release lease",
            id,
            Status::Suspended,
            &workflow,
            entered.at,
        )?;
        self.settle_unless(&entered, id, Status::Suspended, Some(workflow));
        Ok(())
    }

    async fn signal(
        &self,
        id: &ExecutionId,
        name: &str,
        payload: &[u8],
    ) -> Result<Delivered, StoreError> {
        let v: Value = scripts()
            .signal
            .key(self.key("x", id))
            .key(self.key("s", id))
            .key(self.key("sk", id))
            .key(self.key("sc", id))
            .arg(name)
            .arg(payload)
            .arg(encode(&Wait::Signal {
                name: name.to_string(),
            }))
            .arg(encode(&Wait::Ready))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "signal")?.check(id)?;
        Ok(Delivered {
            seq: reply.next()?,
            woke: reply.next::<i64>()? == 1,
        })
    }

    async fn next_signal(
        &self,
        id: &ExecutionId,
        name: &str,
        skip: u64,
    ) -> Result<Option<SignalRecord>, StoreError> {
        let v: Value = scripts()
            .next_signal
            .key(self.key("s", id))
            .key(self.key("sk", id))
            .arg(name)
            .arg(skip)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let reply = Reply::new(v, "next signal")?;
        if reply.tag == "none" {
            return Ok(None);
        }
        let mut reply = reply.check(id)?;
        Ok(Some(SignalRecord {
            seq: reply.next()?,
            name: name.to_string(),
            payload: reply.next()?,
        }))
    }

    async fn items(
        &self,
        id: &ExecutionId,
        after: Option<u64>,
        max: usize,
    ) -> Result<ItemsPage, StoreError> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        if max == 0 {
            let page = self.items(id, after, 1).await?;
            return Ok(ItemsPage {
                items: Vec::new(),
                count: page.count,
            });
        }
        let (first, last) = range_bounds(from, max);
        let v: Value = scripts()
            .range
            .key(self.key("x", id))
            .key(self.key("i", id))
            .arg(first)
            .arg(last)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "items")?.check(id)?;
        let count: u64 = reply.next()?;
        let raw: Vec<Vec<u8>> = reply.next()?;
        Ok(ItemsPage {
            items: (from..).zip(raw).collect(),
            count,
        })
    }

    async fn touch_session(
        &self,
        id: &ExecutionId,
        session: &str,
        acked: Option<u64>,
    ) -> Result<ConsumerSession, StoreError> {
        // Lua numbers are doubles: whole numbers are exact up to 2^53.
        let acked = acked.map_or(-1, |a| a.min(1 << 53) as i64);
        let found = self.session_op(id, session, acked, "").await?;
        found.ok_or_else(|| StoreError::Corrupt("a touched session is missing".into()))
    }

    async fn close_session(
        &self,
        id: &ExecutionId,
        session: &str,
    ) -> Result<Option<ConsumerSession>, StoreError> {
        self.session_op(id, session, -1, "close").await
    }

    async fn sessions(&self, id: &ExecutionId) -> Result<Vec<ConsumerSession>, StoreError> {
        let v: Value = scripts()
            .sessions
            .key(self.key("x", id))
            .key(self.key("c", id))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "sessions")?.check(id)?;
        let fields: HashMap<String, String> = reply.next()?;
        fields
            .into_iter()
            .map(|(sid, v)| parse_session(sid, &v))
            .collect()
    }

    async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError> {
        let workflow = self.workflow_of(id).await?;
        let mut script = scripts().cancel.prepare_invoke();
        script
            .key(self.key("x", id))
            .key(self.key("j", id))
            .arg(encode(&Outcome::Cancelled));
        let (entered, v) = self
            .enter_then_run(id, Status::Cancelled, Some(&workflow), &script)
            .await?;
        let record = self
            .checked(v, "cancel", id, Status::Cancelled, &workflow, entered.at)?
            .record()?;
        self.settle_unless(&entered, id, Status::Cancelled, Some(workflow));
        Ok(record)
    }
}

/// Reads a session stored as `acked|last access|closed`.
impl RedisStore {
    async fn session_op(
        &self,
        id: &ExecutionId,
        session: &str,
        acked: i64,
        op: &str,
    ) -> Result<Option<ConsumerSession>, StoreError> {
        let v: Value = scripts()
            .session
            .key(self.key("x", id))
            .key(self.key("c", id))
            .arg(session)
            .arg(acked)
            .arg(op)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "session")?.check(id)?;
        let found: Option<String> = reply.next()?;
        found
            .map(|v| parse_session(session.to_string(), &v))
            .transpose()
    }
}

/// The `LRANGE` bounds (inclusive, as Redis integers) of `max` (at least
/// 1) elements from index `from`.
fn range_bounds(from: u64, max: usize) -> (i64, i64) {
    let last = from.saturating_add(max as u64 - 1);
    (
        from.min(i64::MAX as u64) as i64,
        last.min(i64::MAX as u64) as i64,
    )
}
