//! What a guest starts without waiting (`start-*` in the 0.2.0 WIT): the
//! payload of an [`EntryKind::Started`](super::EntryKind::Started) entry,
//! and the call replay compares it with.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InputKey;

/// What an [`EntryKind::Started`](super::EntryKind::Started) entry started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Started {
    /// A tool call.
    Tool {
        /// Tool category.
        category: String,
        /// Tool name.
        name: String,
        /// The input payload, or its sha256 (see [`InputKey`]).
        input: InputKey,
        /// Size of the input payload in bytes.
        input_len: u64,
    },
    /// A timer.
    Timer {
        /// Requested duration.
        duration_ms: u64,
        /// Due time, milliseconds since the Unix epoch.
        wake_at_ms: u64,
    },
    /// A wait for the next signal of this name.
    Signal {
        /// Signal name.
        name: String,
    },
    /// A child execution.
    Child {
        /// The workflow it runs.
        workflow: String,
        /// Its input, or its sha256 (see [`InputKey`]).
        input: InputKey,
        /// Size of its input in bytes.
        input_len: u64,
        /// Its id (derived from the parent's id and the handle).
        id: crate::ids::ExecutionId,
    },
}

impl Started {
    /// Whether `call` starts this (what [`Started::call`] would equal,
    /// without building it).
    pub fn starts(&self, call: &StartCall) -> bool {
        match (self, call) {
            (
                Started::Tool {
                    category,
                    name,
                    input,
                    ..
                },
                StartCall::Tool {
                    category: c,
                    name: n,
                    input: d,
                },
            ) => category == c && name == n && input == d,
            (Started::Timer { duration_ms, .. }, StartCall::Timer { duration_ms: d }) => {
                duration_ms == d
            }
            (Started::Signal { name }, StartCall::Signal { name: n }) => name == n,
            (
                Started::Child {
                    workflow, input, ..
                },
                StartCall::Child {
                    workflow: w,
                    input: d,
                },
            ) => workflow == w && input == d,
            _ => false,
        }
    }

    /// The call that starts this, as replay compares it.
    pub fn call(&self) -> StartCall {
        match self {
            Started::Tool {
                category,
                name,
                input,
                ..
            } => StartCall::Tool {
                category: category.clone(),
                name: name.clone(),
                input: *input,
            },
            Started::Timer { duration_ms, .. } => StartCall::Timer {
                duration_ms: *duration_ms,
            },
            Started::Signal { name } => StartCall::Signal { name: name.clone() },
            Started::Child {
                workflow, input, ..
            } => StartCall::Child {
                workflow: workflow.clone(),
                input: *input,
            },
        }
    }
}

/// A `start-*` call, without what the host decided (a timer's due time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartCall {
    /// `start-tool`.
    Tool {
        /// Tool category.
        category: String,
        /// Tool name.
        name: String,
        /// The input, or its sha256.
        input: InputKey,
    },
    /// `start-timer`.
    Timer {
        /// Requested duration.
        duration_ms: u64,
    },
    /// `start-signal`.
    Signal {
        /// Signal name.
        name: String,
    },
    /// `start-child`.
    Child {
        /// The workflow.
        workflow: String,
        /// The input, or its sha256.
        input: InputKey,
    },
}

impl fmt::Display for StartCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartCall::Tool {
                category,
                name,
                input,
            } => write!(
                f,
                "start-tool {category}/{name} (input {:?})",
                input.digest()
            ),
            StartCall::Timer { duration_ms } => write!(f, "start-timer {duration_ms} ms"),
            StartCall::Signal { name } => write!(f, "start-signal {name:?}"),
            StartCall::Child { workflow, input } => {
                write!(f, "start-child {workflow} (input {:?})", input.digest())
            }
        }
    }
}
