//! The embedded store's tables and the helpers every operation uses over
//! a redb transaction: reading and writing records, the lease check,
//! removing an execution's rows, numbering deployment versions.

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::execution::{ConsumerSession, ExecutionRecord, Lease, SignalRecord, Snapshot};
use crate::ids::ExecutionId;
use crate::journal::Entry;
use crate::persist::{LentJournal, decode, encode};
use crate::store::{DeploymentVersion, StoreError, now_ms};

pub(super) const COMPONENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("components");
pub(super) const DEPLOYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("deployments");
/// Every version of each deployment, oldest first (one encoded list per name).
pub(super) const VERSIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("deployment_versions");
pub(super) const EXECUTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("executions");
pub(super) const JOURNAL: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("journal");
pub(super) const SIGNALS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("signals");
/// The output stream: (execution id, offset) to item bytes.
pub(super) const ITEMS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("items");
/// Consumer sessions of output streams, by execution and session id.
pub(super) const SESSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sessions");

pub(super) fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {}", e.into()))
}

/// Runs `f` in a write transaction and commits it; an error aborts it.
pub(super) fn write<R>(
    db: &Database,
    durable: bool,
    f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let mut tx = db.begin_write().map_err(db_err)?;
    if !durable {
        tx.set_durability(Durability::None).map_err(db_err)?;
    }
    let out = f(&tx)?;
    tx.commit().map_err(db_err)?;
    Ok(out)
}

/// The most entries [`journal_rows`] allocates room for before reading
/// them.
const MAX_EXPECTED_ROWS: usize = 1 << 16;

/// The signals of `id` not yet taken, oldest first.
pub(super) fn signal_rows(
    tx: &ReadTransaction,
    id: &ExecutionId,
) -> Result<Vec<SignalRecord>, StoreError> {
    let mut out = Vec::new();
    each_row(tx, SIGNALS, id, 0, usize::MAX, |row| {
        out.push(decode(row)?);
        Ok(())
    })?;
    Ok(out)
}

/// Up to `max` journal entries of `id` from index `from`, read with
/// [`LentJournal`]: redb lends each row only while it is read, so the
/// results are copied out, into one buffer for all of them. `expected` is
/// how many the caller expects (from the record's journal length): the
/// entries are read into one allocation of that size instead of a vector
/// grown (and copied) in steps. It is only a hint, and one from a damaged
/// record allocates at most [`MAX_EXPECTED_ROWS`].
pub(super) fn journal_rows(
    tx: &ReadTransaction,
    id: &ExecutionId,
    from: u64,
    max: usize,
    expected: u64,
) -> Result<Vec<Entry>, StoreError> {
    let room = usize::try_from(expected)
        .unwrap_or(usize::MAX)
        .min(max)
        .min(MAX_EXPECTED_ROWS);
    let mut journal = LentJournal::with_capacity(room);
    each_row(tx, JOURNAL, id, from, max, |row| journal.push(row))?;
    Ok(journal.finish())
}

/// Hands `f` up to `max` rows of `id` from index `from` in `table`, in
/// order.
fn each_row(
    tx: &ReadTransaction,
    table: TableDefinition<(&str, u64), &[u8]>,
    id: &ExecutionId,
    from: u64,
    max: usize,
    mut f: impl FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let table = tx.open_table(table).map_err(db_err)?;
    for row in table
        .range((id.as_str(), from)..=(id.as_str(), u64::MAX))
        .map_err(db_err)?
        .take(max)
    {
        f(row.map_err(db_err)?.1.value())?;
    }
    Ok(())
}

pub(super) fn read_record(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &ExecutionId,
) -> Result<ExecutionRecord, StoreError> {
    match table.get(id.as_str()).map_err(db_err)? {
        Some(v) => decode(v.value()),
        None => Err(StoreError::NotFound(id.clone())),
    }
}

/// Reads a record inside a write transaction, checks that `lease` is the live
/// lease, and hands it to `f` to change; writes it back.
pub(super) fn with_leased<R>(
    tx: &WriteTransaction,
    id: &ExecutionId,
    lease: &Lease,
    f: impl FnOnce(&mut ExecutionRecord) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
    let mut rec = read_unfinished(&execs, id)?;
    check_lease(&rec, lease)?;
    let out = f(&mut rec)?;
    rec.updated_at_ms = now_ms();
    execs
        .insert(id.as_str(), encode(&rec).as_slice())
        .map_err(db_err)?;
    super::index::reindex(tx, &rec)?;
    Ok(out)
}

/// Reads a record that has not reached a terminal status.
pub(super) fn read_unfinished(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &ExecutionId,
) -> Result<ExecutionRecord, StoreError> {
    let rec = read_record(table, id)?;
    if rec.status.is_terminal() {
        return Err(StoreError::Terminal {
            id: rec.id.clone(),
            status: rec.status,
        });
    }
    Ok(rec)
}

/// How many items execution `id` has emitted (one past the last offset).
pub(super) fn item_count(
    items: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    id: &ExecutionId,
) -> Result<u64, StoreError> {
    let last = items
        .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
        .map_err(db_err)?
        .next_back()
        .transpose()
        .map_err(db_err)?;
    Ok(last.map_or(0, |(k, _)| k.value().1 + 1))
}

/// Removes an execution's journal entries and signals.
pub(super) fn remove_rows(tx: &WriteTransaction, id: &ExecutionId) -> Result<(), StoreError> {
    let range = (id.as_str(), 0)..=(id.as_str(), u64::MAX);
    tx.open_table(JOURNAL)
        .map_err(db_err)?
        .retain_in(range.clone(), |_, _| false)
        .map_err(db_err)?;
    tx.open_table(SIGNALS)
        .map_err(db_err)?
        .retain_in(range.clone(), |_, _| false)
        .map_err(db_err)?;
    tx.open_table(ITEMS)
        .map_err(db_err)?
        .retain_in(range, |_, _| false)
        .map_err(db_err)?;
    tx.open_table(SESSIONS)
        .map_err(db_err)?
        .retain_in((id.as_str(), "")..=(id.as_str(), "\u{10ffff}"), |_, _| {
            false
        })
        .map_err(db_err)?;
    Ok(())
}

pub(super) fn read_session(
    t: &redb::Table<(&str, &str), &[u8]>,
    key: (&str, &str),
) -> Result<Option<ConsumerSession>, StoreError> {
    t.get(key)
        .map_err(db_err)?
        .map(|v| decode(v.value()))
        .transpose()
}

pub(super) fn check_lease(rec: &ExecutionRecord, lease: &Lease) -> Result<(), StoreError> {
    match &rec.lease {
        Some(l) if l.token == lease.token && l.expires_at_ms > now_ms() => Ok(()),
        _ => Err(StoreError::LeaseLost(rec.id.clone())),
    }
}

pub(super) fn signals_named(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    id: &ExecutionId,
    name: &str,
) -> Result<Vec<SignalRecord>, StoreError> {
    let mut out = Vec::new();
    for row in table
        .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
        .map_err(db_err)?
    {
        let (_, v) = row.map_err(db_err)?;
        let s: SignalRecord = decode(v.value())?;
        if s.name == name {
            out.push(s);
        }
    }
    Ok(out)
}

/// Numbers versions by their position (they are stored without numbers).
pub(super) fn numbered(mut all: Vec<DeploymentVersion>) -> Vec<DeploymentVersion> {
    for (i, v) in all.iter_mut().enumerate() {
        v.version = i as u32 + 1;
    }
    all
}

pub(super) fn read_versions(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Vec<DeploymentVersion>, StoreError> {
    match t.get(name).map_err(db_err)? {
        Some(v) => Ok(numbered(decode(v.value())?)),
        None => Ok(Vec::new()),
    }
}

/// What [`crate::store::Store::load`] reads: the record, the journal and
/// the signals of `id`, in one read transaction.
pub(super) fn snapshot(db: &Database, id: &ExecutionId) -> Result<Snapshot, StoreError> {
    snapshot_from(db, id, 0)
}

/// [`snapshot`] with the journal's entries from index `from` on.
pub(super) fn snapshot_from(
    db: &Database,
    id: &ExecutionId,
    from: u64,
) -> Result<Snapshot, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let record = read_record(&tx.open_table(EXECUTIONS).map_err(db_err)?, id)?;
    let expected = record.journal_len.saturating_sub(from);
    let journal = journal_rows(&tx, id, from, usize::MAX, expected)?;
    let signals = signal_rows(&tx, id)?;
    Ok(Snapshot {
        record,
        journal,
        signals,
    })
}
