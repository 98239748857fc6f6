//! Tools: the capabilities a host offers workflows, addressed by
//! `(category, name)`.
//!
//! A tool runs at least once per journal entry and its result is recorded
//! exactly once (invariant 5 in ARCHITECTURE.md): if a host dies between running a tool
//! and appending its result, the next invocation runs it again. Every call
//! carries an [`IdempotencyKey`] so a tool can make such retries safe.
//!
//! Tool errors are values the workflow sees ([`ToolError`]), not traps.

pub mod attempts;
pub mod builtin;
pub mod http;
pub mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::ids::ExecutionId;
use crate::journal::ToolFailure;

/// A configured tool that cannot be built (a bad URL, an unresolved
/// secret, an HTTP client that cannot start); the message says which and
/// why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolConfigError(pub String);

/// Identifies one tool call across retries: the execution and the journal
/// index the result will be recorded at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The execution.
    pub execution: ExecutionId,
    /// The journal index.
    pub index: u64,
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.execution, self.index)
    }
}

/// One call to a tool.
#[derive(Clone, Debug)]
pub struct ToolCall {
    /// Category the workflow addressed.
    pub category: String,
    /// Name the workflow addressed.
    pub name: String,
    /// The input payload, as the guest encoded it.
    pub input: Vec<u8>,
    /// Stable across retries of this call.
    pub idempotency_key: IdempotencyKey,
    /// Where the tool reports an attempt that failed and will be retried
    /// (see [`attempts`]): the execution's status shows it.
    pub attempts: attempts::Attempts,
    /// The W3C `traceparent` of the step making the call, when the
    /// execution is traced: a tool that calls out passes it on (webhooks
    /// send it as the `traceparent` header).
    pub traceparent: Option<String>,
}

/// A tool error: returned to the workflow as a value.
pub type ToolError = ToolFailure;

impl ToolFailure {
    /// A tool error with a code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }
}

/// A tool. Implementations must not block the calling thread: do I/O with
/// async APIs, and move CPU-heavy or blocking work to
/// `tokio::task::spawn_blocking`.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// Runs the tool.
    async fn call(&self, call: ToolCall) -> Result<Vec<u8>, ToolError>;
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, ToolError>> + Send>>;

/// A tool made from an async closure.
pub struct FnTool<F>(F);

#[async_trait]
impl<F> Tool for FnTool<F>
where
    F: Fn(ToolCall) -> BoxFuture + Send + Sync + 'static,
{
    async fn call(&self, call: ToolCall) -> Result<Vec<u8>, ToolError> {
        (self.0)(call).await
    }
}

/// The tools a host offers, by `(category, name)`.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: HashMap<(String, String), Arc<dyn Tool>>,
    /// Tools that serve every name of a category (e.g. a webhook).
    categories: HashMap<String, Arc<dyn Tool>>,
}

impl ToolRegistry {
    /// No tools.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `builtin` and `demo` categories (see [`builtin`]).
    pub fn with_builtins() -> Self {
        let mut r = Self::new();
        builtin::register(&mut r);
        r
    }

    /// Adds (or replaces) a tool.
    pub fn register(
        &mut self,
        category: impl Into<String>,
        name: impl Into<String>,
        tool: impl Tool,
    ) -> &mut Self {
        self.tools
            .insert((category.into(), name.into()), Arc::new(tool));
        self
    }

    /// Adds (or replaces) a tool made from an async closure.
    pub fn register_fn<F, Fut>(
        &mut self,
        category: impl Into<String>,
        name: impl Into<String>,
        f: F,
    ) -> &mut Self
    where
        F: Fn(ToolCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, ToolError>> + Send + 'static,
    {
        self.register(
            category,
            name,
            FnTool(move |call| -> BoxFuture { Box::pin(f(call)) }),
        )
    }

    /// Adds (or replaces) a tool that serves every name of `category` for
    /// which no tool of its own is registered; it sees the name in
    /// [`ToolCall::name`].
    pub fn register_category(&mut self, category: impl Into<String>, tool: impl Tool) -> &mut Self {
        self.categories.insert(category.into(), Arc::new(tool));
        self
    }

    /// The tool at `(category, name)`, or the category's tool.
    pub fn get(&self, category: &str, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools
            .get(&(category.to_string(), name.to_string()))
            .or_else(|| self.categories.get(category))
            .cloned()
    }

    /// Every registered address, sorted; a category tool is `(category, "*")`.
    pub fn addresses(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.tools.keys().cloned().collect();
        v.extend(self.categories.keys().map(|c| (c.clone(), "*".to_string())));
        v.sort();
        v
    }
}
