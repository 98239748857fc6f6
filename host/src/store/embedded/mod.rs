//! The embedded store: a single `redb` file.
//!
//! It is the default when no Redis URL is given. Every operation is one redb
//! transaction, so each state change is atomic; write transactions commit with
//! `Durability::Immediate` (fsync), which is what lets an append
//! return only once its entry is durable (invariant 2 in ARCHITECTURE.md). File I/O runs
//! on tokio's blocking pool so it never stalls a worker thread. (A store
//! in memory is [`super::MemoryStore`], which keeps values rather than
//! pages.)
//!
//! On a file, appends (the journal's hot path) go to one committer thread
//! instead, which commits every append waiting in one transaction: the
//! executions running side by side share each sync (group commit), where
//! they would otherwise queue for the file's one writer, a sync each. That
//! sync is one `fdatasync` of an append log beside the file
//! (`<file>.wal`, see [`wal`]), not a durable redb commit.
//!
//! redb locks its file: only one process can open it. When a file is opened,
//! any lease recorded in it belonged to a process that is gone, so leases are
//! cleared on open and an interrupted run resumes at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{
    Created, Delivered, DeploymentVersion, ExecutionPage, ItemsPage, JournalSlice, ListQuery,
    Store, StoreError, Suspended, now_ms,
};
use crate::execution::{
    ConsumerSession, ExecutionRecord, Lease, Outcome, SignalRecord, Snapshot, Status, Wait,
};
use crate::ids::{Digest, ExecutionId};
use crate::journal::Entry;
use crate::persist::{decode, encode};

mod committer;
mod index;
mod tables;
mod wal;

use committer::*;
use index::{INDEX, reindex, unindex};
use tables::*;
use wal::Wal;

/// A store in one redb database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// Appends go to the committer thread (see [`committer`]).
    appends: std::sync::mpsc::Sender<Append>,
}

/// Memory the file store caches pages in by default: what a host's RSS may
/// grow by as the file grows (redb's own default is 1 GiB). Small, as
/// SQLite's is: every page a transaction writes enters the cache, and
/// most are old copies of pages the next write replaces, so a large cache
/// fills with them (with 10,000 executions parked, 6-7 MiB of a 16 MiB
/// cache held such pages); reads past the cache come from the OS page
/// cache, which holds the file anyway. 1 MiB keeps a host's growth with
/// parked executions near flat (+1.3-1.5 MiB at 1,000, +2.1-2.5 at
/// 10,000, where 2 MiB grew on to +3.6-3.8) for a few more reads: a
/// smaller cache is read past more often (in one run of the HTTP bench's
/// file-store scenarios, 244 `pread`s with 2 MiB, 3,850 with 1 MiB and
/// 21,965 with 512 KiB). ARCHITECTURE.md has the numbers.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 20;

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`, caching at most
    /// [`DEFAULT_CACHE_BYTES`] of it in memory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store file at `path`, caching at most
    /// `cache_bytes` of its pages in memory: more serves reads of a large
    /// store from memory, less bounds the host's RSS.
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open store file {}: {e}", path.display()))
            })?;
        let (wal, applied) = Wal::recover(&db, &wal::path_of(path))?;
        if applied > 0 {
            tracing::info!(
                applied,
                "applied journal appends from the store's append log"
            );
        }
        let db = Arc::new(db);
        let (appends, waiting) = std::sync::mpsc::channel();
        let weak = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("reprise-commit".into())
            .spawn(move || committer(weak, Some(wal), waiting))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the committer: {e}")))?;
        let store = Self { db, appends };
        store.init()?;
        index::build(&store.db, true, super::INDEX_BUILD_BATCH)?;
        Ok(store)
    }

    /// Creates the tables and clears leases left by a dead process.
    fn init(&self) -> Result<(), StoreError> {
        write(&self.db, true, |tx| {
            tx.open_table(COMPONENTS).map_err(db_err)?;
            tx.open_table(DEPLOYMENTS).map_err(db_err)?;
            tx.open_table(VERSIONS).map_err(db_err)?;
            tx.open_table(JOURNAL).map_err(db_err)?;
            tx.open_table(SIGNALS).map_err(db_err)?;
            tx.open_table(ITEMS).map_err(db_err)?;
            tx.open_table(SESSIONS).map_err(db_err)?;
            tx.open_table(INDEX).map_err(db_err)?;
            tx.open_table(index::POSITIONS).map_err(db_err)?;
            tx.open_table(index::COUNTS).map_err(db_err)?;
            tx.open_table(index::META).map_err(db_err)?;
            let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
            let mut held = Vec::new();
            for row in execs.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let rec: ExecutionRecord = decode(v.value())?;
                if rec.lease.is_some() {
                    held.push((k.value().to_string(), rec));
                }
            }
            for (k, mut rec) in held {
                rec.lease = None;
                if rec.status == Status::Running {
                    rec.status = Status::Suspended;
                    rec.wait = Some(Wait::Ready);
                }
                execs
                    .insert(k.as_str(), encode(&rec).as_slice())
                    .map_err(db_err)?;
                reindex(tx, &rec)?;
            }
            Ok(())
        })
    }

    /// Runs `f` on tokio's blocking pool: a transaction may wait on the
    /// disk.
    async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Database) -> Result<R, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let (digest, bytes) = (*digest, bytes.to_vec());
        self.run(move |db| {
            write(db, true, |tx| {
                let mut t = tx.open_table(COMPONENTS).map_err(db_err)?;
                if t.get(digest.0.as_slice()).map_err(db_err)?.is_none() {
                    t.insert(digest.0.as_slice(), bytes.as_slice())
                        .map_err(db_err)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn get_component(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let digest = *digest;
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(COMPONENTS).map_err(db_err)?;
            Ok(t.get(digest.0.as_slice())
                .map_err(db_err)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn put_deployment(
        &self,
        name: &str,
        version: &DeploymentVersion,
    ) -> Result<DeploymentVersion, StoreError> {
        let (name, version) = (name.to_string(), version.clone());
        self.run(move |db| {
            write(db, true, |tx| {
                let mut versions = tx.open_table(VERSIONS).map_err(db_err)?;
                let mut all = read_versions(&versions, &name)?;
                if let Some(last) = all.last()
                    && last.digest == version.digest
                {
                    return Ok(last.clone());
                }
                all.push(DeploymentVersion {
                    version: all.len() as u32 + 1,
                    ..version
                });
                versions
                    .insert(name.as_str(), encode(&all).as_slice())
                    .map_err(db_err)?;
                let current = all.pop().expect("just pushed");
                let mut t = tx.open_table(DEPLOYMENTS).map_err(db_err)?;
                t.insert(name.as_str(), current.digest.0.as_slice())
                    .map_err(db_err)?;
                Ok(current)
            })
        })
        .await
    }

    async fn deployment_versions(&self, name: &str) -> Result<Vec<DeploymentVersion>, StoreError> {
        let name = name.to_string();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            read_versions(&tx.open_table(VERSIONS).map_err(db_err)?, &name)
        })
        .await
    }

    async fn list_deployments(&self) -> Result<Vec<(String, DeploymentVersion)>, StoreError> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(VERSIONS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let name = k.value().to_string();
                let mut all = numbered(decode(v.value())?);
                if let Some(current) = all.pop() {
                    out.push((name, current));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_deployment(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        let name = name.to_string();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(DEPLOYMENTS).map_err(db_err)?;
            let Some(v) = t.get(name.as_str()).map_err(db_err)? else {
                return Ok(None);
            };
            let bytes: [u8; 32] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("deployment {name}: bad digest")))?;
            Ok(Some(Digest(bytes)))
        })
        .await
    }

    async fn create_execution(&self, record: &ExecutionRecord) -> Result<Created, StoreError> {
        let record = record.clone();
        self.run(move |db| {
            write(db, true, |tx| {
                let mut t = tx.open_table(EXECUTIONS).map_err(db_err)?;
                if let Some(v) = t.get(record.id.as_str()).map_err(db_err)? {
                    return Ok(Created::Existing(Box::new(decode(v.value())?)));
                }
                t.insert(record.id.as_str(), encode(&record).as_slice())
                    .map_err(db_err)?;
                reindex(tx, &record)?;
                Ok(Created::New)
            })
        })
        .await
    }

    async fn get_execution(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError> {
        let id = id.clone();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            read_record(&tx.open_table(EXECUTIONS).map_err(db_err)?, &id)
        })
        .await
    }

    async fn load(&self, id: &ExecutionId) -> Result<Snapshot, StoreError> {
        let id = id.clone();
        self.run(move |db| snapshot(db, &id)).await
    }

    async fn journal_page(
        &self,
        id: &ExecutionId,
        from: u64,
        max: usize,
    ) -> Result<JournalSlice, StoreError> {
        let id = id.clone();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let record = read_record(&tx.open_table(EXECUTIONS).map_err(db_err)?, &id)?;
            let expected = record.journal_len.saturating_sub(from);
            let entries = journal_rows(&tx, &id, from, max, expected)?;
            Ok(JournalSlice {
                entries,
                total: record.journal_len,
            })
        })
        .await
    }

    async fn list_page(&self, query: &ListQuery) -> Result<ExecutionPage, StoreError> {
        let query = query.clone();
        self.run(move |db| index::page(&db.begin_read().map_err(db_err)?, &query))
            .await
    }

    async fn count_by_status(&self) -> Result<HashMap<Status, u64>, StoreError> {
        self.run(move |db| index::counts(&db.begin_read().map_err(db_err)?))
            .await
    }

    async fn delete_execution(&self, id: &ExecutionId) -> Result<(), StoreError> {
        let id = id.clone();
        self.run(move |db| {
            write(db, true, |tx| {
                let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
                let rec = read_record(&execs, &id)?;
                if !rec.status.is_terminal() {
                    return Err(StoreError::Active {
                        id: id.clone(),
                        status: rec.status,
                    });
                }
                execs.remove(id.as_str()).map_err(db_err)?;
                unindex(tx, &id, &rec.workflow)?;
                remove_rows(tx, &id)
            })
        })
        .await
    }

    async fn purge_finished(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.run(move |db| write(db, true, |tx| index::purge(tx, before_ms, limit)))
            .await
    }

    async fn acquire_lease(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let (id, owner) = (id.clone(), owner.to_string());
        self.run(move |db| write(db, true, |tx| take_lease(tx, &id, &owner, ttl)))
            .await
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
        let rows: Vec<Row> = entries.iter().map(row).collect();
        let (id, lease, owner) = (id.clone(), lease.clone(), owner.to_string());
        // One durable commit for both, where the committer's append and
        // the acquire's commit were one sync each.
        self.run(move |db| {
            let taken = write(db, true, |tx| {
                append_rows(tx, &id, &lease, index, &rows)?;
                take_lease(tx, &id, &owner, ttl)
            })?;
            Ok((taken, snapshot_from(db, &id, journal_from)?))
        })
        .await
    }

    async fn renew_lease(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let (id, lease) = (id.clone(), lease.clone());
        self.run(move |db| {
            write(db, true, |tx| {
                with_leased(tx, &id, &lease, |rec| {
                    let renewed = Lease {
                        expires_at_ms: now_ms() + ttl.as_millis() as u64,
                        ..lease.clone()
                    };
                    rec.lease = Some(renewed.clone());
                    Ok(renewed)
                })
            })
        })
        .await
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
        // Encoded here, on the caller's task; the write transaction only
        // inserts bytes.
        let rows: Vec<Row> = entries.iter().map(row).collect();
        let (id, lease) = (id.clone(), lease.clone());
        let (done, answer) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Unavailable("embedded store: the committer stopped".into());
        self.appends
            .send(Append {
                id,
                lease,
                index,
                rows,
                done,
            })
            .map_err(|_| closed())?;
        answer.await.unwrap_or_else(|_| Err(closed()))
    }

    async fn suspend(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        wait: &Wait,
        consumed: u64,
    ) -> Result<Suspended, StoreError> {
        let (id, lease, wait) = (id.clone(), lease.clone(), wait.clone());
        self.run(move |db| {
            write(db, true, |tx| {
                let arrived = match &wait {
                    Wait::Signal { name } => {
                        let t = tx.open_table(SIGNALS).map_err(db_err)?;
                        signals_named(&t, &id, name)?.len() as u64 > consumed
                    }
                    Wait::Any { signals, .. } => {
                        let t = tx.open_table(SIGNALS).map_err(db_err)?;
                        let mut arrived = false;
                        for s in signals {
                            if signals_named(&t, &id, &s.name)?.len() as u64 > s.consumed {
                                arrived = true;
                                break;
                            }
                        }
                        arrived
                    }
                    _ => false,
                };
                with_leased(tx, &id, &lease, |rec| {
                    rec.lease = None;
                    rec.status = Status::Suspended;
                    if arrived {
                        rec.wait = Some(Wait::Ready);
                        Ok(Suspended::Ready)
                    } else {
                        rec.wait = Some(wait.clone());
                        Ok(Suspended::Waiting)
                    }
                })
            })
        })
        .await
    }

    async fn finish(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        outcome: &Outcome,
    ) -> Result<ExecutionRecord, StoreError> {
        let (id, lease, outcome) = (id.clone(), lease.clone(), outcome.clone());
        self.run(move |db| {
            write(db, true, |tx| {
                with_leased(tx, &id, &lease, |rec| {
                    rec.lease = None;
                    rec.wait = None;
                    rec.status = outcome.status();
                    rec.outcome = Some(outcome.clone());
                    Ok(())
                })?;
                read_record(&tx.open_table(EXECUTIONS).map_err(db_err)?, &id)
            })
        })
        .await
    }

    async fn release_lease(&self, id: &ExecutionId, lease: &Lease) -> Result<(), StoreError> {
        let (id, lease) = (id.clone(), lease.clone());
        self.run(move |db| {
            write(db, true, |tx| {
                with_leased(tx, &id, &lease, |rec| {
                    rec.lease = None;
                    rec.status = Status::Suspended;
                    rec.wait = Some(Wait::Ready);
                    Ok(())
                })
            })
        })
        .await
    }

    async fn signal(
        &self,
        id: &ExecutionId,
        name: &str,
        payload: &[u8],
    ) -> Result<Delivered, StoreError> {
        let (id, name, payload) = (id.clone(), name.to_string(), payload.to_vec());
        self.run(move |db| {
            write(db, true, |tx| {
                let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
                let mut rec = read_unfinished(&execs, &id)?;
                let mut signals = tx.open_table(SIGNALS).map_err(db_err)?;
                let seq = match signals
                    .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                    .map_err(db_err)?
                    .next_back()
                {
                    Some(row) => row.map_err(db_err)?.0.value().1 + 1,
                    None => 0,
                };
                let record = SignalRecord {
                    seq,
                    name: name.clone(),
                    payload,
                };
                signals
                    .insert((id.as_str(), seq), encode(&record).as_slice())
                    .map_err(db_err)?;
                let woke = rec.status == Status::Suspended
                    && rec.wait.as_ref().is_some_and(|w| w.wants_signal(&name));
                if woke {
                    rec.wait = Some(Wait::Ready);
                    rec.updated_at_ms = now_ms();
                    execs
                        .insert(id.as_str(), encode(&rec).as_slice())
                        .map_err(db_err)?;
                }
                Ok(Delivered { seq, woke })
            })
        })
        .await
    }

    async fn next_signal(
        &self,
        id: &ExecutionId,
        name: &str,
        skip: u64,
    ) -> Result<Option<SignalRecord>, StoreError> {
        let (id, name) = (id.clone(), name.to_string());
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(SIGNALS).map_err(db_err)?;
            Ok(signals_named(&t, &id, &name)?
                .into_iter()
                .nth(skip as usize))
        })
        .await
    }

    async fn items(
        &self,
        id: &ExecutionId,
        after: Option<u64>,
        max: usize,
    ) -> Result<ItemsPage, StoreError> {
        let id = id.clone();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            read_record(&tx.open_table(EXECUTIONS).map_err(db_err)?, &id)?;
            let t = tx.open_table(ITEMS).map_err(db_err)?;
            let from = after.map_or(0, |a| a.saturating_add(1));
            let mut items = Vec::new();
            for row in t
                .range((id.as_str(), from)..=(id.as_str(), u64::MAX))
                .map_err(db_err)?
                .take(max)
            {
                let (k, v) = row.map_err(db_err)?;
                items.push((k.value().1, v.value().to_vec()));
            }
            Ok(ItemsPage {
                items,
                count: item_count(&t, &id)?,
            })
        })
        .await
    }

    async fn touch_session(
        &self,
        id: &ExecutionId,
        session: &str,
        acked: Option<u64>,
    ) -> Result<ConsumerSession, StoreError> {
        let (id, session) = (id.clone(), session.to_string());
        // Not durable: a session is soft state, and a read must not cost a
        // disk sync.
        self.run(move |db| {
            write(db, false, |tx| {
                read_record(&tx.open_table(EXECUTIONS).map_err(db_err)?, &id)?;
                let mut t = tx.open_table(SESSIONS).map_err(db_err)?;
                let key = (id.as_str(), session.as_str());
                let mut s = read_session(&t, key)?.unwrap_or(ConsumerSession {
                    id: session.clone(),
                    acked: None,
                    last_access_ms: 0,
                    closed: false,
                });
                if !s.closed {
                    s.acked = s.acked.max(acked);
                    s.last_access_ms = now_ms();
                    t.insert(key, encode(&s).as_slice()).map_err(db_err)?;
                }
                Ok(s)
            })
        })
        .await
    }

    async fn close_session(
        &self,
        id: &ExecutionId,
        session: &str,
    ) -> Result<Option<ConsumerSession>, StoreError> {
        let (id, session) = (id.clone(), session.to_string());
        self.run(move |db| {
            write(db, false, |tx| {
                read_record(&tx.open_table(EXECUTIONS).map_err(db_err)?, &id)?;
                let mut t = tx.open_table(SESSIONS).map_err(db_err)?;
                let key = (id.as_str(), session.as_str());
                let Some(mut s) = read_session(&t, key)? else {
                    return Ok(None);
                };
                s.closed = true;
                s.last_access_ms = now_ms();
                t.insert(key, encode(&s).as_slice()).map_err(db_err)?;
                Ok(Some(s))
            })
        })
        .await
    }

    async fn sessions(&self, id: &ExecutionId) -> Result<Vec<ConsumerSession>, StoreError> {
        let id = id.clone();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            read_record(&tx.open_table(EXECUTIONS).map_err(db_err)?, &id)?;
            let t = tx.open_table(SESSIONS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in t
                .range((id.as_str(), "")..=(id.as_str(), "\u{10ffff}"))
                .map_err(db_err)?
            {
                out.push(decode(row.map_err(db_err)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError> {
        let id = id.clone();
        self.run(move |db| {
            write(db, true, |tx| {
                let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
                let mut rec = read_unfinished(&execs, &id)?;
                rec.status = Status::Cancelled;
                rec.outcome = Some(Outcome::Cancelled);
                rec.lease = None;
                rec.wait = None;
                rec.updated_at_ms = now_ms();
                execs
                    .insert(id.as_str(), encode(&rec).as_slice())
                    .map_err(db_err)?;
                reindex(tx, &rec)?;
                Ok(rec)
            })
        })
        .await
    }
}

/// Takes the lease of `id` for `owner` in `tx` ([`Store::acquire_lease`]).
fn take_lease(
    tx: &redb::WriteTransaction,
    id: &ExecutionId,
    owner: &str,
    ttl: Duration,
) -> Result<Lease, StoreError> {
    let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
    let mut rec = read_unfinished(&execs, id)?;
    let now = now_ms();
    if let Some(l) = &rec.lease
        && l.expires_at_ms > now
        && l.owner != owner
    {
        return Err(StoreError::LeaseHeld {
            id: id.clone(),
            owner: l.owner.clone(),
            expires_at_ms: l.expires_at_ms,
        });
    }
    let lease = rec.take_lease(owner, ttl, now);
    execs
        .insert(id.as_str(), encode(&rec).as_slice())
        .map_err(db_err)?;
    reindex(tx, &rec)?;
    Ok(lease)
}
