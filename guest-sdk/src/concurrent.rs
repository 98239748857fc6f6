//! Work started without waiting: tool calls, timers and signal waits that
//! run together, raced, or bounded by a deadline.
//!
//! [`Context::start`], [`Context::start_timer`], [`Context::start_signal`]
//! and [`Context::start_child`] return at once with a handle ([`Call`],
//! [`Timer`], [`Signal`], [`Child`]); the host
//! runs started tool calls concurrently. [`Context::join`],
//! [`Context::join_all`], [`Context::select`] and [`Context::race`] wait for
//! them.
//!
//! ```no_run
//! use std::time::Duration;
//! use reprise_sdk::{Context, Race, ToolError, workflow};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize)]
//! struct Posts { uid: u64 }
//! #[derive(Serialize, Deserialize)]
//! struct Post { id: u64, title: String }
//! #[derive(Deserialize)]
//! struct Approval { by: String }
//!
//! #[workflow]
//! fn review(ctx: &Context, uids: Vec<u64>) -> Result<String, ToolError> {
//!     // Fan out: every user's posts at once, results in the order asked.
//!     let calls: Vec<_> = uids
//!         .iter()
//!         .map(|&uid| ctx.start::<Vec<Post>>("demo", "posts", &Posts { uid }))
//!         .collect();
//!     let mut posts = 0;
//!     for result in ctx.join_all(calls) {
//!         posts += result?.len();
//!     }
//!     // A deadline: the approval, or an escalation after a day.
//!     let approval = ctx.start_signal::<Approval>("approve");
//!     let deadline = ctx.start_timer(Duration::from_secs(24 * 3600));
//!     Ok(match ctx.race(approval, deadline) {
//!         Race::First(Ok(approval)) => format!("{posts} posts, approved by {}", approval.by),
//!         Race::First(Err(e)) => format!("{posts} posts, unreadable approval: {e}"),
//!         Race::Second(()) => format!("{posts} posts, escalated"),
//!     })
//! }
//! # fn main() {}
//! ```
//!
//! # What the host guarantees
//!
//! - Each completion is journaled before the workflow sees it, in the order
//!   the workflow saw them. On replay the workflow sees the same
//!   completions in the same order, whatever order the work finishes in.
//! - A tool call runs at least once: a call whose completion is journaled
//!   never runs again; one still running when the invocation ends (a
//!   crash, a suspension, the budget) runs again on resume with the same
//!   idempotency key.
//! - Waiting only on timers and signals suspends the execution with no
//!   instance and no memory held, exactly as [`Context::sleep`] does.
//! - Starting calls in another order on replay fails the execution with a
//!   nondeterminism error naming the journal entry and both calls.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::reprise::workflow::types;
use crate::tool::decode_typed;
use crate::{
    CallError, Context, DecodeError, ToolError, WorkflowError, decode, decode_result, with_encoded,
};

/// Work started and not yet awaited: a [`Call`], [`Timer`], [`Signal`] or
/// [`Child`].
pub trait Pending {
    /// What awaiting it gives.
    type Output;

    /// The host's handle: unique in the execution, the same on replay.
    fn handle(&self) -> u64;

    #[doc(hidden)]
    fn complete(&self, completion: types::Completion) -> Self::Output;
}

/// A tool call started with [`Context::start`] (awaiting it gives
/// `Result<T, ToolError>`) or with [`Context::start_tool`] (awaiting it
/// gives `Result<T, CallError>`).
#[must_use = "a started call does nothing for the workflow until it is awaited"]
#[derive(Debug)]
pub struct Call<T, E = ToolError> {
    handle: u64,
    _out: PhantomData<fn() -> (T, E)>,
}

impl<T, E> Call<T, E> {
    pub(crate) fn new(handle: u64) -> Self {
        Self {
            handle,
            _out: PhantomData,
        }
    }
}

/// A timer started with [`Context::start_timer`]; awaiting it returns once
/// it is due.
#[must_use = "a started timer does nothing for the workflow until it is awaited"]
#[derive(Debug)]
pub struct Timer {
    handle: u64,
}

/// A wait for a signal started with [`Context::start_signal`]; awaiting it
/// gives the signal's payload decoded as `T`.
#[must_use = "a started signal wait does nothing for the workflow until it is awaited"]
#[derive(Debug)]
pub struct Signal<T> {
    handle: u64,
    _out: PhantomData<fn() -> T>,
}

fn unexpected(handle: u64, what: &str) -> ! {
    panic!("the host completed handle {handle} with something other than {what}")
}

impl<T: DeserializeOwned> Pending for Call<T, ToolError> {
    type Output = Result<T, ToolError>;

    fn handle(&self) -> u64 {
        self.handle
    }

    fn complete(&self, completion: types::Completion) -> Self::Output {
        match completion {
            types::Completion::Tool(result) => decode_result(result.map_err(ToolError::from)),
            _ => unexpected(self.handle, "a tool result"),
        }
    }
}

impl<T: DeserializeOwned> Pending for Call<T, CallError> {
    type Output = Result<T, CallError>;

    fn handle(&self) -> u64 {
        self.handle
    }

    fn complete(&self, completion: types::Completion) -> Self::Output {
        match completion {
            types::Completion::Tool(result) => decode_typed(result.map_err(ToolError::from)),
            _ => unexpected(self.handle, "a tool result"),
        }
    }
}

impl Pending for Timer {
    type Output = ();

    fn handle(&self) -> u64 {
        self.handle
    }

    fn complete(&self, completion: types::Completion) -> Self::Output {
        match completion {
            types::Completion::Timer => {}
            _ => unexpected(self.handle, "a timer"),
        }
    }
}

impl<T: DeserializeOwned> Pending for Signal<T> {
    type Output = Result<T, DecodeError>;

    fn handle(&self) -> u64 {
        self.handle
    }

    fn complete(&self, completion: types::Completion) -> Self::Output {
        match completion {
            types::Completion::Signal(payload) => decode(&payload),
            _ => unexpected(self.handle, "a signal"),
        }
    }
}

/// A child workflow started with [`Context::start_child`]; awaiting it
/// gives its result decoded as `T`, or how it failed.
#[must_use = "a started child's result is lost unless it is awaited"]
#[derive(Debug)]
pub struct Child<T> {
    handle: u64,
    _out: PhantomData<fn() -> T>,
}

/// How a child workflow ended, when it did not complete with a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildError {
    /// `cancelled`, `decode` (its result did not decode), or the failure
    /// kind (`workflow-error`, `trap`, ...).
    pub kind: String,
    /// What happened.
    pub message: String,
    /// For a `workflow-error`: the child's code (see [`WorkflowError`];
    /// `error` for a child that gave none).
    pub code: Option<String>,
    /// For a `workflow-error`: the details the child gave (MessagePack).
    pub details: Option<Vec<u8>>,
}

/// The kind of a [`ChildError`] for a child that failed with its own error.
pub const CHILD_WORKFLOW_ERROR: &str = "workflow-error";

impl ChildError {
    /// An error of this kind, without code or details (`cancelled`,
    /// `trap`...).
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            code: None,
            details: None,
        }
    }

    /// Whether the child failed with its own error of this code.
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Decodes the child's details, if any.
    pub fn details<T: DeserializeOwned>(&self) -> Option<Result<T, DecodeError>> {
        self.details.as_deref().map(decode)
    }
}

/// A child that failed with this error (what a scripted child in
/// [`testing`](crate::testing) returns).
impl From<WorkflowError> for ChildError {
    fn from(e: WorkflowError) -> Self {
        Self {
            kind: CHILD_WORKFLOW_ERROR.into(),
            message: e.message,
            code: Some(e.code),
            details: e.details,
        }
    }
}

impl std::fmt::Display for ChildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "child workflow {} {code}: {}", self.kind, self.message),
            None => write!(f, "child workflow {}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for ChildError {}

impl<T: DeserializeOwned> Pending for Child<T> {
    type Output = Result<T, ChildError>;

    fn handle(&self) -> u64 {
        self.handle
    }

    fn complete(&self, completion: types::Completion) -> Self::Output {
        match completion {
            types::Completion::Child(Ok(out)) => {
                decode(&out).map_err(|e| ChildError::new(crate::DECODE_ERROR, e.to_string()))
            }
            types::Completion::Child(Err(e)) => Err(ChildError {
                kind: e.kind,
                message: e.message,
                code: e.code,
                details: e.details,
            }),
            _ => unexpected(self.handle, "a child's end"),
        }
    }
}

/// Which of two raced handles completed first ([`Context::race`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Race<A, B> {
    /// The first one, with its output.
    First(A),
    /// The second one, with its output.
    Second(B),
}

/// How a tool call is retried when it fails ([`Context::call_with`],
/// [`Context::start_with`]). Attempts are not journaled: the journal keeps
/// the final outcome and how many attempts it took, and every attempt gets
/// the same idempotency key.
///
/// ```
/// use std::time::Duration;
/// use reprise_sdk::RetryPolicy;
///
/// // 5 attempts, 2 s each at most, waiting 100 ms, 200 ms, 400 ms... up to
/// // 5 s between them, and only on these two codes.
/// let policy = RetryPolicy::attempts(5)
///     .backoff(Duration::from_millis(100), 2.0, Duration::from_secs(5))
///     .attempt_timeout(Duration::from_secs(2))
///     .retry_on(["unavailable", "timeout"]);
/// assert_eq!(policy.max_attempts, 5);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Most attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Each later wait is the previous one times this (at least 1.0).
    pub backoff_factor: f64,
    /// No wait is longer than this.
    pub max_backoff: Duration,
    /// An attempt that takes longer fails with the code `timeout`.
    pub attempt_timeout: Option<Duration>,
    /// The error codes worth another attempt; empty: every code.
    pub retry_on: Vec<String>,
}

impl RetryPolicy {
    /// `max_attempts` attempts on any error, 100 ms apart at first, then
    /// twice as long each time up to 10 s, no timeout per attempt.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            initial_backoff: Duration::from_millis(100),
            backoff_factor: 2.0,
            max_backoff: Duration::from_secs(10),
            attempt_timeout: None,
            retry_on: Vec::new(),
        }
    }

    /// Sets the waits between attempts.
    pub fn backoff(mut self, initial: Duration, factor: f64, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.backoff_factor = factor;
        self.max_backoff = max;
        self
    }

    /// Fails an attempt that takes longer than `limit` with code `timeout`.
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = Some(limit);
        self
    }

    /// Retries only errors with one of these codes.
    pub fn retry_on<S: Into<String>>(mut self, codes: impl IntoIterator<Item = S>) -> Self {
        self.retry_on = codes.into_iter().map(Into::into).collect();
        self
    }

    pub(crate) fn to_wit(&self) -> types::RetryPolicy {
        types::RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff_ms: millis(self.initial_backoff),
            backoff_factor: self.backoff_factor,
            max_backoff_ms: millis(self.max_backoff),
            attempt_timeout_ms: self.attempt_timeout.map(millis),
            retry_on: self.retry_on.clone(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// The code of the [`ToolError`] [`Context::call_timeout`] returns when
/// the deadline passes first.
pub const DEADLINE: &str = "deadline";

impl Context {
    /// Starts the tool call `category`/`name` on `input` and returns at
    /// once. Calls started together run concurrently on the host; await
    /// them with [`Context::join`], [`Context::join_all`],
    /// [`Context::select`] or [`Context::race`].
    pub fn start<Out: DeserializeOwned>(
        &self,
        category: &str,
        name: &str,
        input: &(impl Serialize + ?Sized),
    ) -> Call<Out> {
        Call::new(with_encoded(input, |input| {
            self.host().start_tool(category, name, input, None)
        }))
    }

    /// [`Context::start`], retried by `policy` when it fails.
    pub fn start_with<Out: DeserializeOwned>(
        &self,
        category: &str,
        name: &str,
        input: &(impl Serialize + ?Sized),
        policy: &RetryPolicy,
    ) -> Call<Out> {
        Call::new(with_encoded(input, |input| {
            self.host()
                .start_tool(category, name, input, Some(&policy.to_wit()))
        }))
    }

    /// Calls a tool, retried by `policy` when it fails; returns its final
    /// result (the last attempt's error if every attempt failed).
    pub fn call_with<Out: DeserializeOwned>(
        &self,
        category: &str,
        name: &str,
        input: &(impl Serialize + ?Sized),
        policy: &RetryPolicy,
    ) -> Result<Out, ToolError> {
        let call = self.start_with(category, name, input, policy);
        self.join(call)
    }

    /// Calls a tool, giving up after `limit`: then the error has code
    /// [`DEADLINE`] and the call is abandoned (it may still have run).
    pub fn call_timeout<Out: DeserializeOwned>(
        &self,
        category: &str,
        name: &str,
        input: &(impl Serialize + ?Sized),
        limit: Duration,
    ) -> Result<Out, ToolError> {
        let call = self.start::<Out>(category, name, input);
        match self.race(call, self.start_timer(limit)) {
            Race::First(result) => result,
            Race::Second(()) => Err(ToolError {
                code: DEADLINE.into(),
                message: format!("{category}/{name} did not answer within {limit:?}"),
                details: None,
            }),
        }
    }

    /// Starts a durable timer due `duration` from now.
    pub fn start_timer(&self, duration: Duration) -> Timer {
        Timer {
            handle: self.host().start_timer(millis(duration)),
        }
    }

    /// Starts waiting for the next signal called `name`.
    pub fn start_signal<T: DeserializeOwned>(&self, name: &str) -> Signal<T> {
        Signal {
            handle: self.host().start_signal(name),
            _out: PhantomData,
        }
    }

    /// Waits for the next signal called `name`, at most `limit`: `None`
    /// if the time ran out first (a signal that comes later stays buffered
    /// for the next wait).
    pub fn signal_timeout<T: DeserializeOwned>(
        &self,
        name: &str,
        limit: Duration,
    ) -> Option<Result<T, DecodeError>> {
        match self.race(self.start_signal::<T>(name), self.start_timer(limit)) {
            Race::First(payload) => Some(payload),
            Race::Second(()) => None,
        }
    }

    /// Starts an execution of the deployed workflow `workflow` (its current
    /// version, pinned) on `input`, as a child of this one, and returns at
    /// once. The child's id is derived from this execution's id and the
    /// handle (`<parent id>.<handle>`), so a replay finds the same child.
    /// Cancelling this execution cancels its unfinished children. An
    /// unknown workflow fails this execution.
    pub fn start_child<Out: DeserializeOwned>(
        &self,
        workflow: &str,
        input: &(impl Serialize + ?Sized),
    ) -> Child<Out> {
        Child {
            handle: with_encoded(input, |input| self.host().start_child(workflow, input)),
            _out: PhantomData,
        }
    }

    /// Runs a child workflow to its end and returns its result.
    pub fn child<Out: DeserializeOwned>(
        &self,
        workflow: &str,
        input: &(impl Serialize + ?Sized),
    ) -> Result<Out, ChildError> {
        let child = self.start_child(workflow, input);
        self.join(child)
    }

    /// Waits for one started handle.
    pub fn join<P: Pending>(&self, pending: P) -> P::Output {
        let (_, completion) = self.host().await_any(&[pending.handle()]);
        pending.complete(completion)
    }

    /// Waits for all of `pending` and returns their outputs in the order
    /// given (they may complete in any order). The host journals their
    /// completions together: one durable write for the whole set.
    pub fn join_all<P: Pending>(&self, pending: Vec<P>) -> Vec<P::Output> {
        if pending.is_empty() {
            return Vec::new();
        }
        let handles: Vec<u64> = pending.iter().map(Pending::handle).collect();
        let mut completions: Vec<Option<types::Completion>> =
            pending.iter().map(|_| None).collect();
        let at: std::collections::HashMap<u64, usize> =
            handles.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        for (handle, completion) in self.host().await_all(&handles) {
            let i = *at.get(&handle).unwrap_or_else(|| {
                panic!("the host completed handle {handle}, which was not awaited")
            });
            completions[i] = Some(completion);
        }
        pending
            .iter()
            .zip(completions)
            .map(|(p, c)| p.complete(c.expect("the host completed every handle")))
            .collect()
    }

    /// Waits for the first of `pending` to complete, takes it out of the
    /// set and returns it with its output; `None` if the set is empty. Call
    /// it in a loop to handle each result as it comes.
    pub fn select<P: Pending>(&self, pending: &mut Vec<P>) -> Option<(P, P::Output)> {
        if pending.is_empty() {
            return None;
        }
        let handles: Vec<u64> = pending.iter().map(Pending::handle).collect();
        let (handle, completion) = self.host().await_any(&handles);
        let p = pending.remove(position(&handles, handle));
        let output = p.complete(completion);
        Some((p, output))
    }

    /// Waits for the first of two handles of any kinds; the other is
    /// forgotten (a call still running is abandoned).
    pub fn race<A: Pending, B: Pending>(&self, a: A, b: B) -> Race<A::Output, B::Output> {
        let (handle, completion) = self.host().await_any(&[a.handle(), b.handle()]);
        if handle == a.handle() {
            self.host().forget(b.handle());
            Race::First(a.complete(completion))
        } else {
            self.host().forget(a.handle());
            Race::Second(b.complete(completion))
        }
    }

    /// Drops a handle the workflow no longer wants: a call still running is
    /// abandoned, and its result is never journaled.
    pub fn forget<P: Pending>(&self, pending: P) {
        self.host().forget(pending.handle())
    }
}

fn position(handles: &[u64], handle: u64) -> usize {
    handles
        .iter()
        .position(|h| *h == handle)
        .unwrap_or_else(|| panic!("the host completed handle {handle}, which was not awaited"))
}
