//! How a workflow fails: [`WorkflowError`], a code to branch on, a message
//! and optional details.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{CallError, ChildError, DecodeError, ToolError, decode, encode};

/// The code of a workflow error that gave none: what a workflow returning
/// any other error type (`String`, a tool's error, your own) fails with.
pub const UNCODED: &str = "error";

/// An error a workflow fails with on purpose: a stable `code` that callers
/// (a client, a parent workflow) branch on, a `message` for humans, and
/// optional structured `details`. The host records all three; the API shows
/// them under `error`, and a parent gets them in its [`ChildError`].
///
/// ```no_run
/// use reprise_sdk::{CallError, Context, Tool, WorkflowError, workflow};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Order { sku: String, quantity: u32 }
/// #[derive(Serialize, Deserialize)]
/// struct Stock { left: u32 }
/// #[derive(Serialize)]
/// struct Shortage<'a> { sku: &'a str, wanted: u32, left: u32 }
///
/// const STOCK: Tool<String, Stock> = Tool::new("inventory", "stock");
///
/// #[workflow]
/// fn reserve(ctx: &Context, order: Order) -> Result<u32, WorkflowError> {
///     // `?` keeps a tool's code (`not-found`...) as the workflow's.
///     let stock = ctx.call_tool(STOCK, &order.sku)?;
///     if stock.left < order.quantity {
///         return Err(WorkflowError::new("out-of-stock", "not enough left")
///             .with_details(&Shortage { sku: &order.sku, wanted: order.quantity, left: stock.left }));
///     }
///     Ok(stock.left - order.quantity)
/// }
/// # fn main() {}
/// ```
///
/// A workflow may return any error type that implements `Display` instead:
/// it fails with the code [`UNCODED`] and the error's text as message.
/// `WorkflowError` does not implement `Display` itself, so that both are
/// accepted (like `anyhow::Error` and `std::error::Error`); format it with
/// `{:?}` or read its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowError {
    /// Stable machine-readable code, e.g. `out-of-stock`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Optional structured details (MessagePack).
    pub details: Option<Vec<u8>>,
}

impl WorkflowError {
    /// An error with this code and message, and no details.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }

    /// Attaches `details` (any `serde` value; shown as JSON by the API).
    pub fn with_details<T: Serialize + ?Sized>(mut self, details: &T) -> Self {
        self.details = Some(encode(details));
        self
    }

    /// Whether the error has this code.
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// Decodes the details, if any.
    pub fn details<T: DeserializeOwned>(&self) -> Option<Result<T, DecodeError>> {
        self.details.as_deref().map(decode)
    }
}

/// A tool's error, as the workflow's: its code, message and details.
impl From<ToolError> for WorkflowError {
    fn from(e: ToolError) -> Self {
        Self {
            code: e.code,
            message: e.message,
            details: e.details,
        }
    }
}

/// A typed call's error: the tool's own, or the code
/// [`DECODE_ERROR`](crate::DECODE_ERROR) when its result did not decode.
impl From<CallError> for WorkflowError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Tool(e) => e.into(),
            CallError::Decode(e) => e.into(),
        }
    }
}

/// A payload that did not decode: the code [`DECODE_ERROR`](crate::DECODE_ERROR).
impl From<DecodeError> for WorkflowError {
    fn from(e: DecodeError) -> Self {
        Self::new(crate::DECODE_ERROR, e.to_string())
    }
}

/// A child's failure: its code and details if it failed with a workflow
/// error, otherwise how it ended (`cancelled`, `trap`...) as the code.
impl From<ChildError> for WorkflowError {
    fn from(e: ChildError) -> Self {
        Self {
            code: e.code.unwrap_or(e.kind),
            message: e.message,
            details: e.details,
        }
    }
}

/// A message: the code [`UNCODED`].
impl From<String> for WorkflowError {
    fn from(message: String) -> Self {
        Self::new(UNCODED, message)
    }
}

/// A message: the code [`UNCODED`].
impl From<&str> for WorkflowError {
    fn from(message: &str) -> Self {
        Self::new(UNCODED, message)
    }
}

/// What a workflow's `Err` may be: a [`WorkflowError`], or anything that
/// implements `Display` (the code [`UNCODED`], its text the message).
/// Implemented for you; the `#[workflow]` function's error type must have
/// it.
pub trait IntoWorkflowError {
    /// The error as the host records it.
    fn into_workflow_error(self) -> WorkflowError;
}

impl IntoWorkflowError for WorkflowError {
    fn into_workflow_error(self) -> WorkflowError {
        self
    }
}

impl<E: std::fmt::Display> IntoWorkflowError for E {
    fn into_workflow_error(self) -> WorkflowError {
        WorkflowError::new(UNCODED, self.to_string())
    }
}
