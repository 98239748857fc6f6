//! The journal writer of one invocation: appends its new entries in order,
//! several to a store write when they queue up (group commit).
//!
//! A step's value reaches the guest only once its entry is durable, which
//! costs one store write (an fsync) per step. An emitted item is the one
//! step with no value: nothing the guest does next depends on the write,
//! and were the host to die before it lands, replay runs the guest to the
//! same `emit` again (the journal before it decides what it emits). So
//! `emit` only queues its entry and the guest goes on, while this task
//! writes what has queued up in one [`Store::append_many`]. Every other
//! step queues its entry and waits for it ([`JournalWriter::flush`]), which
//! makes every entry before it durable too; an invocation flushes before it
//! records how it ended. Consumers read items from the store, so nobody
//! sees an item that could still be lost.
//!
//! The task starts with the first `emit`. A step that finds nothing queued
//! (always, in an invocation that emits nothing) writes its entry itself,
//! since the task is idle or absent: no hop between tasks per step.
//!
//! A failed write stops the writer: the next flush returns the error, and
//! the invocation ends on it as on any store error (the execution is
//! replayed from what is durable).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::execution::Lease;
use crate::ids::ExecutionId;
use crate::journal::{Entry, EntryKind};
use crate::store::{Store, StoreError};

/// Most entries in one store write.
const MAX_BATCH: usize = 256;
/// Most item bytes in one store write (a batch closes once past it).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Entries queued and not yet written, at most: an `emit` past it waits
/// for a write, so a guest that emits faster than the store writes is held
/// to the store's pace.
const QUEUE: usize = 512;
/// Item bytes queued and not yet written, at most (beyond one item): an
/// `emit` that would pass it first waits for what is queued, so the
/// queue's memory stays bounded however large the items.
const QUEUE_BYTES: usize = 8 << 20;

enum Op {
    /// Write this entry; nobody waits for it.
    Append(Entry),
    /// Write this entry and hand it back once it is durable.
    Record(Entry, oneshot::Sender<Result<Entry, StoreError>>),
    /// Answer once everything before is durable.
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// Hands an invocation's new entries to its writer task; dropping it
/// stops the task (what it had not written is lost, as in a crash).
pub(crate) struct JournalWriter {
    shared: Arc<Shared>,
    on_emit: Arc<dyn Fn() + Send + Sync>,
    /// The task, started by the first push: an invocation that emits
    /// nothing never has one, and its steps all write directly.
    task: Option<(mpsc::Sender<Op>, tokio::task::AbortHandle)>,
}

/// What the writer and its task both see.
struct Shared {
    store: Arc<dyn Store>,
    id: ExecutionId,
    lease: Lease,
    /// Index of the next entry to write (advanced after each write).
    index: AtomicU64,
    /// Entries pushed and not yet written (or dropped after a failure):
    /// while none are, the task is idle and a step may write directly.
    unwritten: AtomicUsize,
    /// Item bytes of those entries.
    queued: AtomicUsize,
    /// A write failed; nothing more is written.
    failed: AtomicBool,
}

impl JournalWriter {
    /// The writer of execution `id`, whose journal has `next_index`
    /// entries. `on_emit` runs after each write that made items durable.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        id: ExecutionId,
        lease: Lease,
        next_index: u64,
        on_emit: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            id,
            lease,
            index: AtomicU64::new(next_index),
            unwritten: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
        });
        Self {
            shared,
            on_emit,
            task: None,
        }
    }

    /// The task's queue, starting the task if this is the first push.
    fn queue(&mut self) -> mpsc::Sender<Op> {
        let (tx, _) = self.task.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let task = Task {
                shared: self.shared.clone(),
                on_emit: self.on_emit.clone(),
                error: None,
            };
            (tx, tokio::spawn(task.run(rx)).abort_handle())
        });
        tx.clone()
    }

    /// Queues an entry; returns at once unless the queue is full (then
    /// once there is room, or with the error that stopped the writer).
    pub(crate) async fn push(&mut self, entry: Entry) -> Result<(), StoreError> {
        let len = item_len(&entry);
        let queued = self.shared.queued.load(Ordering::Acquire);
        if queued > 0 && queued + len > QUEUE_BYTES {
            self.flush().await?;
        }
        let tx = self.queue();
        self.shared.queued.fetch_add(len, Ordering::AcqRel);
        self.shared.unwritten.fetch_add(1, Ordering::AcqRel);
        // The task only ends when this writer is dropped; a send that
        // fails anyway is reported by the next flush.
        let _ = tx.send(Op::Append(entry)).await;
        Ok(())
    }

    /// Writes `entry` after every entry queued before it and returns it
    /// once all of them are durable; or the error that stopped the writer.
    pub(crate) async fn record(&self, entry: Entry) -> Result<Entry, StoreError> {
        let sh = &self.shared;
        let Some((tx, _)) = &self.task else {
            if sh.failed.load(Ordering::Acquire) {
                return Err(earlier_failure());
            }
            return self.record_directly(entry).await;
        };
        if sh.unwritten.load(Ordering::Acquire) == 0 && !sh.failed.load(Ordering::Acquire) {
            return self.record_directly(entry).await;
        }
        let (done, wait) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the journal writer stopped".to_string());
        tx.send(Op::Record(entry, done))
            .await
            .map_err(|_| stopped())?;
        wait.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Writes `entry` from the caller's task: the task has nothing to
    /// write and is idle (the caller is the only one who gives it work,
    /// and it is here).
    async fn record_directly(&self, entry: Entry) -> Result<Entry, StoreError> {
        let sh = &self.shared;
        let index = sh.index.load(Ordering::Acquire);
        let one = std::slice::from_ref(&entry);
        match sh.store.append_many(&sh.id, &sh.lease, index, one).await {
            Ok(()) => {
                sh.index.store(index + 1, Ordering::Release);
                Ok(entry)
            }
            Err(e) => {
                sh.failed.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Returns once every entry queued so far is durable, or with the
    /// error that stopped the writer.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let Some((tx, _)) = &self.task else {
            return match self.shared.failed.load(Ordering::Acquire) {
                true => Err(earlier_failure()),
                false => Ok(()),
            };
        };
        let (done, wait) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the journal writer stopped".to_string());
        tx.send(Op::Flush(done)).await.map_err(|_| stopped())?;
        wait.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Whether entries were pushed that are not written yet.
    pub(crate) fn unwritten(&self) -> bool {
        self.shared.unwritten.load(Ordering::Acquire) > 0
    }

    /// Whether a write has failed (the next flush says how).
    pub(crate) fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.task {
            task.abort();
        }
    }
}

fn earlier_failure() -> StoreError {
    StoreError::Unavailable("an earlier journal write failed".to_string())
}

struct Task {
    shared: Arc<Shared>,
    on_emit: Arc<dyn Fn() + Send + Sync>,
    /// Why the writer stopped, until a flush takes it.
    error: Option<StoreError>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch: Vec<Entry> = Vec::new();
        let mut waiting: Vec<Waiter> = Vec::new();
        while let Some(op) = rx.recv().await {
            let (mut pushed, mut bytes) = (0, 0);
            let mut next = Some(op);
            // Take what has queued up, to a limit: one write for all of it.
            while let Some(op) = next.take() {
                match op {
                    Op::Append(entry) => {
                        pushed += 1;
                        bytes += item_len(&entry);
                        batch.push(entry);
                    }
                    Op::Record(entry, done) => {
                        waiting.push(Waiter::Entry(batch.len(), done));
                        batch.push(entry);
                    }
                    Op::Flush(done) => waiting.push(Waiter::Flush(done)),
                }
                if batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            let written = self.write(&batch).await;
            // Only after the write (and the index it moved): see `record`.
            self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
            self.shared.unwritten.fetch_sub(pushed, Ordering::AcqRel);
            for waiter in waiting.drain(..) {
                let outcome = match written {
                    true => Ok(()),
                    false => Err(self.error.take().unwrap_or_else(earlier_failure)),
                };
                match waiter {
                    Waiter::Entry(at, done) => {
                        let entry = std::mem::replace(&mut batch[at], PLACEHOLDER);
                        let _ = done.send(outcome.map(|()| entry));
                    }
                    Waiter::Flush(done) => {
                        let _ = done.send(outcome);
                    }
                }
            }
            batch.clear();
        }
    }

    /// Writes `batch` (unless an earlier write failed); whether it did.
    async fn write(&mut self, batch: &[Entry]) -> bool {
        let sh = &self.shared;
        if sh.failed.load(Ordering::Acquire) {
            return false;
        }
        if batch.is_empty() {
            return true;
        }
        let index = sh.index.load(Ordering::Acquire);
        match sh.store.append_many(&sh.id, &sh.lease, index, batch).await {
            Ok(()) => {
                sh.index
                    .store(index + batch.len() as u64, Ordering::Release);
                if batch
                    .iter()
                    .any(|e| matches!(e.kind, EntryKind::Emit { .. }))
                {
                    (self.on_emit)();
                }
                true
            }
            Err(e) => {
                sh.failed.store(true, Ordering::Release);
                self.error = Some(e);
                false
            }
        }
    }
}

/// The bytes of an emitted item (what the queue holds in memory).
fn item_len(entry: &Entry) -> usize {
    match &entry.kind {
        EntryKind::Emit { item } => item.len(),
        _ => 0,
    }
}

/// Someone waiting on a write.
enum Waiter {
    /// For the entry at this position of the batch.
    Entry(usize, oneshot::Sender<Result<Entry, StoreError>>),
    /// For everything before.
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// What an entry handed back leaves in the batch, which is cleared next.
const PLACEHOLDER: Entry = Entry {
    at_ms: 0,
    duration_us: 0,
    kind: EntryKind::Checkpoint,
};

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::store::{MemoryStore, now_ms};

    fn emit(i: u64) -> Entry {
        Entry {
            at_ms: now_ms(),
            duration_us: i,
            kind: EntryKind::Emit {
                item: i.to_le_bytes().to_vec(),
            },
        }
    }

    /// Pushed entries and recorded ones land in order, each once; a record
    /// hands its entry back once it and all before it are durable, and
    /// `on_emit` ran for the writes that carried items.
    #[tokio::test]
    async fn entries_land_in_order() {
        let store = Arc::new(MemoryStore::new());
        let (id, lease) = store.leased_execution("w").await;
        let woken = Arc::new(AtomicU64::new(0));
        let on_emit = {
            let woken = woken.clone();
            Arc::new(move || {
                woken.fetch_add(1, Ordering::Relaxed);
            })
        };
        let mut writer = JournalWriter::new(store.clone(), id.clone(), lease, 0, on_emit);
        // One timestamp for every entry, so an entry compares equal to the
        // one it was built like whatever the clock did in between.
        let at_ms = now_ms();
        let checkpoint = |i: u64| Entry {
            at_ms,
            duration_us: i,
            kind: EntryKind::Checkpoint,
        };
        // Nothing queued: written directly; then through the task.
        assert_eq!(writer.record(checkpoint(0)).await.unwrap(), checkpoint(0));
        for i in 1..=1000 {
            writer.push(emit(i)).await.unwrap();
        }
        let back = writer.record(checkpoint(1001)).await.unwrap();
        assert_eq!(back.duration_us, 1001);
        writer.flush().await.unwrap();
        assert_eq!(
            writer.record(checkpoint(1002)).await.unwrap().duration_us,
            1002
        );
        let snap = store.load(&id).await.unwrap();
        assert_eq!(snap.journal.len(), 1003);
        for (i, e) in snap.journal.iter().enumerate() {
            assert_eq!(e.duration_us, i as u64);
        }
        assert_eq!(store.items(&id, None, 0).await.unwrap().count, 1000);
        // Group commit: the 1000 emits went out in far fewer writes (a
        // writer that wrote each emit alone would make 1000).
        let writes = woken.load(Ordering::Relaxed);
        assert!(
            writes >= 1 && writes * 10 <= 1000,
            "{writes} store writes for 1000 emits: the writer did not batch them"
        );
        writer.flush().await.unwrap();
    }

    /// Items larger than a third of the queue's byte bound: a push waits
    /// for what is queued instead of holding more, and every item lands.
    #[tokio::test]
    async fn large_items_wait_for_room() {
        let store = Arc::new(MemoryStore::new());
        let (id, lease) = store.leased_execution("w").await;
        let mut writer = JournalWriter::new(store.clone(), id.clone(), lease, 0, Arc::new(|| {}));
        let big = QUEUE_BYTES / 3 + 1;
        for i in 0..7u8 {
            let entry = Entry {
                at_ms: now_ms(),
                duration_us: 0,
                kind: EntryKind::Emit { item: vec![i; big] },
            };
            writer.push(entry).await.unwrap();
            assert!(writer.shared.queued.load(Ordering::Acquire) <= QUEUE_BYTES);
        }
        writer.flush().await.unwrap();
        assert_eq!(writer.shared.queued.load(Ordering::Acquire), 0);
        let page = store.items(&id, None, 10).await.unwrap();
        assert_eq!(page.count, 7);
        for (offset, item) in page.items {
            assert_eq!(item, vec![offset as u8; big]);
        }
    }

    /// A write that fails stops the writer: the next flush returns its
    /// error, later ones say an earlier write failed, and nothing after
    /// the failure is written.
    #[tokio::test]
    async fn a_failed_write_stops_the_writer() {
        let store = Arc::new(MemoryStore::new());
        let (id, lease) = store.leased_execution("w").await;
        // Written at the wrong index: every write conflicts.
        let mut writer = JournalWriter::new(store.clone(), id.clone(), lease, 5, Arc::new(|| {}));
        writer.push(emit(0)).await.unwrap();
        assert!(matches!(
            writer.flush().await,
            Err(StoreError::Conflict {
                index: 5,
                len: 0,
                ..
            })
        ));
        assert!(writer.failed());
        assert!(matches!(
            writer.record(emit(1)).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(store.load(&id).await.unwrap().journal.is_empty());
    }
}
