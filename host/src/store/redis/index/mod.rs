//! The Redis store's indexes: executions by status, and by workflow and
//! status, ordered by the time of their last status change.
//!
//! Layout. Each index list is split over [`BUCKETS`] sorted sets, an
//! execution going to bucket `fnv1a(id) % BUCKETS`; a bucket's sets share
//! the hash tag `{ix<b>}`, so a cluster spreads the buckets over its slots
//! (and nodes) instead of making one hot key, and a read merges the
//! buckets (see [`crate::store::listing`]):
//!
//! - `P:{ix<b>}:<status>`: score = time of the change to that status (ms),
//!   member = execution id;
//! - `P:{ix<b>}:<status>:w:<workflow>`: the same per workflow, for every
//!   status but `running` (running executions are few, bounded by the
//!   hosts' concurrency, so a workflow's running ones are read from the
//!   `running` list and filtered; that spares a lookup of the workflow at
//!   the lease, the hot path);
//! - `P:indexed`: present once a store written before the indexes existed
//!   has had them built ([`RedisStore::build`]).
//!
//! Consistency. An execution's keys and its index buckets are in
//! different slots, so one script cannot change both on a cluster.
//! Instead every status change *enters* the execution under its new status
//! before the record's script runs, and *settles* (removes it from the
//! other statuses' lists) after it succeeded: on one Redis in the change's
//! own pipeline, where the settle checks the record has the new status
//! ([`Entered::settled`]), else in the background. A crash or a refused script
//! can thus leave an extra, stale entry, never a missing one. A reader
//! checks each entry against the record it reads anyway, skips a stale one
//! and removes it once it is older than [`GRACE_MS`] (younger, it may be
//! a change in flight), only if it is still the entry it read. Counts
//! ([`RedisStore::counts`]) are the lists' sizes, so a stale entry counts
//! until a reader removes it.

use futures_util::future::try_join_all;

use redis::Value;

use super::reply::{Meta, Reply};
use super::{RedisStore, redis_err};
use crate::execution::{ExecutionRecord, Status};
use crate::ids::ExecutionId;
use crate::persist::decode;
use crate::store::listing::ListQuery;
use crate::store::{Store, StoreError, now_ms};

mod read;

/// Sorted sets per index list. Fixed: the bucket of an id is part of the
/// layout.
pub(super) const BUCKETS: u32 = 8;

/// How old a stale entry must be before a reader removes it: a younger one
/// may belong to a status change whose script has not run yet.
pub(super) const GRACE_MS: u64 = 60_000;

/// Most workflow names kept per host to settle workflow lists without a
/// lookup; past it the cache starts over.
const CACHED_WORKFLOWS: usize = 65_536;

/// How long the settle of an acquire that could not settle in its own
/// pipeline waits (see [`RedisStore::settle_later`]).
const ACQUIRE_SETTLE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

fn bucket(id: &ExecutionId) -> u32 {
    id.stable_hash() % BUCKETS
}

/// Where a status change left its execution's index entries.
pub(super) struct Entered {
    /// The time of its entry under the new status.
    pub(super) at: u64,
    /// Whether the change's own pipeline settled the other statuses'
    /// lists already: on one Redis, a settle runs right after the change
    /// and removes the older entries only if the record has the new status
    /// by then, so a refused change settles nothing. Otherwise the caller
    /// settles once the change went through ([`RedisStore::settle_unless`]).
    pub(super) settled: bool,
}

/// One index list an entry was read from.
#[derive(Clone)]
struct List {
    key: String,
    status: Status,
}

impl RedisStore {
    fn status_key(&self, b: u32, status: Status) -> String {
        format!("{}:{{ix{b}}}:{}", self.options.prefix, status.as_str())
    }

    fn workflow_key(&self, b: u32, status: Status, workflow: &str) -> String {
        format!(
            "{}:{{ix{b}}}:{}:w:{workflow}",
            self.options.prefix,
            status.as_str()
        )
    }

    fn indexed_key(&self) -> String {
        format!("{}:indexed", self.options.prefix)
    }

    /// Every list of `id` for `status`: its status list, and its workflow
    /// list unless it is running.
    fn lists_of(&self, id: &ExecutionId, status: Status, workflow: &str) -> Vec<String> {
        let b = bucket(id);
        let mut keys = vec![self.status_key(b, status)];
        if status != Status::Running {
            keys.push(self.workflow_key(b, status, workflow));
        }
        keys
    }

    /// Notes the workflow of `id` for settling its lists later. Only an
    /// execution leased here stays noted (see [`RedisStore::settle_later`]),
    /// so a host keeps nothing for executions parked or ended.
    pub(super) fn remember_workflow(&self, id: &ExecutionId, workflow: &str) {
        let mut cache = self.workflows.lock().expect("workflow cache poisoned");
        if cache.len() >= CACHED_WORKFLOWS {
            cache.clear();
        }
        cache.insert(id.clone(), workflow.into());
    }

    /// How many executions' workflows this store has noted: those leased
    /// here, as the store keeps them to settle their index lists (what a host holds
    /// per execution, for diagnostics and tests).
    pub fn noted_workflows(&self) -> usize {
        self.workflows
            .lock()
            .expect("workflow cache poisoned")
            .len()
    }

    /// How many status changes this store settled in a round trip of its
    /// own, after the change: on a cluster every one but the acquires
    /// whose execution left `Running` within a second of it; on
    /// one Redis the acquires of executions not noted here (whose workflow
    /// they do not know) that were still running here a second later,
    /// and the changes whose settle could not run in their pipeline
    /// (diagnostics and tests).
    pub fn settles_in_background(&self) -> u64 {
        self.background_settles
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The workflow of `id` if this store noted it: an execution leased
    /// here, which an acquire takes over again (a resume after a budget).
    pub(super) fn noted_workflow(&self, id: &ExecutionId) -> Option<std::sync::Arc<str>> {
        self.workflows
            .lock()
            .expect("workflow cache poisoned")
            .get(id)
            .cloned()
    }

    /// The workflow of `id`: cached, or read from its record.
    pub(super) async fn workflow_of(&self, id: &ExecutionId) -> Result<String, StoreError> {
        if let Some(w) = self.noted_workflow(id) {
            return Ok(w.to_string());
        }
        let meta: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.key("x", id))
            .arg("meta")
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let meta: Meta = decode(&meta.ok_or_else(|| StoreError::NotFound(id.clone()))?)?;
        self.remember_workflow(id, &meta.workflow);
        Ok(meta.workflow)
    }

    fn clock_key(&self, b: u32) -> String {
        format!("{}:{{ix{b}}}:clock", self.options.prefix)
    }

    /// Enters `id` under `status` (and its workflow's list) at its bucket's
    /// next time, which it returns: called before the script that changes
    /// the record to `status`.
    pub(super) async fn enter(
        &self,
        id: &ExecutionId,
        status: Status,
        workflow: &str,
    ) -> Result<u64, StoreError> {
        self.enter_at(id, status, workflow, None).await
    }

    async fn enter_at(
        &self,
        id: &ExecutionId,
        status: Status,
        workflow: &str,
        at_us: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.enter_invocation(id, status, workflow, at_us)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    fn enter_invocation(
        &self,
        id: &ExecutionId,
        status: Status,
        workflow: &str,
        at_us: Option<u64>,
    ) -> redis::ScriptInvocation<'static> {
        let mut inv = super::scripts::scripts().index_enter.prepare_invoke();
        inv.key(self.clock_key(bucket(id)));
        for key in self.lists_of(id, status, workflow) {
            inv.key(key);
        }
        inv.arg(id.as_str())
            .arg(at_us.map(|t| t.to_string()).unwrap_or_default());
        inv
    }

    /// [`RedisStore::enter_then`] with a change that is `script` alone; its
    /// reply.
    pub(super) async fn enter_then_run(
        &self,
        id: &ExecutionId,
        status: Status,
        settle: Option<&str>,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<(Entered, Value), StoreError> {
        let mut pipe = redis::pipe();
        pipe.invoke_script(script);
        let (entered, mut replies) = self.enter_then(id, status, settle, &pipe, script).await?;
        Ok((entered, replies.pop().unwrap_or(Value::Nil)))
    }

    /// Enters `id` under `status` ([`RedisStore::enter`]), then runs
    /// `change`: a pipeline whose first command invokes `script`, the
    /// record's status change. Returns where the entry is and `change`'s
    /// replies. `settle` names the execution's workflow when the change's
    /// pipeline may settle the other lists too (one Redis; see
    /// [`Entered::settled`]); an acquire that does not know it settles
    /// later.
    ///
    /// On one Redis the enter goes first in the same pipeline, so the two
    /// cost one round trip (and with AOF `always` one fsync) instead of two;
    /// Redis runs a connection's commands in order, so the entry still
    /// precedes the change. A script the server does not know (a restarted
    /// Redis) is loaded and only what failed runs again: an enter that
    /// failed runs after the change, which leaves the entry late, never
    /// missing. On a cluster the index buckets and the record are on
    /// different slots, so the enter is a round trip of its own first.
    pub(super) async fn enter_then(
        &self,
        id: &ExecutionId,
        status: Status,
        settle: Option<&str>,
        change: &redis::Pipeline,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<(Entered, Vec<Value>), StoreError> {
        let workflow = settle.unwrap_or("");
        let mut conn = self.conn();
        if matches!(conn, crate::redis_conn::Conn::Cluster(_)) {
            let at = self.enter(id, status, workflow).await?;
            let replies = super::scripts::query_with_script(&mut conn, change, script)
                .await
                .map_err(redis_err)?;
            return Ok((Entered { at, settled: false }, replies));
        }
        let enter = self.enter_invocation(id, status, workflow, None);
        let settle = settle.map(|workflow| self.settle_changed_invocation(id, status, workflow));
        let mut pipe = redis::pipe();
        pipe.invoke_script(&enter);
        for cmd in change.cmd_iter() {
            pipe.add_command(cmd.clone());
        }
        if let Some(settle) = &settle {
            pipe.invoke_script(settle);
        }
        pipe.ignore_errors();
        let mut replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        let sent = change.len() + 1 + usize::from(settle.is_some());
        if replies.len() != sent {
            return Err(StoreError::Corrupt(format!(
                "redis: {} replies to a pipeline of {sent}",
                replies.len(),
            )));
        }
        let entered = replies.remove(0);
        let settle_reply = match settle {
            Some(_) => replies.pop(),
            None => None,
        };
        let settled = match settle_reply {
            Some(Value::Int(1)) => true,
            // A server that does not know the settle yet learns it for the
            // next change; this one settles later.
            Some(Value::ServerError(e)) if e.kind() == Some(redis::ServerErrorKind::NoScript) => {
                let loaded = super::scripts::scripts()
                    .index_settle_changed
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await;
                if let Err(e) = loaded {
                    tracing::debug!("cannot load the index settle script: {e}");
                }
                false
            }
            _ => false,
        };
        let unknown_script = |v: &Value| {
            matches!(v, Value::ServerError(e)
                if e.kind() == Some(redis::ServerErrorKind::NoScript))
        };
        let mut rerun = false;
        if unknown_script(&replies[0]) {
            rerun = true;
            replies = super::scripts::query_with_script(&mut conn, change, script)
                .await
                .map_err(redis_err)?;
        } else if let Some(Value::ServerError(e)) =
            replies.iter().find(|v| matches!(v, Value::ServerError(_)))
        {
            return Err(redis_err(e.clone().into()));
        }
        let (at, late) = match entered {
            Value::Int(at) => (at as u64, false),
            _ => (self.enter(id, status, workflow).await?, true),
        };
        // A settle before the change (re-run) or before its entry (late)
        // settled nothing of this change.
        let settled = settled && !rerun && !late;
        Ok((Entered { at, settled }, replies))
    }

    /// The settle of a change of `id` to `status` in its own pipeline
    /// (`index_settle_changed.lua`): the record, the status's list, then
    /// every list of the other statuses.
    fn settle_changed_invocation(
        &self,
        id: &ExecutionId,
        status: Status,
        workflow: &str,
    ) -> redis::ScriptInvocation<'static> {
        let b = bucket(id);
        let mut inv = super::scripts::scripts()
            .index_settle_changed
            .prepare_invoke();
        inv.key(self.key("x", id)).key(self.status_key(b, status));
        for other in Status::ALL.into_iter().filter(|s| *s != status) {
            for key in self.lists_of(id, other, workflow) {
                inv.key(key);
            }
        }
        inv.arg(id.as_str()).arg(status.as_str());
        inv
    }

    /// After a change of `id` to `kept` went through: settles the other
    /// lists in the background ([`RedisStore::settle_later`]) unless its
    /// pipeline did.
    pub(super) fn settle_unless(
        &self,
        entered: &Entered,
        id: &ExecutionId,
        kept: Status,
        workflow: Option<String>,
    ) {
        if !entered.settled {
            self.settle_later(id, kept, workflow, entered.at);
        } else if kept != Status::Running {
            self.forget_workflow(id);
        }
    }

    /// Removes `id` from the lists of every status but `kept` (all with
    /// `None`) where it was entered before `at_us`: after its record changed
    /// to `kept` (entered at `at_us`), or was deleted.
    pub(super) async fn settle(
        &self,
        id: &ExecutionId,
        kept: Option<Status>,
        workflow: &str,
        at_us: u64,
    ) -> Result<(), StoreError> {
        let mut inv = super::scripts::scripts().index_settle.prepare_invoke();
        for status in Status::ALL.into_iter().filter(|s| Some(*s) != kept) {
            for key in self.lists_of(id, status, workflow) {
                inv.key(key);
            }
        }
        inv.arg(id.as_str()).arg(at_us);
        inv.invoke_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    /// [`RedisStore::settle`] in the background, off the caller's path
    /// (looking the workflow up if it is not known). Running late is
    /// harmless, as it leaves entries of later changes alone; a lost one
    /// leaves stale entries, which readers drop.
    ///
    /// An execution leaving `Running` is forgotten from the workflow
    /// cache at once: its next change here is an acquire, which notes it
    /// again, or a cancel, which reads it. So the cache holds the
    /// executions leased here, not one entry per execution ever run.
    ///
    /// The settle of an acquire that noted the workflow (a resume here of
    /// an execution parked by any host, whose acquire does not know it
    /// yet) waits [`ACQUIRE_SETTLE_DELAY`] first, and does not run if the
    /// execution left `Running` here meanwhile (it is no longer noted): on
    /// one Redis that change settled every other status's lists in its own
    /// pipeline, and elsewhere in a settle of its own, each removing what
    /// was entered before it. Most invocations end well within the delay,
    /// so a resume costs a round trip fewer; until a longer one settles,
    /// readers skip its entry in the list it left, as they skip every
    /// stale entry. Should the cache start over meanwhile, that entry is
    /// left for readers to drop.
    pub(super) fn settle_later(
        &self,
        id: &ExecutionId,
        kept: Status,
        workflow: Option<String>,
        at_us: u64,
    ) {
        if kept != Status::Running {
            self.forget_workflow(id);
        }
        let wait_for_change =
            kept == Status::Running && workflow.is_some() && self.noted_workflow(id).is_some();
        let count = |store: &Self| {
            store
                .background_settles
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        if !wait_for_change {
            count(self);
        }
        let (store, id) = (self.clone(), id.clone());
        tokio::spawn(async move {
            if wait_for_change {
                tokio::time::sleep(ACQUIRE_SETTLE_DELAY).await;
                if store.noted_workflow(&id).is_none() {
                    return;
                }
                count(&store);
            }
            let workflow = match workflow {
                Some(w) => Ok(w),
                None => store.workflow_of(&id).await,
            };
            let settled = match workflow {
                Ok(w) => store.settle(&id, Some(kept), &w, at_us).await,
                Err(e) => Err(e),
            };
            if let Err(e) = settled {
                tracing::debug!(%id, "index entries left for readers to drop: {e}");
            }
        });
    }

    /// Passes a script's `result` through; when it refused a change that
    /// `id` was entered for under `status` at `at` because the record is
    /// gone or ended in another status, drops that entry (in the
    /// background, and only if it is still the one entered). Other
    /// refusals keep it: with a lease held or lost, the record may be in
    /// `status` already, and the entry is then its own, moved to `at`; and
    /// a failure whose outcome is unknown may have made the change.
    pub(super) fn refused<T>(
        &self,
        result: Result<T, StoreError>,
        id: &ExecutionId,
        status: Status,
        workflow: &str,
        at: u64,
    ) -> Result<T, StoreError> {
        let stale = match &result {
            Err(StoreError::NotFound(_)) => true,
            Err(StoreError::Terminal { status: s, .. }) => *s != status,
            _ => false,
        };
        if stale {
            self.unenter_later(id, status, workflow, at);
        }
        result
    }

    /// A script's reply, checked ([`Reply::check`]) and passed through
    /// [`RedisStore::refused`].
    pub(super) fn checked(
        &self,
        v: Value,
        what: &'static str,
        id: &ExecutionId,
        status: Status,
        workflow: &str,
        at: u64,
    ) -> Result<Reply, StoreError> {
        self.refused(
            Reply::new(v, what).and_then(|r| r.check(id)),
            id,
            status,
            workflow,
            at,
        )
    }

    /// Drops the entries of `id` entered under `status` at `at`, in the
    /// background, where they are still at `at`.
    pub(super) fn unenter_later(&self, id: &ExecutionId, status: Status, workflow: &str, at: u64) {
        let keys = self.lists_of(id, status, workflow);
        let (store, id) = (self.clone(), id.clone());
        tokio::spawn(async move {
            for key in keys {
                let dropped = super::scripts::scripts()
                    .index_drop
                    .key(&key)
                    .arg(id.as_str())
                    .arg(at)
                    .invoke_async::<()>(&mut store.conn())
                    .await;
                if let Err(e) = dropped {
                    tracing::debug!(%id, "index entry left for readers to drop: {e}");
                }
            }
        });
    }

    fn forget_workflow(&self, id: &ExecutionId) {
        self.workflows
            .lock()
            .expect("workflow cache poisoned")
            .remove(id);
    }

    /// Deletes up to `limit` executions that ended before `before_ms`,
    /// the oldest first, found through the terminal statuses' lists;
    /// returns how many.
    pub(super) async fn purge_ended_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut due = Vec::new();
        for query in ListQuery::expired(before_ms, limit) {
            due.extend(self.page(&query).await?.executions);
        }
        due.sort_by_key(|r| r.updated_at_ms);
        due.truncate(limit);
        let mut deleted = 0;
        for rec in due {
            match self.delete_inner(&rec.id, Some(before_ms)).await {
                Ok(true) => deleted += 1,
                Ok(false) | Err(StoreError::NotFound(_)) | Err(StoreError::Active { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// Runs the delete script for `id`; `before_ms` limits it to executions
    /// that ended before then. Returns whether it deleted. The index
    /// entries go after the record, so a failure between leaves stale
    /// ones, which readers drop.
    pub(super) async fn delete_inner(
        &self,
        id: &ExecutionId,
        before_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let v: Value = super::scripts::scripts()
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
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let reply = Reply::new(v, "delete")?;
        if reply.tag == "kept" {
            return Ok(false);
        }
        let mut reply = reply.check(id)?;
        let blobs: Vec<String> = reply.next()?;
        let meta: Vec<u8> = reply.next()?;
        let meta: Meta = decode(&meta)?;
        self.settle(id, None, &meta.workflow, u64::MAX).await?;
        self.forget_workflow(id);
        self.unref_blobs(&blobs).await?;
        Ok(true)
    }

    /// Builds the indexes of a store written before they existed: every
    /// record (found with `SCAN`, on every primary of a cluster) is entered
    /// at its last change, `batch` at a time, with progress in the log;
    /// then `P:indexed` is set and the retention list of earlier versions
    /// (`P:finished`) dropped. Writes made meanwhile enter themselves, so
    /// the build can run while hosts work; hosts of earlier versions must
    /// be stopped first, as they do not keep the indexes. Returns how many
    /// records it indexed (0 when the store was indexed).
    pub(super) async fn build(&self, batch: usize) -> Result<usize, StoreError> {
        let indexed: bool = redis::cmd("EXISTS")
            .arg(self.indexed_key())
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        if indexed {
            return Ok(0);
        }
        let pattern = format!("{}:x:{{*}}", self.options.prefix);
        let keys = self.conn.scan(&pattern).await?;
        let total = keys.len();
        if total > 0 {
            tracing::info!(total, "building the execution indexes of this store");
        }
        let mut done = 0;
        for chunk in keys.chunks(batch.max(1)) {
            let records = try_join_all(chunk.iter().filter_map(|key| {
                let id = key
                    .rsplit_once('{')
                    .and_then(|(_, rest)| rest.strip_suffix('}'))
                    .and_then(|id| ExecutionId::new(id).ok())?;
                Some(async move {
                    match self.get_execution(&id).await {
                        Ok(r) => Ok(Some(r)),
                        Err(StoreError::NotFound(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
            }))
            .await?;
            let records: Vec<ExecutionRecord> = records.into_iter().flatten().collect();
            try_join_all(records.iter().map(|r| {
                self.enter_at(&r.id, r.status, &r.workflow, Some(r.updated_at_ms * 1000))
            }))
            .await?;
            done += records.len();
            tracing::info!(done, total, "indexed executions");
        }
        redis::cmd("DEL")
            .arg(format!("{}:finished", self.options.prefix))
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)?;
        redis::cmd("SET")
            .arg(self.indexed_key())
            .arg(now_ms())
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // The bucket is part of the layout: it must not change.
        assert_eq!(
            bucket(&ExecutionId::new("a").unwrap()),
            0xe40c292c % BUCKETS
        );
        let mut seen = [0u32; BUCKETS as usize];
        for i in 0..8000 {
            seen[bucket(&ExecutionId::new(format!("exec-{i}")).unwrap()) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
