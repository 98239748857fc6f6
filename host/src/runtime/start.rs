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
