//! What a [`Context`](crate::Context) calls: the host's imports in a
//! component, or the scripted host of [`testing`](crate::testing) under
//! `cargo test`. One trait, so every `Context` method is written once.

use crate::__private::bindings::reprise::workflow::{host, types};

/// The host interface, call for call (see `wit/workflow.wit`).
pub(crate) trait Host {
    fn call_tool(
        &self,
        category: &str,
        name: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, types::ToolError>;
    fn sleep(&self, duration_ms: u64);
    fn await_signal(&self, name: &str) -> Vec<u8>;
    fn emit(&self, item: &[u8]);
    fn checkpoint(&self);
    fn now(&self) -> u64;
    fn random(&self) -> u64;
    fn log(&self, level: types::Level, message: &str);
    fn start_tool(
        &self,
        category: &str,
        name: &str,
        input: &[u8],
        retry: Option<&types::RetryPolicy>,
    ) -> u64;
    fn start_timer(&self, duration_ms: u64) -> u64;
    fn start_signal(&self, name: &str) -> u64;
    fn start_child(&self, workflow: &str, input: &[u8]) -> u64;
    fn await_any(&self, handles: &[u64]) -> (u64, types::Completion);
    fn await_all(&self, handles: &[u64]) -> Vec<(u64, types::Completion)>;
    fn forget(&self, handle: u64);
}

/// The component's imports: what a deployed workflow calls.
pub(crate) struct Imports;

impl Host for Imports {
    fn call_tool(
        &self,
        category: &str,
        name: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, types::ToolError> {
        host::call_tool(category, name, input)
    }
    fn sleep(&self, duration_ms: u64) {
        host::sleep(duration_ms)
    }
    fn await_signal(&self, name: &str) -> Vec<u8> {
        host::await_signal(name)
    }
    fn emit(&self, item: &[u8]) {
        host::emit(item)
    }
    fn checkpoint(&self) {
        host::checkpoint()
    }
    fn now(&self) -> u64 {
        host::now()
    }
    fn random(&self) -> u64 {
        host::random()
    }
    fn log(&self, level: types::Level, message: &str) {
        host::log(level, message)
    }
    fn start_tool(
        &self,
        category: &str,
        name: &str,
        input: &[u8],
        retry: Option<&types::RetryPolicy>,
    ) -> u64 {
        host::start_tool(category, name, input, retry)
    }
    fn start_timer(&self, duration_ms: u64) -> u64 {
        host::start_timer(duration_ms)
    }
    fn start_signal(&self, name: &str) -> u64 {
        host::start_signal(name)
    }
    fn start_child(&self, workflow: &str, input: &[u8]) -> u64 {
        host::start_child(workflow, input)
    }
    fn await_any(&self, handles: &[u64]) -> (u64, types::Completion) {
        host::await_any(handles)
    }
    fn await_all(&self, handles: &[u64]) -> Vec<(u64, types::Completion)> {
        host::await_all(handles)
    }
    fn forget(&self, handle: u64) {
        host::forget(handle)
    }
}
