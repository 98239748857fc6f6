//! The imports of the frozen worlds (0.1.0, 0.2.0): each is the current
//! call of the same name, its types converted where they differ.

use wasmtime::component::{HasSelf, Linker};

use super::*;

/// The calls every world has had since 0.1.0, for the frozen world
/// `$world`: `call-tool`, `sleep`, `await-signal`, `emit`, `checkpoint`,
/// `now`, `random` and `log`, each the current call with its tool error
/// and log level converted.
macro_rules! calls_of_0_1 {
    ($world:ident) => {
        async fn call_tool(
            &mut self,
            category: String,
            name: String,
            input: Vec<u8>,
        ) -> wasmtime::Result<Result<Vec<u8>, bindings::$world::ToolError>> {
            let result = bindings::Host::call_tool(self, category, name, input).await?;
            Ok(result.map_err(|e| bindings::$world::ToolError {
                code: e.code,
                message: e.message,
                details: e.details,
            }))
        }

        async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
            bindings::Host::sleep(self, duration_ms).await
        }

        async fn await_signal(&mut self, name: String) -> wasmtime::Result<Vec<u8>> {
            bindings::Host::await_signal(self, name).await
        }

        async fn emit(&mut self, item: Vec<u8>) -> wasmtime::Result<()> {
            bindings::Host::emit(self, item).await
        }

        async fn checkpoint(&mut self) -> wasmtime::Result<()> {
            bindings::Host::checkpoint(self).await
        }

        async fn now(&mut self) -> wasmtime::Result<u64> {
            bindings::Host::now(self).await
        }

        async fn random(&mut self) -> wasmtime::Result<u64> {
            bindings::Host::random(self).await
        }

        async fn log(
            &mut self,
            level: bindings::$world::Level,
            message: String,
        ) -> wasmtime::Result<()> {
            use bindings::$world::Level as Old;
            let level = match level {
                Old::Trace => Level::Trace,
                Old::Debug => Level::Debug,
                Old::Info => Level::Info,
                Old::Warn => Level::Warn,
                Old::Error => Level::Error,
            };
            bindings::Host::log(self, level, message).await
        }
    };
}

/// 0.2.0 of the world: the current calls; only a child's error differs
/// (it has no code or details).
impl bindings::v0_2::TypesHost for InvocationState {}

fn tool_error_0_2(e: ToolError) -> bindings::v0_2::ToolError {
    bindings::v0_2::ToolError {
        code: e.code,
        message: e.message,
        details: e.details,
    }
}

fn completion_0_2(c: Completion) -> bindings::v0_2::Completion {
    use bindings::v0_2::Completion as Old;
    match c {
        Completion::Tool(result) => Old::Tool(result.map_err(tool_error_0_2)),
        Completion::Timer => Old::Timer,
        Completion::Signal(payload) => Old::Signal(payload),
        Completion::Child(result) => Old::Child(result.map_err(|e| bindings::v0_2::ChildError {
            kind: e.kind,
            message: e.message,
        })),
    }
}

impl bindings::v0_2::Host for InvocationState {
    calls_of_0_1!(v0_2);

    async fn start_tool(
        &mut self,
        category: String,
        name: String,
        input: Vec<u8>,
        retry: Option<bindings::v0_2::RetryPolicy>,
    ) -> wasmtime::Result<u64> {
        let retry = retry.map(|r| RetryPolicy {
            max_attempts: r.max_attempts,
            initial_backoff_ms: r.initial_backoff_ms,
            backoff_factor: r.backoff_factor,
            max_backoff_ms: r.max_backoff_ms,
            attempt_timeout_ms: r.attempt_timeout_ms,
            retry_on: r.retry_on,
        });
        bindings::Host::start_tool(self, category, name, input, retry).await
    }

    async fn start_timer(&mut self, duration_ms: u64) -> wasmtime::Result<u64> {
        bindings::Host::start_timer(self, duration_ms).await
    }

    async fn start_signal(&mut self, name: String) -> wasmtime::Result<u64> {
        bindings::Host::start_signal(self, name).await
    }

    async fn start_child(&mut self, workflow: String, input: Vec<u8>) -> wasmtime::Result<u64> {
        bindings::Host::start_child(self, workflow, input).await
    }

    async fn await_any(
        &mut self,
        handles: Vec<u64>,
    ) -> wasmtime::Result<(u64, bindings::v0_2::Completion)> {
        let (handle, completion) = bindings::Host::await_any(self, handles).await?;
        Ok((handle, completion_0_2(completion)))
    }

    async fn await_all(
        &mut self,
        handles: Vec<u64>,
    ) -> wasmtime::Result<Vec<(u64, bindings::v0_2::Completion)>> {
        let all = bindings::Host::await_all(self, handles).await?;
        Ok(all
            .into_iter()
            .map(|(handle, c)| (handle, completion_0_2(c)))
            .collect())
    }

    async fn forget(&mut self, handle: u64) -> wasmtime::Result<()> {
        bindings::Host::forget(self, handle).await
    }
}

/// 0.1.0 of the world: a subset of the current calls, with its own types.
impl bindings::v0_1::TypesHost for InvocationState {}

impl bindings::v0_1::Host for InvocationState {
    calls_of_0_1!(v0_1);
}

/// Adds the `reprise:workflow/host` imports of every version served to
/// `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    bindings::Workflow::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    bindings::v0_2::Workflow::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    bindings::v0_1::Workflow::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    super::fast::add_to_linker(linker)
}
