//! The limits an invocation holds its guest to, and how the trap that
//! ends a guest (the host's own, a limit's or the guest's) becomes the
//! reason its invocation ended.

use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::{End, Stopped};
use crate::execution::{Failure, FailureKind, Outcome};

/// The trap raised when the guest exceeds a limit.
#[derive(Debug)]
pub(super) enum LimitHit {
    /// Its memory or a table grew past the limit; the message says which.
    Memory(String),
    /// It ran this long without calling the host.
    Time(Duration),
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Memory(message) => f.write_str(message),
            LimitHit::Time(limit) => write!(
                f,
                "the guest ran for more than {limit:?} without calling the host (an infinite \
                 loop, or a blocking WASI call such as a sleep?)"
            ),
        }
    }
}

impl std::error::Error for LimitHit {}

/// Enforces [`Limits`](crate::config::Limits): growing past one traps with [`LimitHit::Memory`].
pub(super) struct Limiter {
    pub(super) memory_bytes: usize,
    pub(super) table_elements: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let msg = format!(
                "memory limit exceeded: the guest tried to grow its memory from {current} to \
                 {desired} bytes; the limit is {} bytes",
                self.memory_bytes
            );
            return Err(wasmtime::Error::new(LimitHit::Memory(msg)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let msg = format!(
                "table limit exceeded: the guest tried to grow a table from {current} to \
                 {desired} elements; the limit is {}",
                self.table_elements
            );
            return Err(wasmtime::Error::new(LimitHit::Memory(msg)));
        }
        Ok(true)
    }
}

/// Turns a trap into the reason the invocation ended: the host's own
/// [`Stopped`](super::Stopped), a [`LimitHit`], or the guest's trap (with its stderr and
/// backtrace).
pub(super) fn classify_error(
    error: wasmtime::Error,
    stderr: &MemoryOutputPipe,
    doing: &str,
) -> End {
    let error = match error.downcast::<Stopped>() {
        Ok(Stopped(end)) => return end,
        Err(error) => error,
    };
    let failure = match error.downcast_ref::<LimitHit>() {
        Some(hit @ LimitHit::Memory(_)) => Failure::new(FailureKind::MemoryLimit, hit.to_string()),
        Some(hit @ LimitHit::Time(_)) => Failure::new(FailureKind::TimeLimit, hit.to_string()),
        None => {
            let trap = match error.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => trap.to_string(),
                None => error.root_cause().to_string(),
            };
            let mut message = format!("the guest trapped while {doing}: {trap}");
            let captured = stderr.contents();
            if !captured.is_empty() {
                message.push_str("\nguest stderr:\n");
                message.push_str(String::from_utf8_lossy(&captured).trim_end());
            }
            if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
                message.push_str(&format!("\n{backtrace}"));
            }
            Failure::new(FailureKind::Trap, message)
        }
    };
    End::Finished(Outcome::Failed(failure))
}
