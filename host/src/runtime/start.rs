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
        let (id, runnable) = self.inner.create(workflow, input, options).await?;
        if runnable {
            self.inner.wake(&id).await?;
        }
        Ok(id)
    }
}
