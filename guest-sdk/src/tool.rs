//! Typed tools: a tool declared once with its address and its input and
//! output types, so a call with the wrong input does not compile and the
//! name is written in one place.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Call, Context, DecodeError, RetryPolicy, ToolError, decode, with_encoded};

/// A tool of the host: its category and name, the type it takes and the
/// type it returns. Declare it once, as a constant, and call it with
/// [`Context::call_tool`] or start it with [`Context::start_tool`].
///
/// ```no_run
/// use reprise_sdk::{CallError, Context, Tool, workflow};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// pub struct UserQuery { pub id: u64 }
/// #[derive(Serialize, Deserialize)]
/// pub struct User { pub id: u64, pub name: String }
///
/// pub const USER: Tool<UserQuery, User> = Tool::new("demo", "user");
///
/// #[workflow]
/// fn greet(ctx: &Context, id: u64) -> Result<String, CallError> {
///     let user = ctx.call_tool(USER, &UserQuery { id })?;
///     Ok(format!("Hello, {}!", user.name))
/// }
/// # fn main() {}
/// ```
///
/// The input's type is checked where the tool is called:
///
/// ```compile_fail
/// # use reprise_sdk::{Context, Tool};
/// # #[derive(serde::Serialize)] struct UserQuery { id: u64 }
/// # #[derive(serde::Deserialize)] struct User { name: String }
/// const USER: Tool<UserQuery, User> = Tool::new("demo", "user");
/// fn wrong(ctx: &Context) {
///     let _ = ctx.call_tool(USER, &"not a query");
/// }
/// ```
pub struct Tool<In, Out> {
    category: &'static str,
    name: &'static str,
    _types: PhantomData<fn(&In) -> Out>,
}

impl<In, Out> Tool<In, Out> {
    /// The tool `name` of `category`, as the host's configuration names it
    /// (a webhook category in `reprise serve`'s config, or a built-in).
    pub const fn new(category: &'static str, name: &'static str) -> Self {
        Self {
            category,
            name,
            _types: PhantomData,
        }
    }

    /// Its category.
    pub const fn category(&self) -> &'static str {
        self.category
    }

    /// Its name within the category.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

// By hand: a derive would require `In: Clone` and `Out: Clone`.
impl<In, Out> Clone for Tool<In, Out> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<In, Out> Copy for Tool<In, Out> {}

impl<In, Out> fmt::Debug for Tool<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tool({}/{})", self.category, self.name)
    }
}

/// Why a typed call gave no value: the tool answered with an error, or its
/// answer did not decode into the declared output type (a mismatch between
/// the workflow's types and the tool, not something the tool said).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The tool's own error: branch on its code.
    Tool(ToolError),
    /// The tool succeeded, but its result is not the declared output type.
    Decode(DecodeError),
}

impl CallError {
    /// The tool's error, if it was one.
    pub fn tool_error(&self) -> Option<&ToolError> {
        match self {
            CallError::Tool(e) => Some(e),
            CallError::Decode(_) => None,
        }
    }

    /// Whether the tool answered with an error of this code (never true of
    /// a decode error, whatever the code).
    pub fn is(&self, code: &str) -> bool {
        self.tool_error().is_some_and(|e| e.is(code))
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Tool(e) => e.fmt(f),
            CallError::Decode(e) => write!(f, "tool result: {e}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Tool(e) => Some(e),
            CallError::Decode(e) => Some(e),
        }
    }
}

impl From<ToolError> for CallError {
    fn from(e: ToolError) -> Self {
        CallError::Tool(e)
    }
}

impl From<DecodeError> for CallError {
    fn from(e: DecodeError) -> Self {
        CallError::Decode(e)
    }
}

/// Decodes a typed call's raw result.
pub(crate) fn decode_typed<Out: DeserializeOwned>(
    raw: Result<Vec<u8>, ToolError>,
) -> Result<Out, CallError> {
    Ok(decode(&raw?)?)
}

impl Context {
    /// Calls a typed tool and decodes its result.
    pub fn call_tool<In: Serialize, Out: DeserializeOwned>(
        &self,
        tool: Tool<In, Out>,
        input: &In,
    ) -> Result<Out, CallError> {
        decode_typed(with_encoded(input, |input| {
            self.call_raw(tool.category, tool.name, input)
        }))
    }

    /// Calls a typed tool, retried by `policy` when it fails.
    pub fn call_tool_with<In: Serialize, Out: DeserializeOwned>(
        &self,
        tool: Tool<In, Out>,
        input: &In,
        policy: &RetryPolicy,
    ) -> Result<Out, CallError> {
        let call = self.start_tool_with(tool, input, policy);
        self.join(call)
    }

    /// Starts a typed tool call and returns at once (see
    /// [`Context::start`]).
    pub fn start_tool<In: Serialize, Out: DeserializeOwned>(
        &self,
        tool: Tool<In, Out>,
        input: &In,
    ) -> Call<Out, CallError> {
        Call::new(with_encoded(input, |input| {
            self.host()
                .start_tool(tool.category, tool.name, input, None)
        }))
    }

    /// [`Context::start_tool`], retried by `policy` when it fails.
    pub fn start_tool_with<In: Serialize, Out: DeserializeOwned>(
        &self,
        tool: Tool<In, Out>,
        input: &In,
        policy: &RetryPolicy,
    ) -> Call<Out, CallError> {
        Call::new(with_encoded(input, |input| {
            self.host()
                .start_tool(tool.category, tool.name, input, Some(&policy.to_wit()))
        }))
    }
}
