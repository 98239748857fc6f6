//! The append log of a file store: what makes a journal append durable at
//! the cost of one `fdatasync`.
//!
//! A durable redb commit syncs its pages and then its header; a journal
//! append touches pages spread over the file (the journal's tree, the
//! record's, the allocator's), so it cost several times one `fdatasync` of
//! a small write. The committer instead writes each group of appends to
//! this log (one record, one `fdatasync`) and commits the same changes to
//! redb without a sync (`Durability::None`), in that order and inside the
//! one write transaction: nothing is visible to a reader before its log
//! record is durable, and an append is answered after both (invariant 2 in
//! ARCHITECTURE.md).
//!
//! Every durable redb commit (every other operation, and the committer's
//! checkpoint once the log has grown) makes all earlier changes durable in
//! the file; a checkpoint then empties the log. When the file is opened,
//! the log's records are applied again in order, each one only where the
//! journal has not reached it (a record whose changes the file already
//! holds is skipped), and the log is emptied.
//!
//! A record is `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`,
//! the payload being [`persist::encode`](crate::persist::encode)d appends;
//! reading stops at the first record that is short or fails its checksum
//! (a write the process did not finish), which was never answered.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use redb::{Database, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::committer::{Row, insert_rows};
use super::tables::*;
use crate::ids::ExecutionId;
use crate::persist::{decode, encode};
use crate::store::{StoreError, now_ms};

/// The log grows to about this many bytes before a checkpoint empties it.
pub(super) const CHECKPOINT_BYTES: u64 = 8 << 20;

/// At most this many groups are logged between checkpoints, which also
/// bounds what redb keeps in memory for commits not yet durable in the file.
pub(super) const CHECKPOINT_GROUPS: u64 = 2048;

/// The log beside the store file at `store`.
pub(super) fn path_of(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

/// One execution's rows as logged (borrowed for writing).
#[derive(Serialize)]
struct LoggedRef<'a> {
    id: &'a str,
    index: u64,
    rows: Vec<RowRef<'a>>,
}

#[derive(Serialize)]
struct RowRef<'a>(
    #[serde(with = "serde_bytes")] &'a [u8],
    Option<&'a serde_bytes::Bytes>,
);

/// One execution's rows as read back.
#[derive(Deserialize)]
struct Logged {
    id: String,
    index: u64,
    rows: Vec<LoggedRow>,
}

#[derive(Deserialize)]
struct LoggedRow(serde_bytes::ByteBuf, Option<serde_bytes::ByteBuf>);

/// The log, open for appending.
pub(super) struct Wal {
    file: File,
    path: PathBuf,
    /// Bytes of whole records in the file.
    len: u64,
    /// Groups logged since the last checkpoint.
    groups: u64,
    /// See [`is_broken`](Self::is_broken).
    broken: bool,
}

/// Appends accepted in one group, as the log records them.
pub(super) struct Record(Vec<u8>);

impl Record {
    /// The record of the appends `(id, index, rows)`.
    pub(super) fn of<'a>(appends: impl Iterator<Item = (&'a ExecutionId, u64, &'a [Row])>) -> Self {
        let logged: Vec<LoggedRef<'a>> = appends
            .map(|(id, index, rows)| LoggedRef {
                id: id.as_str(),
                index,
                rows: rows
                    .iter()
                    .map(|(entry, item)| {
                        RowRef(entry, item.as_deref().map(serde_bytes::Bytes::new))
                    })
                    .collect(),
            })
            .collect();
        let payload = encode(&logged);
        let mut out = Vec::with_capacity(payload.len() + 8);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Self(out)
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "embedded store: cannot {what} the append log {}: {e}",
        path.display()
    ))
}

impl Wal {
    /// Applies what the log at `path` holds to `db` (one durable commit),
    /// empties it and opens it for appending. Returns the log and how many
    /// appends were applied (those the file did not hold yet).
    pub(super) fn recover(db: &Database, path: &Path) -> Result<(Self, usize), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err(path, "open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err(path, "read", e))?;
        let records = records(&bytes)?;
        let mut applied = 0;
        if !records.is_empty() {
            applied = write(db, true, |tx| {
                let mut applied = 0;
                for logged in records.iter().flatten() {
                    applied += replay(tx, logged, path)?;
                }
                Ok(applied)
            })?;
        }
        let mut wal = Self {
            file,
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            groups: 0,
            broken: false,
        };
        wal.reset()?;
        Ok((wal, applied))
    }

    /// Appends `record` and syncs it. On an error the log may end in a
    /// partial record: the caller makes the group durable another way and
    /// then [`reset`](Self::reset)s the log.
    pub(super) fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        self.file
            .write_all(&record.0)
            .map_err(|e| io_err(&self.path, "write", e))?;
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.path, "sync", e))?;
        self.len += record.0.len() as u64;
        self.groups += 1;
        Ok(())
    }

    /// Removes `record`, the last one appended (its changes were not
    /// applied), so no later open applies what callers were told failed.
    /// If it cannot, the log is broken until the next checkpoint empties
    /// it: a later record at the same journal index would be skipped in
    /// favour of this one.
    pub(super) fn undo(&mut self, record: &Record) {
        let before = self.len - record.0.len() as u64;
        let undone = self
            .file
            .set_len(before)
            .and_then(|()| self.file.seek(SeekFrom::Start(before)).map(|_| ()))
            .and_then(|()| self.file.sync_all());
        match undone {
            Ok(()) => {
                self.len = before;
                self.groups -= 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot take back an append log record");
                self.broken = true;
            }
        }
    }

    /// Whether a failed [`undo`](Self::undo) left a record that was not
    /// applied: nothing may be logged after it.
    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether the log has grown enough that a checkpoint should empty it.
    pub(super) fn wants_checkpoint(&self) -> bool {
        self.broken || self.len >= CHECKPOINT_BYTES || self.groups >= CHECKPOINT_GROUPS
    }

    /// Makes the next [`wants_checkpoint`](Self::wants_checkpoint) true.
    pub(super) fn force_checkpoint(&mut self) {
        self.groups = CHECKPOINT_GROUPS;
    }

    /// Empties the log. Only once everything it holds is durable in the
    /// store file (a durable commit after the last logged group); a record
    /// whose changes were not applied goes with it, as it should.
    pub(super) fn reset(&mut self) -> Result<(), StoreError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_err(&self.path, "empty", e))?;
        self.len = 0;
        self.groups = 0;
        self.broken = false;
        Ok(())
    }
}

/// The whole records at the start of `bytes`, decoded; reading stops at
/// the first one that is short or fails its checksum.
fn records(mut bytes: &[u8]) -> Result<Vec<Vec<Logged>>, StoreError> {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        let Some(payload) = bytes.get(8..8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push(decode(payload)?);
        bytes = &bytes[8 + len..];
    }
    Ok(out)
}

/// Applies one logged append unless the journal already holds it; 1 if it
/// was applied. An execution deleted since is skipped.
fn replay(tx: &WriteTransaction, logged: &Logged, path: &Path) -> Result<usize, StoreError> {
    let id = ExecutionId::new(logged.id.as_str())
        .map_err(|e| StoreError::Corrupt(format!("append log {}: {e}", path.display())))?;
    let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
    let mut rec = match read_record(&execs, &id) {
        Ok(rec) => rec,
        Err(StoreError::NotFound(_)) => return Ok(0),
        Err(e) => return Err(e),
    };
    if rec.journal_len > logged.index {
        return Ok(0);
    }
    if rec.journal_len < logged.index {
        return Err(StoreError::Corrupt(format!(
            "append log {}: execution {id} has {} journal entries, and the log continues it \
             at entry {}",
            path.display(),
            rec.journal_len,
            logged.index
        )));
    }
    let rows: Vec<Row> = logged
        .rows
        .iter()
        .map(|LoggedRow(entry, item)| (entry.to_vec(), item.as_ref().map(|i| i.to_vec())))
        .collect();
    insert_rows(tx, &id, logged.index, &rows)?;
    rec.journal_len += rows.len() as u64;
    rec.updated_at_ms = now_ms();
    execs
        .insert(id.as_str(), encode(&rec).as_slice())
        .map_err(db_err)?;
    super::index::reindex(tx, &rec)?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::execution::{ExecutionRecord, Lease};
    use crate::ids::Digest;
    use crate::journal::{Entry, EntryKind};
    use crate::store::{EmbeddedStore, Store};

    fn entry(i: u64) -> Entry {
        let kind = if i % 3 == 1 {
            EntryKind::Emit {
                item: vec![i as u8; 3],
            }
        } else {
            EntryKind::Random { value: i }
        };
        Entry {
            at_ms: 1,
            duration_us: 1,
            kind,
        }
    }

    /// A store at `dir/s.redb` with one execution under a lease.
    async fn started(dir: &Path) -> (EmbeddedStore, ExecutionId, Lease) {
        let store = EmbeddedStore::open(dir.join("s.redb")).unwrap();
        let id = ExecutionId::new("e1").unwrap();
        let rec = ExecutionRecord::new(id.clone(), "w".into(), Digest::of(b"c"), vec![], 1);
        store.create_execution(&rec).await.unwrap();
        let lease = store
            .acquire_lease(&id, "t", Duration::from_secs(600))
            .await
            .unwrap();
        (store, id, lease)
    }

    async fn append(
        store: &EmbeddedStore,
        id: &ExecutionId,
        lease: &Lease,
        range: std::ops::Range<u64>,
    ) {
        for i in range {
            store.append_many(id, lease, i, &[entry(i)]).await.unwrap();
        }
    }

    /// The store's files as a process killed now leaves them: redb writes
    /// its header only in a durable commit, so the file holds the last
    /// one; the log holds every group since (without it if `!with_log`).
    fn crash_copy(from: &Path, to: &Path, with_log: bool) {
        std::fs::copy(from.join("s.redb"), to.join("s.redb")).unwrap();
        if with_log {
            std::fs::copy(from.join("s.redb.wal"), to.join("s.redb.wal")).unwrap();
        }
    }

    async fn journal_and_items(dir: &Path, id: &ExecutionId) -> (Vec<Entry>, Vec<(u64, Vec<u8>)>) {
        let store = EmbeddedStore::open(dir.join("s.redb")).unwrap();
        let snapshot = store.load(id).await.unwrap();
        assert_eq!(snapshot.record.journal_len, snapshot.journal.len() as u64);
        let items = store.items(id, None, 100).await.unwrap().items;
        (snapshot.journal, items)
    }

    #[tokio::test]
    async fn appends_since_the_last_durable_commit_come_back_from_the_log() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (store, id, lease) = started(a.path()).await;
        append(&store, &id, &lease, 0..5).await;
        let written = store.load(&id).await.unwrap().journal;
        let items = store.items(&id, None, 100).await.unwrap().items;
        assert_eq!((written.len(), items.len()), (5, 2));

        crash_copy(a.path(), b.path(), true);
        assert_eq!(journal_and_items(b.path(), &id).await, (written, items));
        // The file alone has none of them: the log is what carried them.
        crash_copy(a.path(), c.path(), false);
        assert_eq!(journal_and_items(c.path(), &id).await.0.len(), 0);
        drop(store);
    }

    #[tokio::test]
    async fn a_torn_record_at_the_end_is_ignored_and_the_log_goes_on() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (store, id, lease) = started(a.path()).await;
        append(&store, &id, &lease, 0..3).await;
        crash_copy(a.path(), b.path(), true);
        // A fourth record the process did not finish writing.
        let fourth = Record::of(std::iter::once((&id, 3, &[(encode(&entry(3)), None)][..])));
        let mut torn = std::fs::OpenOptions::new()
            .append(true)
            .open(b.path().join("s.redb.wal"))
            .unwrap();
        torn.write_all(&fourth.0[..fourth.0.len() - 3]).unwrap();
        drop(torn);

        let reopened = EmbeddedStore::open(b.path().join("s.redb")).unwrap();
        assert_eq!(reopened.load(&id).await.unwrap().journal.len(), 3);
        // Its leases were cleared on open; the log carries on after it.
        let lease = reopened
            .acquire_lease(&id, "t", Duration::from_secs(600))
            .await
            .unwrap();
        append(&reopened, &id, &lease, 3..6).await;
        crash_copy(b.path(), c.path(), true);
        let (journal, items) = journal_and_items(c.path(), &id).await;
        assert_eq!(journal, reopened.load(&id).await.unwrap().journal);
        assert_eq!((journal.len(), items.len()), (6, 2));
        drop(store);
    }

    #[test]
    fn reading_stops_at_a_record_that_fails_its_checksum() {
        let id = ExecutionId::new("e1").unwrap();
        let rows = [(encode(&entry(0)), None)];
        let record = |index| Record::of(std::iter::once((&id, index, &rows[..]))).0;
        let mut log = [record(0), record(1), record(2)].concat();
        assert_eq!(records(&log).unwrap().len(), 3);
        let second_payload = record(0).len() + 8;
        log[second_payload] ^= 1;
        let read = records(&log).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0][0].index, 0);
    }

    #[tokio::test]
    async fn a_log_the_file_already_holds_applies_nothing() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (store, id, lease) = started(a.path()).await;
        append(&store, &id, &lease, 0..4).await;
        let written = store.load(&id).await.unwrap().journal;
        let log = std::fs::read(a.path().join("s.redb.wal")).unwrap();
        assert!(!log.is_empty());
        // Closing makes every commit durable in the file; the log of those
        // same appends, put back, must not add them twice.
        drop(store);
        crash_copy(a.path(), b.path(), false);
        std::fs::write(b.path().join("s.redb.wal"), &log).unwrap();
        let (journal, items) = journal_and_items(b.path(), &id).await;
        assert_eq!(journal, written);
        assert_eq!(items.len(), 1);
        assert_eq!(
            std::fs::metadata(b.path().join("s.redb.wal"))
                .unwrap()
                .len(),
            0
        );
    }

    #[tokio::test]
    async fn a_checkpoint_empties_the_log() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (store, id, lease) = started(a.path()).await;
        let n = CHECKPOINT_GROUPS + 10;
        append(&store, &id, &lease, 0..n).await;
        let log = std::fs::metadata(a.path().join("s.redb.wal"))
            .unwrap()
            .len();
        // The checkpoint after group 2048 emptied it: it holds the last ten.
        let last_ten: usize = (CHECKPOINT_GROUPS..n)
            .map(|i| {
                let e = entry(i);
                let (written, item) = e.split_item();
                let rows = [(encode(written.as_ref()), item.map(<[u8]>::to_vec))];
                Record::of(std::iter::once((&id, i, &rows[..]))).0.len()
            })
            .sum();
        assert_eq!(log, last_ten as u64);
        crash_copy(a.path(), b.path(), true);
        let (journal, _) = journal_and_items(b.path(), &id).await;
        assert_eq!(journal.len() as u64, n);
        drop(store);
    }
}
