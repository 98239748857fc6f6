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
//! A failed write stops the writer: the next flush returns the error, and
//! the invocation ends on it as on any store error (the execution is
//! replayed from what is durable).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
/// to the store's pace and the queue's memory is bounded.
const QUEUE: usize = 512;

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
    tx: mpsc::Sender<Op>,
    failed: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

impl JournalWriter {
    /// Starts the writer of execution `id`, whose journal has `next_index`
    /// entries. `on_emit` runs after each write that made items durable.
    pub(crate) fn spawn(
        store: Arc<dyn Store>,
        id: ExecutionId,
        lease: Lease,
        next_index: u64,
        on_emit: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let failed = Arc::new(AtomicBool::new(false));
        let task = Task {
            store,
            id,
            lease,
            index: next_index,
            on_emit,
            failed: failed.clone(),
            error: None,
        };
        let task = tokio::spawn(task.run(rx)).abort_handle();
        Self { tx, failed, task }
    }

    /// Queues an entry; returns at once unless the queue is full.
    pub(crate) async fn push(&self, entry: Entry) {
        // The task only ends when this writer is dropped; a send that
        // fails anyway is reported by the next flush.
        let _ = self.tx.send(Op::Append(entry)).await;
    }

    /// Writes `entry` after every entry queued before it and returns it
    /// once all of them are durable; or the error that stopped the writer.
    pub(crate) async fn record(&self, entry: Entry) -> Result<Entry, StoreError> {
        let (done, wait) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the journal writer stopped".to_string());
        self.tx
            .send(Op::Record(entry, done))
            .await
            .map_err(|_| stopped())?;
        wait.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Returns once every entry queued so far is durable, or with the
    /// error that stopped the writer.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the journal writer stopped".to_string());
        self.tx.send(Op::Flush(done)).await.map_err(|_| stopped())?;
        wait.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Whether a write has failed (the next flush says how).
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Task {
    store: Arc<dyn Store>,
    id: ExecutionId,
    lease: Lease,
    /// Index of the next entry to write.
    index: u64,
    on_emit: Arc<dyn Fn() + Send + Sync>,
    failed: Arc<AtomicBool>,
    /// Why the writer stopped, until a flush takes it.
    error: Option<StoreError>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch: Vec<Entry> = Vec::new();
        let mut waiting: Vec<Waiter> = Vec::new();
        while let Some(op) = rx.recv().await {
            let mut bytes = 0;
            let mut next = Some(op);
            // Take what has queued up, to a limit: one write for all of it.
            while let Some(op) = next.take() {
                match op {
                    Op::Append(entry) => {
                        if let EntryKind::Emit { item } = &entry.kind {
                            bytes += item.len();
                        }
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
            for waiter in waiting.drain(..) {
                let outcome = match written {
                    true => Ok(()),
                    false => Err(self.error.take().unwrap_or_else(|| {
                        StoreError::Unavailable("an earlier journal write failed".to_string())
                    })),
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
        if self.failed.load(Ordering::Acquire) {
            return false;
        }
        if batch.is_empty() {
            return true;
        }
        let result = self
            .store
            .append_many(&self.id, &self.lease, self.index, batch)
            .await;
        match result {
            Ok(()) => {
                self.index += batch.len() as u64;
                if batch
                    .iter()
                    .any(|e| matches!(e.kind, EntryKind::Emit { .. }))
                {
                    (self.on_emit)();
                }
                true
            }
            Err(e) => {
                self.failed.store(true, Ordering::Release);
                self.error = Some(e);
                false
            }
        }
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
