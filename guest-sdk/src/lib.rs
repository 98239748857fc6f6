//! Write durable Reprise workflows in Rust.
//!
//! A workflow is one function marked `#[workflow]`. It takes a [`Context`]
//! and a typed input and returns a typed result; inputs, outputs, tool
//! inputs and tool results travel as MessagePack, so any `serde` type works.
//!
//! ```no_run
//! use reprise_sdk::{CallError, Context, Tool, workflow};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Input { user_id: u64 }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Query { id: u64 }
//!
//! #[derive(Serialize, Deserialize)]
//! struct User { id: u64, name: String }
//!
//! /// A tool of the host, declared once with its types (see [`Tool`]).
//! const USER: Tool<Query, User> = Tool::new("demo", "user");
//!
//! #[workflow]
//! fn greet(ctx: &Context, input: Input) -> Result<String, CallError> {
//!     let user = ctx.call_tool(USER, &Query { id: input.user_id })?;
//!     Ok(format!("Hello, {}!", user.name))
//! }
//! # fn main() {}
//! ```
//!
//! [`Context::call`] takes a tool's category and name as strings instead.
//! [`testing`] runs a workflow under `cargo test` with scripted tools and
//! checks that it replays; `reprise new` writes a crate with both.
//!
//! # What the host guarantees
//!
//! Every call on [`Context`] that returns a value is journaled: the first
//! time the execution reaches it the host does the work and records the
//! result before returning it; if the execution is later resumed in a fresh
//! instance (after a timer, a signal, or the end of an invocation budget),
//! the host replays the recorded results and your function runs again to the
//! same point with the same local variables. So a workflow must be
//! deterministic given the values the context returns: read time and
//! randomness through the context or through `std` (the host makes both
//! replay identically), and never branch on anything else from outside.
//!
//! A replayed execution that makes a different call than the one recorded
//! fails with a nondeterminism error naming both calls.
//!
//! What else to know:
//! - **A tool runs at least once, and its result is recorded once.** If
//!   the host stops between running a tool and recording its result, the
//!   call runs again on resume, with the same idempotency key
//!   (`<execution id>:<journal index>`), which a tool can use to apply its
//!   effect once.
//! - **A tool the host does not offer fails the execution** (kind
//!   `missing-tool`): the component needs a capability the host lacks, which
//!   no retry in the workflow would fix.
//! - **A guest that runs too long without calling the host is stopped**
//!   (10 s by default, the host's `time_without_progress`): an infinite loop,
//!   or a blocking WASI call such as `std::thread::sleep`. Use
//!   [`Context::sleep`] to wait. Logging does not count as calling the host.
//! - **[`Context::checkpoint`]** records a save point: a place where the
//!   host may end a long invocation (its budget spent, or the host draining)
//!   and continue in a fresh instance, in a loop that makes no other call.
//!
//! Since 0.2.0 of the host interface a workflow can also start work without
//! waiting for it and await several things at once: see [`concurrent`] for
//! fan-out, deadlines and retries.
#![deny(missing_docs)]

pub mod concurrent;
mod error;
mod sys;
#[cfg(not(target_family = "wasm"))]
pub mod testing;
mod tool;

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

pub use concurrent::{
    CHILD_WORKFLOW_ERROR, Call, Child, ChildError, Pending, Race, RetryPolicy, Signal, Timer,
};
pub use error::{IntoWorkflowError, UNCODED, WorkflowError};
pub use tool::{CallError, Tool};

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Marks the function a component exports as its workflow.
///
/// The function takes `(&Context, Input)` and returns `Result<Output, E>`
/// where `Input: DeserializeOwned` and `Output: Serialize`. An `Err` fails
/// the execution: with its code, message and details if `E` is
/// [`WorkflowError`], or with the code [`UNCODED`] (`error`) and `E`'s text
/// if `E` is any other `Display` type (see [`IntoWorkflowError`]). An input
/// that does not decode fails it with the code `invalid-input`. One per
/// component.
///
/// ```no_run
/// use reprise_sdk::{Context, WorkflowError, workflow};
///
/// #[workflow]
/// fn double(_ctx: &Context, n: u64) -> Result<u64, WorkflowError> {
///     n.checked_mul(2)
///         .ok_or_else(|| WorkflowError::new("overflow", format!("{n} is too large")))
/// }
/// # fn main() {}
/// ```
pub use reprise_sdk_macros::workflow;

#[doc(hidden)]
pub mod __private {
    //! Used by the `#[workflow]` expansion; not a public API.

    /// The generated bindings (the SDK's one `wit_bindgen::generate!`).
    pub mod bindings {
        wit_bindgen::generate!({
            world: "workflow",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "export_workflow",
            default_bindings_module: "::reprise_sdk::__private::bindings",
        });
    }

    pub use bindings::Guest;
    pub use bindings::export_workflow;

    use crate::{Context, decode, encode};
    use crate::{IntoWorkflowError, WorkflowError};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// The error `run` returns, as the world types it.
    pub use bindings::reprise::workflow::types::WorkflowError as WireError;

    /// The code of the error a workflow fails with when its input does not
    /// decode into the input type.
    pub const INVALID_INPUT: &str = "invalid-input";

    /// Decodes the input, runs the workflow, encodes the result.
    pub fn run<In, Out, E>(
        input: &[u8],
        workflow: fn(&Context, In) -> Result<Out, E>,
    ) -> Result<Vec<u8>, WireError>
    where
        In: DeserializeOwned,
        Out: Serialize,
        E: IntoWorkflowError,
    {
        run_with(Context::imports(), input, workflow).map_err(|e| WireError {
            code: e.code,
            message: e.message,
            details: e.details,
        })
    }

    /// The error of an input that does not decode.
    pub(crate) fn invalid_input(e: crate::DecodeError) -> WorkflowError {
        WorkflowError::new(INVALID_INPUT, format!("invalid workflow input: {e}"))
    }

    /// Runs `workflow` with `ctx` as a component does: a bad input is the
    /// workflow's error (code [`INVALID_INPUT`]), not a trap.
    pub(crate) fn run_with<In, Out, E>(
        ctx: Context,
        input: &[u8],
        workflow: fn(&Context, In) -> Result<Out, E>,
    ) -> Result<Vec<u8>, WorkflowError>
    where
        In: DeserializeOwned,
        Out: Serialize,
        E: IntoWorkflowError,
    {
        let input: In = decode(input).map_err(invalid_input)?;
        match workflow(&ctx, input) {
            Ok(out) => Ok(encode(&out)),
            Err(e) => Err(e.into_workflow_error()),
        }
    }
}

use __private::bindings::reprise::workflow::types;

/// Severity of a log line.
pub use types::Level;

/// Encodes a value as the SDK puts it on the wire (MessagePack, with field
/// names so any MessagePack or JSON-minded reader can follow it).
///
/// # Panics
///
/// If `value`'s `Serialize` implementation fails (a custom one returning
/// an error, or a map whose keys MessagePack cannot hold): a programming
/// error in the workflow, which traps the guest and fails the execution
/// with the message.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Room for a typical small input up front: a vector grown from empty
    // reallocates three times before it holds 32 bytes.
    let mut bytes = Vec::with_capacity(ENCODE_CAPACITY);
    // Serializing to a Vec only fails for types serde cannot represent in
    // MessagePack (e.g. maps with non-string-like keys are still fine);
    // such a type is a programming error, reported loudly.
    rmp_serde::encode::write_named(&mut bytes, value)
        .expect("value cannot be encoded as MessagePack");
    bytes
}

/// The bytes [`encode`] allocates before it writes anything.
const ENCODE_CAPACITY: usize = 64;

/// Calls `f` with `value` encoded as [`encode`] does, in a buffer the
/// calls share: a call's input is only lent to the host, so a workflow's
/// steps need not each allocate and free one (a replayed call is a few
/// hundred nanoseconds, and the guest's allocator a visible part of it).
pub(crate) fn with_encoded<T: Serialize + ?Sized, R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> R {
    ENCODE_BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut bytes) => {
            bytes.clear();
            rmp_serde::encode::write_named(&mut *bytes, value)
                .expect("value cannot be encoded as MessagePack");
            let out = f(&bytes);
            // A large input is not kept for the steps after it.
            if bytes.capacity() > ENCODE_BUFFER_KEPT {
                *bytes = Vec::new();
            }
            out
        }
        // Only for a value encoded while the buffer is lent: by a
        // `Serialize` or a host call that itself makes a call.
        Err(_) => f(&encode(value)),
    })
}

thread_local! {
    /// [`with_encoded`]'s buffer.
    static ENCODE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The most [`with_encoded`]'s buffer keeps between calls.
const ENCODE_BUFFER_KEPT: usize = 64 << 10;

/// Decodes a value encoded as MessagePack.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))
}

/// A payload that did not decode into the expected type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode payload: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// An error a tool returned. It is a value: branch on [`ToolError::code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolError {
    /// Stable machine-readable code, e.g. `not-found`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Optional structured details (MessagePack).
    pub details: Option<Vec<u8>>,
}

/// The code of a [`ToolError`] made by the SDK when the result of
/// [`Context::call`] does not decode into the type the workflow asked for.
/// A tool could send this code too; typed calls ([`Context::call_tool`])
/// tell the two apart with [`CallError::Decode`].
pub const DECODE_ERROR: &str = "decode";

impl ToolError {
    /// Whether the error has this code.
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// Decodes the details, if any.
    pub fn details<T: DeserializeOwned>(&self) -> Option<Result<T, DecodeError>> {
        self.details.as_deref().map(decode)
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tool error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for ToolError {}

impl From<types::ToolError> for ToolError {
    fn from(e: types::ToolError) -> Self {
        Self {
            code: e.code,
            message: e.message,
            details: e.details,
        }
    }
}

/// Decodes a tool's raw result into `Out`; an undecodable result becomes a
/// [`ToolError`] with code [`DECODE_ERROR`].
fn decode_result<Out: DeserializeOwned>(raw: Result<Vec<u8>, ToolError>) -> Result<Out, ToolError> {
    let bytes = raw?;
    decode(&bytes).map_err(|e| ToolError {
        code: DECODE_ERROR.into(),
        message: e.to_string(),
        details: None,
    })
}

/// The workflow's handle on the host. Every method that returns a value is
/// journaled (see the crate docs).
pub struct Context {
    /// `None` in a component (the imports); the scripted host of
    /// [`testing`] under `cargo test`.
    scripted: Option<std::rc::Rc<dyn sys::Host>>,
}

impl Context {
    fn imports() -> Self {
        Self { scripted: None }
    }

    fn host(&self) -> &dyn sys::Host {
        match &self.scripted {
            Some(host) => &**host,
            None => &sys::Imports,
        }
    }

    /// Calls the tool `name` in `category` with `input` and decodes its
    /// result. Tool errors come back as `Err` values to branch on.
    pub fn call<Out: DeserializeOwned>(
        &self,
        category: &str,
        name: &str,
        input: &(impl Serialize + ?Sized),
    ) -> Result<Out, ToolError> {
        decode_result(with_encoded(input, |input| {
            self.call_raw(category, name, input)
        }))
    }

    /// Calls a tool with raw payload bytes.
    pub fn call_raw(&self, category: &str, name: &str, input: &[u8]) -> Result<Vec<u8>, ToolError> {
        self.host()
            .call_tool(category, name, input)
            .map_err(ToolError::from)
    }

    /// A durable timer: returns once `duration` has passed. A long wait
    /// suspends the execution without holding any host memory.
    pub fn sleep(&self, duration: Duration) {
        self.host()
            .sleep(duration.as_millis().min(u128::from(u64::MAX)) as u64)
    }

    /// Waits for the next signal called `name` and decodes its payload. A
    /// signal sent before the workflow waits is buffered, never lost; a
    /// long wait suspends the execution without holding any host memory.
    pub fn wait_for_signal<T: DeserializeOwned>(&self, name: &str) -> Result<T, DecodeError> {
        decode(&self.host().await_signal(name))
    }

    /// The old name of [`Context::wait_for_signal`].
    #[deprecated(
        since = "0.2.0",
        note = "renamed `wait_for_signal`: it waits for a signal, it does not send one"
    )]
    pub fn signal<T: DeserializeOwned>(&self, name: &str) -> Result<T, DecodeError> {
        self.wait_for_signal(name)
    }

    /// Appends an item to the execution's output stream.
    pub fn emit(&self, item: &(impl Serialize + ?Sized)) {
        with_encoded(item, |item| self.host().emit(item))
    }

    /// An explicit save point: the host may end the invocation here (its
    /// budget spent) and continue in a fresh instance.
    pub fn checkpoint(&self) {
        self.host().checkpoint()
    }

    /// The current time, journaled.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.host().now())
    }

    /// A random number, journaled.
    pub fn random(&self) -> u64 {
        self.host().random()
    }

    /// Writes a log line (not journaled; silent during replay).
    pub fn log(&self, level: Level, message: &str) {
        self.host().log(level, message)
    }

    /// Writes an info log line.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }

    /// A value that, while it is encoded, encodes another through the
    /// shared buffer (as a `Serialize` that makes a call would).
    struct Nested(Point);

    impl Serialize for Nested {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            with_encoded(&self.0, <[u8]>::to_vec).serialize(s)
        }
    }

    #[test]
    fn the_shared_buffer_encodes_as_encode_does() {
        let point = Point { x: 1, y: -2 };
        assert_eq!(with_encoded(&point, <[u8]>::to_vec), encode(&point));
        // Encoded while the buffer is lent: through a buffer of its own.
        let nested = Nested(Point { x: 3, y: 4 });
        assert_eq!(with_encoded(&nested, <[u8]>::to_vec), encode(&nested));
        // A large value is not kept for the calls after it; a small one is.
        let large = vec![7u64; ENCODE_BUFFER_KEPT];
        assert_eq!(with_encoded(&large, <[u8]>::to_vec), encode(&large));
        let kept = || ENCODE_BUFFER.with(|b| b.borrow().capacity());
        assert_eq!(kept(), 0);
        with_encoded(&point, |_| ());
        assert!(kept() > 0);
    }

    #[test]
    fn payloads_round_trip_with_field_names() {
        let bytes = encode(&Point { x: 1, y: -2 });
        assert_eq!(decode::<Point>(&bytes).unwrap(), Point { x: 1, y: -2 });
        let generic: std::collections::BTreeMap<String, i32> = decode(&bytes).unwrap();
        assert_eq!(generic["y"], -2);
    }

    #[test]
    fn undecodable_tool_results_become_decode_errors() {
        let err = decode_result::<Point>(Ok(encode("not a point"))).unwrap_err();
        assert!(err.is(DECODE_ERROR), "{err}");
        let tool_err = ToolError {
            code: "not-found".into(),
            message: "nope".into(),
            details: Some(encode(&Point { x: 3, y: 4 })),
        };
        assert_eq!(
            decode_result::<Point>(Err(tool_err.clone())).unwrap_err(),
            tool_err
        );
        assert_eq!(tool_err.details::<Point>(), Some(Ok(Point { x: 3, y: 4 })));
    }

    fn add_one(_ctx: &Context, n: u64) -> Result<u64, String> {
        n.checked_add(1).ok_or_else(|| "overflow".to_string())
    }

    fn coded(_ctx: &Context, n: u64) -> Result<u64, WorkflowError> {
        match n {
            0 => Err(WorkflowError::new("zero", "no zeros").with_details(&Point { x: 0, y: 1 })),
            1 => Err(ToolError::new("not-found", "no such user").into()),
            _ => Ok(n),
        }
    }

    fn run<E: IntoWorkflowError>(
        input: &[u8],
        workflow: fn(&Context, u64) -> Result<u64, E>,
    ) -> Result<Vec<u8>, WorkflowError> {
        __private::run_with(Context::imports(), input, workflow)
    }

    #[test]
    fn run_decodes_input_and_encodes_output() {
        let out = run(&encode(&41u64), add_one).unwrap();
        assert_eq!(decode::<u64>(&out).unwrap(), 42);
        let err = run(&encode(&u64::MAX), add_one).unwrap_err();
        assert_eq!(err, WorkflowError::new(UNCODED, "overflow"));
        let err = run(&encode("text"), add_one).unwrap_err();
        assert_eq!(err.code, __private::INVALID_INPUT);
        assert!(err.message.starts_with("invalid workflow input"), "{err:?}");
    }

    #[test]
    fn a_workflow_error_keeps_its_code_and_details() {
        let err = run(&encode(&0u64), coded).unwrap_err();
        assert!(err.is("zero"), "{err:?}");
        assert_eq!(err.message, "no zeros");
        assert_eq!(err.details::<Point>(), Some(Ok(Point { x: 0, y: 1 })));
        // `?` and `into` keep a tool's code.
        let err = run(&encode(&1u64), coded).unwrap_err();
        assert_eq!(err, WorkflowError::new("not-found", "no such user"));
        let call = CallError::Decode(decode::<u64>(&encode("x")).unwrap_err());
        assert_eq!(WorkflowError::from(call).code, DECODE_ERROR);
        // A child's error keeps its code; a trapped child's kind becomes one.
        let child: ChildError = WorkflowError::new("late", "too late").into();
        assert_eq!(
            WorkflowError::from(child),
            WorkflowError::new("late", "too late")
        );
        let trapped = ChildError::new("trap", "boom");
        assert_eq!(WorkflowError::from(trapped).code, "trap");
    }
}
