//! Group commit on a file: appends of every execution go to one committer
//! thread, which commits all that are waiting in one transaction (one
//! sync for all: see [`wal`](super::wal)); each append is answered after
//! the sync, and one that is refused fails alone.

use redb::{Database, Durability, WriteTransaction};

use super::tables::*;
use super::wal::{Record, Wal};
use crate::execution::Lease;
use crate::ids::ExecutionId;
use crate::journal::Entry;
use crate::persist::encode;
use crate::store::StoreError;

/// An encoded journal entry and the item it emitted, if any.
pub(super) type Row = (Vec<u8>, Option<Vec<u8>>);

/// `entry` as a row: encoded without its item, and the item.
pub(super) fn row(entry: &Entry) -> Row {
    let (written, item) = entry.split_item();
    (encode(written.as_ref()), item.map(<[u8]>::to_vec))
}

/// Appends `rows` as journal entries `index`, ... of execution `id` in `tx`,
/// if `lease` is live and the journal has `index` entries. A refusal
/// (lease lost, conflict, ended) writes nothing; only
/// [`StoreError::Unavailable`] can come after a partial write.
pub(super) fn append_rows(
    tx: &WriteTransaction,
    id: &ExecutionId,
    lease: &Lease,
    index: u64,
    rows: &[Row],
) -> Result<(), StoreError> {
    with_leased(tx, id, lease, |rec| {
        if rec.journal_len != index {
            return Err(StoreError::Conflict {
                id: id.clone(),
                index,
                len: rec.journal_len,
            });
        }
        insert_rows(tx, id, index, rows)?;
        rec.journal_len += rows.len() as u64;
        Ok(())
    })
}

/// Inserts `rows` as journal entries `index`, ... of `id`, and their items
/// at the end of its output stream; the caller updates the record.
pub(super) fn insert_rows(
    tx: &WriteTransaction,
    id: &ExecutionId,
    index: u64,
    rows: &[Row],
) -> Result<(), StoreError> {
    let mut journal = tx.open_table(JOURNAL).map_err(db_err)?;
    let mut items = tx.open_table(ITEMS).map_err(db_err)?;
    let mut offset = None;
    for (k, (bytes, item)) in rows.iter().enumerate() {
        journal
            .insert((id.as_str(), index + k as u64), bytes.as_slice())
            .map_err(db_err)?;
        if let Some(item) = item {
            let next = match offset {
                Some(o) => o,
                None => item_count(&items, id)?,
            };
            items
                .insert((id.as_str(), next), item.as_slice())
                .map_err(db_err)?;
            offset = Some(next + 1);
        }
    }
    Ok(())
}

/// One append waiting for the committer.
pub(super) struct Append {
    pub(super) id: ExecutionId,
    pub(super) lease: Lease,
    pub(super) index: u64,
    pub(super) rows: Vec<Row>,
    pub(super) done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Most appends in one group commit.
pub(super) const MAX_GROUP: usize = 256;

/// The committer of a file store (its own thread): takes every append that
/// is waiting and commits them in one transaction, so executions running
/// side by side share each sync (group commit) instead of queueing for
/// one each. With its append log (see [`wal`](super::wal)) that sync is
/// one `fdatasync` of the log; without one (the log failed), a durable redb
/// commit. An append that is refused (lease, index) writes nothing and
/// fails alone; an error of the database fails the whole group, which
/// then wrote nothing. It holds the database weakly, so dropping the store
/// closes the file (a host can reopen it at once), and ends with the last
/// sender.
pub(super) fn committer(
    db: std::sync::Weak<Database>,
    mut wal: Option<Wal>,
    appends: std::sync::mpsc::Receiver<Append>,
) {
    while let Ok(first) = appends.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match appends.try_recv() {
                Ok(a) => group.push(a),
                Err(_) => break,
            }
        }
        let outcome = match db.upgrade() {
            Some(db) => {
                let outcome = commit_group(&db, &group, &mut wal);
                checkpoint(&db, &mut wal);
                outcome
            }
            None => Err(StoreError::Unavailable(
                "embedded store: the store is closed".into(),
            )),
        };
        // The database is released (above) before anyone hears back.
        match outcome {
            Ok(results) => {
                for (a, result) in group.into_iter().zip(results) {
                    let _ = a.done.send(result);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for a in group {
                    let _ = a.done.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }
}

/// Empties the log once it has grown (or a write to it failed), after a
/// durable commit that makes what it holds durable in the file. A log that
/// cannot be emptied is given up: appends then commit durably.
fn checkpoint(db: &Database, wal: &mut Option<Wal>) {
    let Some(log) = wal else { return };
    if !log.wants_checkpoint() {
        return;
    }
    let emptied = write(db, true, |_| Ok(())).and_then(|()| log.reset());
    if let Err(e) = emptied {
        tracing::error!(error = %e, "the store's append log is given up; appends commit durably");
        *wal = None;
    }
}

/// Applies a group of appends in one transaction, durable by its log
/// record or by its own commit; each one's result, or the error that
/// aborted them all.
pub(super) fn commit_group(
    db: &Database,
    group: &[Append],
    wal: &mut Option<Wal>,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    if wal.as_ref().is_some_and(Wal::is_broken) {
        return Err(StoreError::Unavailable(
            "embedded store: the append log holds a record that was not applied".into(),
        ));
    }
    let mut tx = db.begin_write().map_err(db_err)?;
    let mut results = Vec::with_capacity(group.len());
    for a in group {
        match append_rows(&tx, &a.id, &a.lease, a.index, &a.rows) {
            // Possibly half written: abort the transaction (dropped).
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            result => results.push(result),
        }
    }
    if !results.iter().any(Result::is_ok) {
        // All refused, nothing written: nothing to log or commit.
        return Ok(results);
    }
    if let Some(log) = wal {
        let accepted = group
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(a, _)| (&a.id, a.index, a.rows.as_slice()));
        let record = Record::of(accepted);
        // The log first: nothing becomes visible before it is durable.
        match log.append(&record) {
            Ok(()) => {
                tx.set_durability(Durability::None).map_err(db_err)?;
                if let Err(e) = tx.commit() {
                    // Logged but not applied: the record must go.
                    log.undo(&record);
                    return Err(db_err(e));
                }
                return Ok(results);
            }
            Err(e) => {
                // This commit stays durable, and the next checkpoint
                // empties the log (which may end in a partial record).
                tracing::warn!(error = %e, "an append log write failed; the group commits durably");
                log.force_checkpoint();
            }
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(results)
}
