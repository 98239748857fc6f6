//! Reading an output stream in batches, with one batch fetched ahead.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use reprise_api::{ExecutionStatus, ItemsBatch, ItemsParams};

use crate::{Client, Error};

/// How [`Client::stream_with`] reads.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Items per request (1 to 1000).
    pub batch: usize,
    /// Start after this offset (from the first item when `None`).
    pub after: Option<u64>,
    /// How long one request waits for new items before asking again.
    pub wait: Duration,
    /// Consecutive failed requests (the host unreachable, or answering
    /// 5xx) before the stream gives up with the error. Each retry resumes
    /// after the last offset read.
    pub retries: u32,
    /// First delay between retries; it doubles up to 5 s.
    pub retry_delay: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            batch: 256,
            after: None,
            wait: Duration::from_secs(20),
            retries: 10,
            retry_delay: Duration::from_millis(100),
        }
    }
}

/// What the fetching task hands over.
enum Fetched {
    Items(Vec<(u64, serde_json::Value)>),
    /// The stream is over: `Ok` when the workflow completed.
    End(Result<(), Error>),
}

/// The items of an execution's output stream, decoded as `T`.
///
/// A task fetches batches and keeps one ready ahead of the one being
/// consumed; fetching the next batch tells the host the previous one was
/// read, so a slow consumer holds a paced producer back. The stream ends
/// after the last item, with `Err(Error::Failed)` if the workflow failed
/// or `Err(Error::Cancelled)` if it was cancelled. Dropping it closes the
/// consumer session.
pub struct ItemStream<T> {
    rx: mpsc::Receiver<Fetched>,
    ready: VecDeque<(u64, serde_json::Value)>,
    last: Option<u64>,
    done: bool,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    _items: PhantomData<fn() -> T>,
}

/// What the stream and its task share.
struct Shared {
    client: Client,
    id: String,
    session: Mutex<Option<String>>,
}

impl<T: DeserializeOwned> ItemStream<T> {
    pub(crate) fn open(client: Client, id: String, options: StreamOptions) -> Self {
        // One batch in the channel, one in the task's hands: the prefetch.
        let (tx, rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            client,
            id,
            session: Mutex::new(None),
        });
        let task = tokio::spawn(fetch(shared.clone(), options.clone(), tx));
        Self {
            rx,
            ready: VecDeque::new(),
            last: options.after,
            done: false,
            shared,
            task,
            _items: PhantomData,
        }
    }

    /// The offset of the last item returned, if any.
    pub fn last_offset(&self) -> Option<u64> {
        self.last
    }

    /// The consumer session reading, once the host has given one.
    pub fn session(&self) -> Option<String> {
        self.shared
            .session
            .lock()
            .expect("session poisoned")
            .clone()
    }
}

impl<T: DeserializeOwned> Stream for ItemStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some((offset, value)) = self.ready.pop_front() {
                self.last = Some(offset);
                return Poll::Ready(Some(
                    serde_json::from_value(value)
                        .map_err(|e| Error::Decode(format!("item {offset}: {e}"))),
                ));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Fetched::Items(items))) => self.ready.extend(items),
                Poll::Ready(Some(Fetched::End(end))) => {
                    self.done = true;
                    if let Err(e) = end {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(None) => {
                    self.done = true;
                }
            }
        }
    }
}

impl<T> Drop for ItemStream<T> {
    fn drop(&mut self) {
        self.task.abort();
        if self.done {
            return;
        }
        // Left early: close the session so the host knows.
        let session = self.shared.session.lock().expect("session poisoned").take();
        if let (Some(session), Ok(rt)) = (session, tokio::runtime::Handle::try_current()) {
            let shared = self.shared.clone();
            rt.spawn(async move {
                if let Err(e) = shared.client.close_session(&shared.id, &session).await {
                    tracing::debug!(execution = %shared.id, "cannot close the stream session: {e}");
                }
            });
        }
    }
}

/// Fetches batches into `tx` until the end, an error that retrying does
/// not cure, or the stream is dropped.
async fn fetch(shared: Arc<Shared>, options: StreamOptions, tx: mpsc::Sender<Fetched>) {
    let mut after = options.after;
    let mut failures = 0;
    let mut delay = options.retry_delay;
    loop {
        let params = ItemsParams {
            after,
            max: Some(options.batch),
            wait: Some(format!("{}ms", options.wait.as_millis())),
            session: shared.session.lock().expect("session poisoned").clone(),
            observe: false,
        };
        let req = shared
            .client
            .request(
                reqwest::Method::GET,
                &format!("/v1/executions/{}/items", shared.id),
            )
            .query(&params);
        let batch: ItemsBatch = match shared.client.send(req).await {
            Ok(b) => b,
            Err(e) if e.is_transient() && failures < options.retries => {
                failures += 1;
                tracing::debug!(execution = %shared.id, "reading the stream failed, retrying: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => {
                let _ = tx.send(Fetched::End(Err(e))).await;
                return;
            }
        };
        failures = 0;
        delay = options.retry_delay;
        if let Some(s) = batch.session {
            *shared.session.lock().expect("session poisoned") = Some(s);
        }
        after = batch.next_after.or(after);
        if !batch.items.is_empty() {
            let items = batch
                .items
                .into_iter()
                .map(|i| (i.offset, i.item))
                .collect();
            if tx.send(Fetched::Items(items)).await.is_err() {
                return;
            }
        }
        if let Some(end) = batch.end {
            let result = match (end.status, end.error) {
                (ExecutionStatus::Completed, _) => Ok(()),
                (ExecutionStatus::Cancelled, _) => Err(Error::Cancelled),
                (_, Some(e)) => Err(Error::Failed {
                    kind: e.kind,
                    message: e.message,
                    code: e.code,
                    details: e.details,
                }),
                (status, None) => Err(Error::Decode(format!("stream ended as {status}"))),
            };
            let _ = tx.send(Fetched::End(result)).await;
            return;
        }
    }
}
