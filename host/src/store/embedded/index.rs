//! The embedded store's indexes, kept in the transaction that writes the
//! record they index (so they always agree with the records):
//!
//! - `index`: `(scope, changed at (ms), id)`, one entry under the status
//!   scope (`s<code>`) and one under the workflow-and-status scope
//!   (`w<code>:<workflow>`) per execution;
//! - `index_positions`: id to `(status code, changed at)`, where its
//!   entries are, so a change finds them without a scan;
//! - `index_counts`: executions per status code;
//! - `meta`: `indexed` once a store written before the indexes existed
//!   has had them built (see [`build`]).
//!
//! The time is that of the last status change (the record's
//! `updated_at_ms` at that change): an append or a lease renewal, which do
//! not change the status, do not move the entries.

use std::collections::HashMap;

use redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::tables::{EXECUTIONS, db_err, read_record, remove_rows};
use crate::execution::{ExecutionRecord, Status};
use crate::ids::ExecutionId;
use crate::persist::decode;
use crate::store::StoreError;
use crate::store::listing::{ExecutionPage, ListCursor, ListQuery, Order, index_scope, merge};

pub(super) const INDEX: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("index");
pub(super) const POSITIONS: TableDefinition<&str, (u8, u64)> =
    TableDefinition::new("index_positions");
pub(super) const COUNTS: TableDefinition<u8, u64> = TableDefinition::new("index_counts");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn status_scope(status: Status) -> String {
    index_scope(status, None)
}

fn workflow_scope(status: Status, workflow: &str) -> String {
    index_scope(status, Some(workflow))
}

/// Moves `rec`'s index entries to its status, at its `updated_at_ms`,
/// unless they are there already (same status). Call after every write of
/// a record, in the same transaction.
pub(super) fn reindex(tx: &WriteTransaction, rec: &ExecutionRecord) -> Result<(), StoreError> {
    let mut positions = tx.open_table(POSITIONS).map_err(db_err)?;
    let old = positions
        .get(rec.id.as_str())
        .map_err(db_err)?
        .map(|v| v.value());
    if old.is_some_and(|(code, _)| code == rec.status.code()) {
        return Ok(());
    }
    if let Some(old) = old {
        remove_entries(tx, &rec.id, &rec.workflow, old)?;
    }
    let at = rec.updated_at_ms;
    let mut index = tx.open_table(INDEX).map_err(db_err)?;
    index
        .insert((status_scope(rec.status).as_str(), at, rec.id.as_str()), ())
        .map_err(db_err)?;
    index
        .insert(
            (
                workflow_scope(rec.status, &rec.workflow).as_str(),
                at,
                rec.id.as_str(),
            ),
            (),
        )
        .map_err(db_err)?;
    positions
        .insert(rec.id.as_str(), (rec.status.code(), at))
        .map_err(db_err)?;
    count(tx, rec.status.code(), 1)
}

/// Removes a deleted execution's index entries.
pub(super) fn unindex(
    tx: &WriteTransaction,
    id: &ExecutionId,
    workflow: &str,
) -> Result<(), StoreError> {
    let old = tx
        .open_table(POSITIONS)
        .map_err(db_err)?
        .remove(id.as_str())
        .map_err(db_err)?
        .map(|v| v.value());
    match old {
        Some(old) => remove_entries(tx, id, workflow, old),
        None => Ok(()),
    }
}

fn remove_entries(
    tx: &WriteTransaction,
    id: &ExecutionId,
    workflow: &str,
    (code, at): (u8, u64),
) -> Result<(), StoreError> {
    let status = Status::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("execution {id}: index status {code}")))?;
    let mut index = tx.open_table(INDEX).map_err(db_err)?;
    index
        .remove((status_scope(status).as_str(), at, id.as_str()))
        .map_err(db_err)?;
    index
        .remove((workflow_scope(status, workflow).as_str(), at, id.as_str()))
        .map_err(db_err)?;
    count(tx, code, -1)
}

fn count(tx: &WriteTransaction, code: u8, by: i64) -> Result<(), StoreError> {
    let mut counts = tx.open_table(COUNTS).map_err(db_err)?;
    let n = counts.get(code).map_err(db_err)?.map_or(0, |v| v.value());
    counts
        .insert(code, n.saturating_add_signed(by))
        .map_err(db_err)?;
    Ok(())
}

/// Executions per status, from the counters.
pub(super) fn counts(tx: &ReadTransaction) -> Result<HashMap<Status, u64>, StoreError> {
    let t = tx.open_table(COUNTS).map_err(db_err)?;
    let mut out = HashMap::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        if let Some(s) = Status::from_code(k.value())
            && v.value() > 0
        {
            out.insert(s, v.value());
        }
    }
    Ok(out)
}

/// The first `limit` index entries the query admits, merged over the
/// statuses it reads.
pub(super) fn entries(
    index: &impl ReadableTable<(&'static str, u64, &'static str), ()>,
    query: &ListQuery,
    limit: usize,
) -> Result<Vec<ListCursor>, StoreError> {
    let mut lists = Vec::new();
    for r in query.index_ranges() {
        let range = index
            .range((r.scope.as_str(), r.lo.0, r.lo.1)..(r.scope.as_str(), r.hi.0, r.hi.1))
            .map_err(db_err)?;
        let rows: Box<dyn Iterator<Item = _>> = match query.order {
            Order::NewestFirst => Box::new(range.rev()),
            Order::OldestFirst => Box::new(range),
        };
        lists.push(query.first_admitted(
            limit,
            rows.map(|row| {
                let (k, _) = row.map_err(db_err)?;
                let (_, at, id) = k.value();
                Ok::<_, StoreError>(ListCursor {
                    changed_at_us: at.saturating_mul(1000),
                    id: ExecutionId::new(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            }),
        )?);
    }
    Ok(merge(lists, query.order, limit))
}

/// A page of executions (see [`crate::store::Store::list_page`]), in one
/// read transaction, so the records agree with the index.
pub(super) fn page(tx: &ReadTransaction, query: &ListQuery) -> Result<ExecutionPage, StoreError> {
    let limit = query.limit.max(1);
    let mut found = entries(&tx.open_table(INDEX).map_err(db_err)?, query, limit + 1)?;
    let more = found.len() > limit;
    found.truncate(limit);
    let execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
    let executions = found
        .iter()
        .map(|e| read_record(&execs, &e.id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ExecutionPage {
        read: executions.len(),
        executions,
        next: if more { found.pop() } else { None },
    })
}

/// Deletes up to `limit` executions that ended before `before_ms`, the
/// oldest of each terminal status first, found through the index: a purge
/// reads what it deletes. Returns how many.
pub(super) fn purge(
    tx: &WriteTransaction,
    before_ms: u64,
    limit: usize,
) -> Result<usize, StoreError> {
    let mut due = Vec::new();
    for query in ListQuery::expired(before_ms, limit) {
        due.extend(entries(
            &tx.open_table(INDEX).map_err(db_err)?,
            &query,
            limit,
        )?);
    }
    due.sort_unstable();
    due.truncate(limit);
    let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
    for e in &due {
        let rec = read_record(&execs, &e.id)?;
        execs.remove(e.id.as_str()).map_err(db_err)?;
        unindex(tx, &e.id, &rec.workflow)?;
        remove_rows(tx, &e.id)?;
    }
    Ok(due.len())
}

/// Builds the indexes of a store written before they existed, `batch`
/// records per transaction, logging progress; returns how many records it
/// indexed (0 if the store was indexed already).
pub(super) fn build(db: &redb::Database, durable: bool, batch: usize) -> Result<usize, StoreError> {
    use super::tables::write;
    // A read: an indexed store (every open but the first) writes nothing.
    let indexed = db
        .begin_read()
        .map_err(db_err)?
        .open_table(META)
        .map_err(db_err)?
        .get("indexed")
        .map_err(db_err)?
        .is_some();
    if indexed {
        return Ok(0);
    }
    let total = {
        let tx = db.begin_read().map_err(db_err)?;
        tx.open_table(EXECUTIONS)
            .map_err(db_err)?
            .len()
            .map_err(db_err)?
    };
    if total > 0 {
        tracing::info!(total, "building the execution indexes of this store");
    }
    let mut done = 0usize;
    let mut after: Option<String> = None;
    loop {
        let (n, last) = write(db, durable, |tx| {
            let execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
            let mut records = Vec::new();
            let rows = match &after {
                Some(a) => execs.range::<&str>((
                    std::ops::Bound::Excluded(a.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => execs.range::<&str>(..),
            }
            .map_err(db_err)?;
            for row in rows.take(batch) {
                let rec: ExecutionRecord = decode(row.map_err(db_err)?.1.value())?;
                records.push(rec);
            }
            drop(execs);
            for rec in &records {
                reindex(tx, rec)?;
            }
            if records.len() < batch {
                tx.open_table(META)
                    .map_err(db_err)?
                    .insert("indexed", 1)
                    .map_err(db_err)?;
            }
            Ok((records.len(), records.last().map(|r| r.id.to_string())))
        })?;
        done += n;
        if n > 0 {
            tracing::info!(done, total, "indexed executions");
        }
        match last {
            Some(l) if n == batch => after = Some(l),
            _ => return Ok(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Digest;
    use crate::persist::encode;
    use crate::store::{EmbeddedStore, Store};

    /// A file written before the indexes existed (records only) is indexed
    /// when opened, in batches; a cursor taken before a restart goes on
    /// where it stopped after it.
    #[tokio::test]
    async fn an_older_file_is_indexed_on_open_and_cursors_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(EXECUTIONS).unwrap();
                for i in 0..2500u64 {
                    let mut rec = ExecutionRecord::new(
                        ExecutionId::new(format!("e{i:05}")).unwrap(),
                        if i % 2 == 0 { "even" } else { "odd" }.into(),
                        Digest::of(b"c"),
                        vec![],
                        1_000 + i,
                    );
                    rec.status = if i % 5 == 0 {
                        Status::Completed
                    } else {
                        Status::Suspended
                    };
                    rec.updated_at_ms = 1_000 + i;
                    t.insert(rec.id.as_str(), encode(&rec).as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        let counts = store.count_by_status().await.unwrap();
        assert_eq!(counts.get(&Status::Completed), Some(&500));
        assert_eq!(counts.get(&Status::Suspended), Some(&2000));
        let query = ListQuery {
            status: Some(Status::Completed),
            workflow: Some("even".into()),
            limit: 100,
            ..ListQuery::default()
        };
        let first = store.list_page(&query).await.unwrap();
        assert_eq!(first.executions.len(), 100);
        assert_eq!(first.executions[0].id.as_str(), "e02490");
        assert_eq!(first.read, 100);
        drop(store);

        let store = EmbeddedStore::open(&path).unwrap();
        let second = store
            .list_page(&ListQuery {
                after: first.next.clone(),
                ..query
            })
            .await
            .unwrap();
        // 500 completed, of which the even ones (i % 10 == 0): 250.
        assert_eq!(second.executions.len(), 100);
        assert_eq!(second.executions[0].id.as_str(), "e01490");
        assert!(second.next.is_some());
    }
}
