//! The memory store's indexes, the embedded store's layout in ordered
//! sets: what a listing, a count or a purge reads.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::Execution;
use crate::execution::Status;
use crate::ids::ExecutionId;
use crate::store::listing::{ListCursor, Order, merge};
use crate::store::{ListQuery, StoreError};

/// The indexes: per index list (a status, or a workflow and a status),
/// its executions ordered by `(changed at (ms), id)`, as the embedded
/// store's `index` table orders a scope's keys; and executions per status.
/// A list's key is its status and workflow, and an entry's id is shared
/// with the execution's, so moving an execution between lists (twice in a
/// zero-step execution's life) allocates nothing.
#[derive(Default)]
pub(super) struct Index {
    by_status: [List; Status::ALL.len()],
    by_workflow: HashMap<Box<str>, [List; Status::ALL.len()]>,
    counts: [u64; Status::ALL.len()],
}

/// One index list.
type List = BTreeSet<(u64, Arc<str>)>;

impl Index {
    /// How many executions have `status`.
    pub(super) fn count(&self, status: Status) -> u64 {
        self.counts[usize::from(status.code())]
    }

    /// Moves `exec`'s entries to its status, at its `updated_at_ms`, unless
    /// they are there already. Called after every change of a record.
    pub(super) fn reindex(&mut self, exec: &mut Execution) {
        let rec = &exec.record;
        if exec.indexed.is_some_and(|(status, _)| status == rec.status) {
            return;
        }
        if let Some(old) = exec.indexed.take() {
            self.remove(&exec.index_id, &rec.workflow, old);
        }
        let (status, at) = (rec.status, rec.updated_at_ms);
        let code = usize::from(status.code());
        let workflow = match self.by_workflow.get_mut(rec.workflow.as_str()) {
            Some(lists) => lists,
            None => self
                .by_workflow
                .entry(rec.workflow.as_str().into())
                .or_default(),
        };
        workflow[code].insert((at, exec.index_id.clone()));
        self.by_status[code].insert((at, exec.index_id.clone()));
        self.counts[code] += 1;
        exec.indexed = Some((status, at));
    }

    /// Removes a deleted execution's entries.
    pub(super) fn unindex(&mut self, exec: &Execution) {
        if let Some(old) = exec.indexed {
            self.remove(&exec.index_id, &exec.record.workflow, old);
        }
    }

    fn remove(&mut self, id: &Arc<str>, workflow: &str, (status, at): (Status, u64)) {
        let code = usize::from(status.code());
        let key = (at, id.clone());
        self.by_status[code].remove(&key);
        if let Some(lists) = self.by_workflow.get_mut(workflow) {
            lists[code].remove(&key);
        }
        let n = &mut self.counts[code];
        *n = n.saturating_sub(1);
    }

    /// The first `limit` entries the query admits, merged over the lists
    /// it reads.
    pub(super) fn list(
        &self,
        query: &ListQuery,
        limit: usize,
    ) -> Result<Vec<ListCursor>, StoreError> {
        let mut lists = Vec::new();
        for r in query.index_ranges() {
            let code = usize::from(r.status.code());
            let list = match &query.workflow {
                None => &self.by_status[code],
                Some(w) => match self.by_workflow.get(w.as_str()) {
                    Some(lists) => &lists[code],
                    None => continue,
                },
            };
            let bound = |(at, id): (u64, &str)| (at, Arc::<str>::from(id));
            let range = list.range(bound(r.lo)..bound(r.hi));
            let rows: Box<dyn Iterator<Item = _>> = match query.order {
                Order::NewestFirst => Box::new(range.rev()),
                Order::OldestFirst => Box::new(range),
            };
            lists.push(query.first_admitted(
                limit,
                rows.map(|(at, id)| {
                    Ok::<_, StoreError>(ListCursor {
                        changed_at_us: at.saturating_mul(1000),
                        id: ExecutionId::new(&**id)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    })
                }),
            )?);
        }
        Ok(merge(lists, query.order, limit))
    }
}
