//! Starting an execution with everything a start can carry.

use super::*;
use crate::telemetry::TraceParent;

/// How to start an execution, besides its workflow and input.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Its id: starting twice with one starts once (a generated id when
    /// absent).
    pub id: Option<ExecutionId>,
    /// Paced by its consumers (see [`crate::stream`]).
    pub stream: Option<StreamPolicy>,
    /// The trace the start belongs to (its `traceparent`): the
    /// execution's spans continue it (see [`crate::telemetry`]).
    pub trace: Option<TraceParent>,
}

impl Runtime {
    /// [`Runtime::start_with_options`] for a caller that then waits until
    /// the execution settles (a request's `?wait`): returns its id and
    /// the wait, whose waiter is registered before the execution exists.
    /// An execution this start creates (no id given) is running or ready,
    /// not settled, so the wait reads the store only once it changes: one
    /// read (a Redis round trip) fewer than [`Runtime::wait_settled`]
    /// after the start.
    pub async fn start_and_wait_settled(
        &self,
        workflow: &str,
        input: Vec<u8>,
        mut options: StartOptions,
    ) -> Result<
        (
            ExecutionId,
            impl Future<Output = Result<ExecutionRecord, RuntimeError>> + '_,
        ),
        RuntimeError,
    > {
        let fresh = options.id.is_none();
        let id = options.id.get_or_insert_with(ExecutionId::generate).clone();
        let waiting = self.inner.waiting(&id);
        let id = self.start_with_options(workflow, input, options).await?;
        let wait_id = id.clone();
        let settled = async move {
            self.wait_with(waiting, &wait_id, ExecutionRecord::is_settled, !fresh)
                .await
        };
        Ok((id, settled))
    }

    /// [`Runtime::start`] with [`StartOptions`].
    pub async fn start_with_options(
        &self,
        workflow: &str,
        input: Vec<u8>,
        options: StartOptions,
    ) -> Result<ExecutionId, RuntimeError> {
        // A start that will run here, with a slot free now, creates the
        // execution leased to this host: one store write fewer before its
        // first invocation. With a queue any host may run it, and without
        // a free slot it waits unleased, holding nothing (see `driver`).
        let inner = &self.inner;
        let slot = (inner.queue.is_none() && !inner.draining.load(Ordering::SeqCst))
            .then(|| inner.engine.try_slot())
            .flatten();
        let (id, runnable, taken) = inner.create(workflow, input, options, slot).await?;
        match taken {
            Some(taken) => inner.schedule_taken(id.clone(), taken),
            None if runnable => inner.wake(&id).await?,
            None => {}
        }
        Ok(id)
    }
}
