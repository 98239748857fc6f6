//! Group commit on a file: appends of every execution go to one committer
//! thread, which commits all that are waiting in one transaction (one
//! fsync for all); each append is answered after the fsync, and one that
//! is refused fails alone.

use redb::{Database, WriteTransaction};

use super::tables::*;
use crate::execution::Lease;
use crate::ids::ExecutionId;
use crate::store::StoreError;

/// An encoded journal entry and the item it emitted, if any.
pub(super) type Row = (Vec<u8>, Option<Vec<u8>>);

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
        rec.journal_len += rows.len() as u64;
        Ok(())
    })
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
/// side by side share each fsync (group commit) instead of queueing for
/// one each. An append that is refused (lease, index) writes nothing and
/// fails alone; an error of the database fails the whole group, which
/// then wrote nothing. It holds the database weakly, so dropping the store
/// closes the file (a host can reopen it at once), and ends with the last
/// sender.
pub(super) fn committer(db: std::sync::Weak<Database>, appends: std::sync::mpsc::Receiver<Append>) {
    while let Ok(first) = appends.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match appends.try_recv() {
                Ok(a) => group.push(a),
                Err(_) => break,
            }
        }
        let outcome = match db.upgrade() {
            Some(db) => commit_group(&db, &group),
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

/// Applies a group of appends in one durable transaction; each one's
/// result, or the error that aborted them all.
pub(super) fn commit_group(
    db: &Database,
    group: &[Append],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let tx = db.begin_write().map_err(db_err)?;
    let mut results = Vec::with_capacity(group.len());
    for a in group {
        match append_rows(&tx, &a.id, &a.lease, a.index, &a.rows) {
            // Possibly half written: abort the transaction (dropped).
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            result => results.push(result),
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(results)
}
