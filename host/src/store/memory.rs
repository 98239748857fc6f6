//! The memory store: everything in the host's memory, under one lock;
//! nothing survives the process. `reprise run` uses it when no store is
//! given, and the tests and benches use it.
//!
//! Records, journal entries and signals are kept as values, not encoded,
//! and every operation is a few map operations under the lock, with no
//! I/O and nothing awaited while it is held. A zero-step execution's
//! store work (create, acquire and load, finish) is a few microseconds
//! here, where a B-tree database in memory spends most of the invocation
//! in its write transactions (page copies, checksums) for durability this
//! store does not offer.
//!
//! It keeps the embedded store's indexes (by status and by workflow and
//! status, ordered by the time of the last status change, see
//! [`super::listing`]), so it lists, counts and purges as the other
//! backends do, and it passes the same conformance suite.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Created, Delivered, DeploymentVersion, ExecutionPage, ItemsPage, JournalSlice, ListQuery,
    Store, StoreError, Suspended, now_ms,
};
use crate::execution::{
    ConsumerSession, ExecutionRecord, Lease, Outcome, SignalRecord, Snapshot, Status, Wait,
};
use crate::ids::{Digest, ExecutionId};
use crate::journal::Entry;
use index::Index;

mod index;

/// A store in memory. Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    components: HashMap<Digest, Vec<u8>>,
    /// Every version of each deployment, numbered, oldest first; the last
    /// is the one the name points at.
    versions: BTreeMap<String, Vec<DeploymentVersion>>,
    executions: HashMap<ExecutionId, Execution>,
    index: Index,
}

/// One execution and everything kept with it.
struct Execution {
    record: ExecutionRecord,
    /// As stores write it: an `Emit` is kept as `Emitted`, its item in
    /// `items` (see [`Entry::split_item`]).
    journal: Vec<Entry>,
    signals: Vec<SignalRecord>,
    /// The output stream; an item's offset is its position.
    items: Vec<Vec<u8>>,
    sessions: BTreeMap<String, ConsumerSession>,
    /// Where its index entries are: the status and time they were made at.
    indexed: Option<(Status, u64)>,
    /// Its id, as its index entries hold it.
    index_id: Arc<str>,
}

impl State {
    fn get(&self, id: &ExecutionId) -> Result<&Execution, StoreError> {
        self.executions
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    /// Checks that `lease` is the live lease of `id` and hands the
    /// execution to `f` to change; then stamps and reindexes the record.
    /// Nothing changes when `f` fails.
    fn with_leased<R>(
        &mut self,
        id: &ExecutionId,
        lease: &Lease,
        f: impl FnOnce(&mut Execution) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let exec = unfinished(&mut self.executions, id)?;
        let now = now_ms();
        match &exec.record.lease {
            Some(l) if l.token == lease.token && l.expires_at_ms > now => {}
            _ => return Err(StoreError::LeaseLost(id.clone())),
        }
        let out = f(exec)?;
        exec.record.updated_at_ms = now;
        self.index.reindex(exec);
        Ok(out)
    }

    fn acquire(
        &mut self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let exec = unfinished(&mut self.executions, id)?;
        let now = now_ms();
        if let Some(l) = &exec.record.lease
            && l.expires_at_ms > now
            && l.owner != owner
        {
            return Err(StoreError::LeaseHeld {
                id: id.clone(),
                owner: l.owner.clone(),
                expires_at_ms: l.expires_at_ms,
            });
        }
        let lease = exec.record.take_lease(owner, ttl, now);
        self.index.reindex(exec);
        Ok(lease)
    }

    fn snapshot(&self, id: &ExecutionId) -> Result<Snapshot, StoreError> {
        self.snapshot_from(id, 0)
    }

    /// The snapshot with the journal's entries from index `from` on.
    fn snapshot_from(&self, id: &ExecutionId, from: u64) -> Result<Snapshot, StoreError> {
        let exec = self.get(id)?;
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(Snapshot {
            record: exec.record.clone(),
            journal: exec.journal.get(from..).unwrap_or_default().to_vec(),
            signals: exec.signals.clone(),
        })
    }

    fn delete(&mut self, id: &ExecutionId) {
        if let Some(exec) = self.executions.remove(id) {
            self.index.unindex(&exec);
        }
    }
}

/// An execution, to change. (Functions of the map rather than of
/// [`State`], so the index can be updated while the execution is
/// borrowed.)
fn existing<'a>(
    executions: &'a mut HashMap<ExecutionId, Execution>,
    id: &ExecutionId,
) -> Result<&'a mut Execution, StoreError> {
    executions
        .get_mut(id)
        .ok_or_else(|| StoreError::NotFound(id.clone()))
}

/// An execution that has not reached a terminal status, to change.
fn unfinished<'a>(
    executions: &'a mut HashMap<ExecutionId, Execution>,
    id: &ExecutionId,
) -> Result<&'a mut Execution, StoreError> {
    let exec = existing(executions, id)?;
    if exec.record.status.is_terminal() {
        return Err(StoreError::Terminal {
            id: id.clone(),
            status: exec.record.status,
        });
    }
    Ok(exec)
}

/// Whether more signals called `name` than `consumed` have arrived.
fn more_signals(signals: &[SignalRecord], name: &str, consumed: u64) -> bool {
    signals.iter().filter(|s| s.name == name).count() as u64 > consumed
}

impl MemoryStore {
    /// A fresh, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state, locked. No operation panics while holding it; were one
    /// to, the next would go on with what it left (every change is made
    /// after its checks), not fail forever.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        self.lock()
            .components
            .entry(*digest)
            .or_insert_with(|| bytes.to_vec());
        Ok(())
    }

    async fn get_component(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().components.get(digest).cloned())
    }

    async fn put_deployment(
        &self,
        name: &str,
        version: &DeploymentVersion,
    ) -> Result<DeploymentVersion, StoreError> {
        let mut state = self.lock();
        let all = state.versions.entry(name.to_owned()).or_default();
        if let Some(last) = all.last()
            && last.digest == version.digest
        {
            return Ok(last.clone());
        }
        let current = DeploymentVersion {
            version: all.len() as u32 + 1,
            ..version.clone()
        };
        all.push(current.clone());
        Ok(current)
    }

    async fn get_deployment(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        Ok(self
            .lock()
            .versions
            .get(name)
            .and_then(|all| all.last())
            .map(|v| v.digest))
    }

    async fn deployment_versions(&self, name: &str) -> Result<Vec<DeploymentVersion>, StoreError> {
        Ok(self.lock().versions.get(name).cloned().unwrap_or_default())
    }

    async fn list_deployments(&self) -> Result<Vec<(String, DeploymentVersion)>, StoreError> {
        Ok(self
            .lock()
            .versions
            .iter()
            .filter_map(|(name, all)| Some((name.clone(), all.last()?.clone())))
            .collect())
    }

    async fn create_execution(&self, record: &ExecutionRecord) -> Result<Created, StoreError> {
        let mut state = self.lock();
        let state = &mut *state;
        if let Some(exec) = state.executions.get(&record.id) {
            return Ok(Created::Existing(Box::new(exec.record.clone())));
        }
        let mut exec = Execution {
            record: record.clone(),
            journal: Vec::new(),
            signals: Vec::new(),
            items: Vec::new(),
            sessions: BTreeMap::new(),
            indexed: None,
            index_id: record.id.as_str().into(),
        };
        state.index.reindex(&mut exec);
        state.executions.insert(record.id.clone(), exec);
        Ok(Created::New)
    }

    async fn get_execution(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError> {
        Ok(self.lock().get(id)?.record.clone())
    }

    async fn load(&self, id: &ExecutionId) -> Result<Snapshot, StoreError> {
        self.lock().snapshot(id)
    }

    async fn journal_page(
        &self,
        id: &ExecutionId,
        from: u64,
        max: usize,
    ) -> Result<JournalSlice, StoreError> {
        let state = self.lock();
        let exec = state.get(id)?;
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(JournalSlice {
            entries: exec.journal.iter().skip(from).take(max).cloned().collect(),
            total: exec.journal.len() as u64,
        })
    }

    async fn list_page(&self, query: &ListQuery) -> Result<ExecutionPage, StoreError> {
        let state = self.lock();
        let limit = query.limit.max(1);
        let mut found = state.index.list(query, limit + 1)?;
        let more = found.len() > limit;
        found.truncate(limit);
        let executions = found
            .iter()
            .map(|e| Ok(state.get(&e.id)?.record.clone()))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(ExecutionPage {
            read: executions.len(),
            executions,
            next: if more { found.pop() } else { None },
        })
    }

    async fn count_by_status(&self) -> Result<HashMap<Status, u64>, StoreError> {
        let state = self.lock();
        Ok(Status::ALL
            .into_iter()
            .map(|s| (s, state.index.count(s)))
            .filter(|&(_, n)| n > 0)
            .collect())
    }

    async fn delete_execution(&self, id: &ExecutionId) -> Result<(), StoreError> {
        let mut state = self.lock();
        let status = state.get(id)?.record.status;
        if !status.is_terminal() {
            return Err(StoreError::Active {
                id: id.clone(),
                status,
            });
        }
        state.delete(id);
        Ok(())
    }

    async fn purge_finished(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut state = self.lock();
        let mut due = Vec::new();
        for query in ListQuery::expired(before_ms, limit) {
            due.extend(state.index.list(&query, limit)?);
        }
        due.sort_unstable();
        due.truncate(limit);
        for e in &due {
            state.delete(&e.id);
        }
        Ok(due.len())
    }

    async fn acquire_lease(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.lock().acquire(id, owner, ttl)
    }

    async fn acquire_and_load(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<(Lease, Snapshot), StoreError> {
        let mut state = self.lock();
        let lease = state.acquire(id, owner, ttl)?;
        Ok((lease, state.snapshot(id)?))
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
        self.append_many(id, lease, index, entries).await?;
        // Only the entries asked for are copied.
        let mut state = self.lock();
        let lease = state.acquire(id, owner, ttl)?;
        Ok((lease, state.snapshot_from(id, journal_from)?))
    }

    async fn renew_lease(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.lock().with_leased(id, lease, |exec| {
            let renewed = Lease {
                expires_at_ms: now_ms() + ttl.as_millis() as u64,
                ..lease.clone()
            };
            exec.record.lease = Some(renewed.clone());
            Ok(renewed)
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
        // Split before taking the lock: an item's digest is computed here.
        let rows: Vec<(Entry, Option<Vec<u8>>)> = entries
            .iter()
            .map(|entry| {
                let (written, item) = entry.split_item();
                (written.into_owned(), item.map(<[u8]>::to_vec))
            })
            .collect();
        self.lock().with_leased(id, lease, |exec| {
            let len = exec.record.journal_len;
            if len != index {
                return Err(StoreError::Conflict {
                    id: id.clone(),
                    index,
                    len,
                });
            }
            for (entry, item) in rows {
                exec.journal.push(entry);
                exec.items.extend(item);
            }
            exec.record.journal_len = exec.journal.len() as u64;
            Ok(())
        })
    }

    async fn suspend(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        wait: &Wait,
        consumed: u64,
    ) -> Result<Suspended, StoreError> {
        self.lock().with_leased(id, lease, |exec| {
            let arrived = match wait {
                Wait::Signal { name } => more_signals(&exec.signals, name, consumed),
                Wait::Any { signals, .. } => signals
                    .iter()
                    .any(|s| more_signals(&exec.signals, &s.name, s.consumed)),
                _ => false,
            };
            let rec = &mut exec.record;
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
    }

    async fn finish(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        outcome: &Outcome,
    ) -> Result<ExecutionRecord, StoreError> {
        let mut state = self.lock();
        state.with_leased(id, lease, |exec| {
            let rec = &mut exec.record;
            rec.lease = None;
            rec.wait = None;
            rec.status = outcome.status();
            rec.outcome = Some(outcome.clone());
            Ok(())
        })?;
        Ok(state.get(id)?.record.clone())
    }

    async fn release_lease(&self, id: &ExecutionId, lease: &Lease) -> Result<(), StoreError> {
        self.lock().with_leased(id, lease, |exec| {
            let rec = &mut exec.record;
            rec.lease = None;
            rec.status = Status::Suspended;
            rec.wait = Some(Wait::Ready);
            Ok(())
        })
    }

    async fn signal(
        &self,
        id: &ExecutionId,
        name: &str,
        payload: &[u8],
    ) -> Result<Delivered, StoreError> {
        let mut state = self.lock();
        let exec = unfinished(&mut state.executions, id)?;
        let seq = exec.signals.len() as u64;
        exec.signals.push(SignalRecord {
            seq,
            name: name.to_owned(),
            payload: payload.to_vec(),
        });
        let rec = &mut exec.record;
        let woke = rec.status == Status::Suspended
            && rec.wait.as_ref().is_some_and(|w| w.wants_signal(name));
        if woke {
            rec.wait = Some(Wait::Ready);
            rec.updated_at_ms = now_ms();
        }
        Ok(Delivered { seq, woke })
    }

    async fn next_signal(
        &self,
        id: &ExecutionId,
        name: &str,
        skip: u64,
    ) -> Result<Option<SignalRecord>, StoreError> {
        let state = self.lock();
        let Some(exec) = state.executions.get(id) else {
            return Ok(None);
        };
        Ok(exec
            .signals
            .iter()
            .filter(|s| s.name == name)
            .nth(usize::try_from(skip).unwrap_or(usize::MAX))
            .cloned())
    }

    async fn items(
        &self,
        id: &ExecutionId,
        after: Option<u64>,
        max: usize,
    ) -> Result<ItemsPage, StoreError> {
        let state = self.lock();
        let exec = state.get(id)?;
        let from = after.map_or(0, |a| a.saturating_add(1));
        let items = exec
            .items
            .iter()
            .enumerate()
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
            .take(max)
            .map(|(offset, item)| (offset as u64, item.clone()))
            .collect();
        Ok(ItemsPage {
            items,
            count: exec.items.len() as u64,
        })
    }

    async fn touch_session(
        &self,
        id: &ExecutionId,
        session: &str,
        acked: Option<u64>,
    ) -> Result<ConsumerSession, StoreError> {
        let mut state = self.lock();
        let exec = existing(&mut state.executions, id)?;
        let s = exec
            .sessions
            .entry(session.to_owned())
            .or_insert_with(|| ConsumerSession {
                id: session.to_owned(),
                acked: None,
                last_access_ms: 0,
                closed: false,
            });
        if !s.closed {
            s.acked = s.acked.max(acked);
            s.last_access_ms = now_ms();
        }
        Ok(s.clone())
    }

    async fn close_session(
        &self,
        id: &ExecutionId,
        session: &str,
    ) -> Result<Option<ConsumerSession>, StoreError> {
        let mut state = self.lock();
        let exec = existing(&mut state.executions, id)?;
        Ok(exec.sessions.get_mut(session).map(|s| {
            s.closed = true;
            s.last_access_ms = now_ms();
            s.clone()
        }))
    }

    async fn sessions(&self, id: &ExecutionId) -> Result<Vec<ConsumerSession>, StoreError> {
        Ok(self.lock().get(id)?.sessions.values().cloned().collect())
    }

    async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError> {
        let mut state = self.lock();
        let state = &mut *state;
        let exec = unfinished(&mut state.executions, id)?;
        let rec = &mut exec.record;
        rec.status = Status::Cancelled;
        rec.outcome = Some(Outcome::Cancelled);
        rec.lease = None;
        rec.wait = None;
        rec.updated_at_ms = now_ms();
        let out = rec.clone();
        state.index.reindex(exec);
        Ok(out)
    }
}

#[cfg(test)]
impl MemoryStore {
    /// A unit test's execution `id`, created and leased to the host `h`.
    pub(crate) async fn leased_execution(&self, id: &str) -> (ExecutionId, Lease) {
        let id = ExecutionId::new(id).unwrap();
        let rec = ExecutionRecord::new(id.clone(), "wf".into(), Digest::of(b"c"), vec![], now_ms());
        self.create_execution(&rec).await.unwrap();
        let lease = self
            .acquire_lease(&id, "h", Duration::from_secs(30))
            .await
            .unwrap();
        (id, lease)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::journal::{Entry, EntryKind, InputKey};
    use crate::store::now_ms;

    /// A load shares each recorded tool result with the store instead of
    /// copying it: every resume loads the whole journal, and copying its
    /// results was most of a load's time. Two loads see the same bytes.
    #[tokio::test]
    async fn loads_share_tool_results() {
        let store = MemoryStore::new();
        let (id, lease) = store.leased_execution("shared").await;
        let entry = Entry {
            at_ms: now_ms(),
            duration_us: 1,
            kind: EntryKind::Tool {
                category: "c".into(),
                name: "n".into(),
                input: InputKey::of(b"in"),
                input_len: 2,
                result: Ok(Bytes::from(vec![7; 100])),
            },
        };
        store.append(&id, &lease, 0, &entry).await.unwrap();
        let result = |journal: &[Entry]| match &journal[0].kind {
            EntryKind::Tool { result: Ok(r), .. } => r.clone(),
            other => panic!("not the appended call: {other:?}"),
        };
        let (a, b) = (
            store.load(&id).await.unwrap(),
            store.load(&id).await.unwrap(),
        );
        let (a, b) = (result(&a.journal), result(&b.journal));
        assert_eq!(a, Bytes::from(vec![7; 100]));
        assert_eq!(a.as_ptr(), b.as_ptr(), "each load copied the result");
    }
}
