//! The journal store: one trait, several backends, one conformance suite.
//!
//! A store keeps components, deployments, execution records, journals and
//! signals. Every operation that changes an execution is atomic in the
//! backend, and the ones an invocation makes are conditional on its lease's
//! fencing token (invariant 3 in ARCHITECTURE.md): a host that lost its lease cannot
//! write. Appends are conditional on the expected next index too, so an entry
//! is written once and never changed.

mod embedded;
pub mod listing;
mod memory;
mod redis;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::redis_conn::RedisOptions;
pub use embedded::{DEFAULT_CACHE_BYTES as EMBEDDED_CACHE_BYTES, EmbeddedStore};
pub use listing::{ExecutionPage, ListCursor, ListQuery, Order};
pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::execution::{ConsumerSession, ExecutionRecord, Lease, Outcome, Snapshot, Status, Wait};
use crate::ids::{Digest, ExecutionId};
use crate::journal::Entry;

/// Store failures, grouped by what the caller does next: retry
/// ([`StoreError::is_retriable`]), stop the invocation (`LeaseLost`,
/// `Terminal`, `Conflict`), or report (`NotFound`, `Corrupt`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such execution.
    #[error("execution {0} not found")]
    NotFound(ExecutionId),
    /// Another host holds the lease.
    #[error("execution {id} is leased by {owner} until {expires_at_ms}")]
    LeaseHeld {
        /// The execution whose lease was asked for.
        id: ExecutionId,
        /// The host id that holds the lease now.
        owner: String,
        /// Expiry, ms since the Unix epoch.
        expires_at_ms: u64,
    },
    /// The caller's lease expired or was taken over; it must stop writing.
    #[error("lease on execution {0} was lost (expired or taken over)")]
    LeaseLost(ExecutionId),
    /// An append did not find the journal at the expected length.
    #[error("append to execution {id} at index {index} conflicts: the journal has {len} entries")]
    Conflict {
        /// The execution whose journal was appended to.
        id: ExecutionId,
        /// Index the caller wanted to write.
        index: u64,
        /// Actual journal length.
        len: u64,
    },
    /// The execution has ended (or was cancelled) and takes no more writes.
    #[error("execution {id} is {status}")]
    Terminal {
        /// The execution that was written to after it ended.
        id: ExecutionId,
        /// Its status.
        status: Status,
    },
    /// The execution has not ended, so it cannot be deleted.
    #[error("execution {id} is {status}; cancel it before deleting it")]
    Active {
        /// The execution that was to be deleted.
        id: ExecutionId,
        /// Its status.
        status: Status,
    },
    /// The store is configured wrongly (e.g. a malformed URL).
    #[error("invalid store configuration: {0}")]
    Invalid(String),
    /// The backend cannot be reached or failed transiently: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

impl From<crate::redis_conn::RedisFailure> for StoreError {
    fn from(e: crate::redis_conn::RedisFailure) -> Self {
        use crate::redis_conn::RedisFailure;
        match e {
            RedisFailure::Invalid(m) => StoreError::Invalid(m),
            RedisFailure::Unavailable(m) => StoreError::Unavailable(m),
            RedisFailure::Corrupt(m) => StoreError::Corrupt(m),
        }
    }
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Result of [`Store::create_execution`].
#[derive(Debug)]
pub enum Created {
    /// The execution was created.
    New,
    /// An execution with that id already exists; here it is, unchanged.
    Existing(Box<ExecutionRecord>),
}

/// Result of [`Store::suspend`].
#[derive(Debug, PartialEq, Eq)]
pub enum Suspended {
    /// The execution is suspended and the lease released.
    Waiting,
    /// What it would wait for is already there (a signal arrived meanwhile):
    /// it was left ready to run, and the lease released.
    Ready,
}

/// Result of [`Store::signal`].
#[derive(Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Position of the signal among all signals of the execution.
    pub seq: u64,
    /// The execution was suspended waiting for this signal and is now ready
    /// to run: the caller should schedule it.
    pub woke: bool,
}

/// One version of a deployed workflow. Versions are numbered from 1 per
/// name; deploying the digest the name already points at adds none.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentVersion {
    /// 1 for the first deployment of the name, then 2, 3, ...
    #[serde(skip)]
    pub version: u32,
    /// Digest of the component bytes.
    pub digest: Digest,
    /// When it was deployed, ms since the Unix epoch.
    pub deployed_at_ms: u64,
    /// What the component imports.
    pub imports: Vec<String>,
}

/// A page of an execution's output stream (what it emitted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemsPage {
    /// Up to the requested number of items after the requested offset, in
    /// order, each with its offset (the first item emitted is offset 0).
    pub items: Vec<(u64, Vec<u8>)>,
    /// How many items the execution has emitted so far.
    pub count: u64,
}

/// A range of an execution's journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSlice {
    /// Up to the requested number of entries from the requested index, in
    /// order (the first is that index).
    pub entries: Vec<Entry>,
    /// How many entries the journal has.
    pub total: u64,
}

/// Executions indexed per batch when a store written before the indexes
/// existed is opened (see each backend's `build`).
pub(crate) const INDEX_BUILD_BATCH: usize = 1000;

/// The storage contract every backend implements.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a component's bytes under their digest (idempotent).
    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError>;
    /// A component's bytes.
    async fn get_component(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError>;
    /// Points workflow `name` at `version.digest`, adding a version, unless
    /// it already points there. Returns the version `name` now points at,
    /// numbered (the `version` field of the argument is ignored).
    async fn put_deployment(
        &self,
        name: &str,
        version: &DeploymentVersion,
    ) -> Result<DeploymentVersion, StoreError>;
    /// The digest workflow `name` points at.
    async fn get_deployment(&self, name: &str) -> Result<Option<Digest>, StoreError>;
    /// Every version of workflow `name`, oldest first (empty if unknown).
    async fn deployment_versions(&self, name: &str) -> Result<Vec<DeploymentVersion>, StoreError>;
    /// Every deployed name with the version it points at, sorted by name.
    async fn list_deployments(&self) -> Result<Vec<(String, DeploymentVersion)>, StoreError>;

    /// Creates an execution unless one with the same id exists. The record
    /// is stored as given, lease included: a record created leased (see
    /// [`ExecutionRecord::take_lease`]) is running, held by its
    /// owner, exactly as its first acquire would leave it, so a host that
    /// starts an execution where it will run it saves that acquire.
    async fn create_execution(&self, record: &ExecutionRecord) -> Result<Created, StoreError>;
    /// An execution's record.
    async fn get_execution(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError>;
    /// Record, whole journal and signals, in one round trip.
    async fn load(&self, id: &ExecutionId) -> Result<Snapshot, StoreError>;
    /// Entries `from..from + max` of an execution's journal, and its
    /// length. Reads only that range, so a page of a long journal costs
    /// what the page does.
    async fn journal_page(
        &self,
        id: &ExecutionId,
        from: u64,
        max: usize,
    ) -> Result<JournalSlice, StoreError>;
    /// A page of executions, found through the indexes the store keeps
    /// with every status change: the cost is the page's (and a seek per
    /// index list), not the number of executions. See [`listing`].
    async fn list_page(&self, query: &ListQuery) -> Result<ExecutionPage, StoreError>;
    /// Every execution with the given status (all when `None`), newest
    /// first, read a page at a time. For tests and tools: the cost grows
    /// with the answer.
    async fn list_executions(
        &self,
        status: Option<Status>,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let mut query = ListQuery {
            status,
            limit: 1000,
            ..ListQuery::default()
        };
        let mut all = Vec::new();
        loop {
            let page = self.list_page(&query).await?;
            all.extend(page.executions);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(all),
            }
        }
    }
    /// How many executions there are of each status, from counters kept
    /// with the indexes (no scan).
    async fn count_by_status(&self) -> Result<HashMap<Status, u64>, StoreError>;
    /// Deletes an execution that has ended (completed, failed or cancelled),
    /// with its journal and signals, and drops its references to stored
    /// values. Fails with `Active` while it has not ended.
    async fn delete_execution(&self, id: &ExecutionId) -> Result<(), StoreError>;
    /// Deletes up to `limit` executions that ended before `before_ms` (ms
    /// since the Unix epoch); returns how many it deleted. This is how
    /// finished executions expire.
    async fn purge_finished(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError>;
    /// A tool result stored out of line (see
    /// [`crate::journal::EntryKind::ToolStored`]), checked against its
    /// digest and length.
    async fn get_blob(&self, digest: &Digest, len: u64) -> Result<Vec<u8>, StoreError> {
        let _ = len;
        Err(StoreError::Corrupt(format!(
            "the journal refers to stored value {digest}, but this store keeps values inline"
        )))
    }

    /// Takes the lease for one invocation: fails with `LeaseHeld` while another
    /// owner's lease is live and with `Terminal` once the execution ended.
    /// An owner may take over its own live lease (a host drives an execution
    /// from one task at a time, so its earlier invocation is gone, e.g. after
    /// the store came back from an outage); the new token fences the old one.
    /// Marks the execution running and counts the invocation.
    async fn acquire_lease(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;
    /// Takes the lease ([`Store::acquire_lease`]) and loads the snapshot
    /// ([`Store::load`]): everything an invocation needs before it starts,
    /// in one round trip where the backend can.
    async fn acquire_and_load(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<(Lease, Snapshot), StoreError> {
        let lease = self.acquire_lease(id, owner, ttl).await?;
        match self.load(id).await {
            Ok(snapshot) => Ok((lease, snapshot)),
            Err(e) => {
                // Best effort: otherwise the lease simply expires.
                let _ = self.release_lease(id, &lease).await;
                Err(e)
            }
        }
    }
    /// A continuation's start: appends `entries` at `index` under `lease`,
    /// the caller's own ([`Store::append_many`]), then takes the lease again
    /// and loads ([`Store::acquire_and_load`]). An invocation that ran out
    /// of budget leaves the step that spent it unwritten, so its write and
    /// the next acquire are one round trip and one durable write where the
    /// backend can. Fails as either would; a refused append takes no
    /// lease.
    ///
    /// The snapshot's journal holds the entries from index `journal_from`
    /// on (its record's `journal_len` still counts them all): a
    /// continuation on the host that ran the invocation before it has the
    /// journal up to the entries it appends, and reads only what may come
    /// after them, which under its lease is nothing.
    #[allow(clippy::too_many_arguments)]
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
        self.append_many(id, lease, index, entries).await?;
        let (lease, mut snapshot) = self.acquire_and_load(id, owner, ttl).await?;
        let skipped = usize::try_from(journal_from).unwrap_or(usize::MAX);
        snapshot
            .journal
            .drain(..skipped.min(snapshot.journal.len()));
        Ok((lease, snapshot))
    }
    /// Extends a lease the caller still holds.
    async fn renew_lease(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;
    /// Appends journal entry `index`; conditional on the lease and on the
    /// journal having exactly `index` entries. Durable when it returns.
    async fn append(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        index: u64,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        self.append_many(id, lease, index, std::slice::from_ref(entry))
            .await
    }
    /// Appends `entries` as journal entries `index`, `index + 1`, ... in one
    /// atomic write (all or none), on the same conditions as
    /// [`Store::append`]. Durable when it returns. This is how a run of
    /// emitted items costs one durable write (group commit).
    async fn append_many(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        index: u64,
        entries: &[Entry],
    ) -> Result<(), StoreError>;
    /// Ends the invocation waiting for `wait` and releases the lease. For a
    /// signal wait, `consumed` is how many signals of that name the journal
    /// has consumed (a [`Wait::Any`] carries a count per name); if more
    /// have arrived the execution is left ready instead (so a signal racing
    /// with the suspension is never lost).
    async fn suspend(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        wait: &Wait,
        consumed: u64,
    ) -> Result<Suspended, StoreError>;
    /// Records the outcome and releases the lease. Returns the record as
    /// written, what [`Store::get_execution`] reads right after: the host
    /// hands it to the execution's waiters, which need not read it back.
    async fn finish(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        outcome: &Outcome,
    ) -> Result<ExecutionRecord, StoreError>;
    /// Releases a lease without changing anything else (e.g. after a
    /// retriable failure), leaving the execution ready to run.
    async fn release_lease(&self, id: &ExecutionId, lease: &Lease) -> Result<(), StoreError>;

    /// Buffers a signal for an execution that has not ended.
    async fn signal(
        &self,
        id: &ExecutionId,
        name: &str,
        payload: &[u8],
    ) -> Result<Delivered, StoreError>;
    /// The first signal called `name` at or after position `skip` among the
    /// signals of that name, if it has arrived.
    async fn next_signal(
        &self,
        id: &ExecutionId,
        name: &str,
        skip: u64,
    ) -> Result<Option<crate::execution::SignalRecord>, StoreError>;
    /// Up to `max` of the items execution `id` emitted with an offset above
    /// `after` (all from the first when `None`). An item is stored in the
    /// same write as the journal entry that records its `emit`, so it is
    /// there exactly when that entry is.
    async fn items(
        &self,
        id: &ExecutionId,
        after: Option<u64>,
        max: usize,
    ) -> Result<ItemsPage, StoreError>;
    /// Records that consumer `session` of execution `id`'s output stream is
    /// there and has read every item up to offset `acked`, creating the
    /// session on first use. `acked` only grows. A closed session is
    /// returned unchanged. Session state is soft: a backend may lose the
    /// last moments of it in a crash (consumers read again).
    async fn touch_session(
        &self,
        id: &ExecutionId,
        session: &str,
        acked: Option<u64>,
    ) -> Result<ConsumerSession, StoreError>;
    /// Closes a session; `None` if the execution has no such session.
    async fn close_session(
        &self,
        id: &ExecutionId,
        session: &str,
    ) -> Result<Option<ConsumerSession>, StoreError>;
    /// Every session of execution `id`, closed and expired ones included.
    async fn sessions(&self, id: &ExecutionId) -> Result<Vec<ConsumerSession>, StoreError>;
    /// Cancels an execution that has not ended: it never runs again, and a
    /// running invocation's next write fails. Returns the resulting record.
    async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
