//! The scripted host's journal: what each call asked and was answered,
//! and the rule replay checks (the host's: same kind, same tool, same
//! input; an await answered by a completion of a handle it waits on).

use std::collections::BTreeSet;
use std::fmt;

use crate::__private::bindings::reprise::workflow::types;

/// A journaled call, as the workflow made it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Request {
    Call {
        category: String,
        name: String,
        input: Vec<u8>,
    },
    Sleep(u64),
    AwaitSignal(String),
    Emit(Vec<u8>),
    Checkpoint,
    Now,
    Random,
    StartTool {
        category: String,
        name: String,
        input: Vec<u8>,
    },
    StartTimer(u64),
    StartSignal(String),
    StartChild {
        workflow: String,
        input: Vec<u8>,
    },
    AwaitAny(Vec<u64>),
    AwaitAll(Vec<u64>),
}

/// What the call returned.
#[derive(Clone, Debug)]
pub(super) enum Answer {
    Unit,
    U64(u64),
    Bytes(Vec<u8>),
    Tool(Result<Vec<u8>, types::ToolError>),
    Completions(Vec<(u64, types::Completion)>),
}

#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub request: Request,
    pub answer: Answer,
}

impl Entry {
    /// Whether this recorded entry answers `request` on replay.
    pub fn answers(&self, request: &Request) -> bool {
        match (&self.request, request) {
            (Request::AwaitAny(_), Request::AwaitAny(now)) => match &self.answer {
                Answer::Completions(done) => done.iter().all(|(h, _)| now.contains(h)),
                _ => false,
            },
            (Request::AwaitAll(then), Request::AwaitAll(now)) => {
                then.iter().collect::<BTreeSet<_>>() == now.iter().collect::<BTreeSet<_>>()
            }
            (recorded, made) => recorded == made,
        }
    }
}

impl Answer {
    pub fn into_u64(self) -> u64 {
        match self {
            Answer::U64(v) => v,
            other => unreachable!("a number was recorded, not {other:?}"),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Answer::Bytes(v) => v,
            other => unreachable!("bytes were recorded, not {other:?}"),
        }
    }

    pub fn into_tool(self) -> Result<Vec<u8>, types::ToolError> {
        match self {
            Answer::Tool(v) => v,
            other => unreachable!("a tool result was recorded, not {other:?}"),
        }
    }

    pub fn into_completions(self) -> Vec<(u64, types::Completion)> {
        match self {
            Answer::Completions(v) => v,
            other => unreachable!("completions were recorded, not {other:?}"),
        }
    }
}

/// A payload for a message: its JSON form when it is MessagePack, else
/// its size; long ones cut.
pub(super) fn describe_payload(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    match rmp_serde::from_slice::<serde_json::Value>(bytes) {
        Ok(value) => {
            let mut text = value.to_string();
            if text.len() > MAX {
                let mut cut = MAX;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("...");
            }
            text
        }
        Err(_) => format!("<{} bytes>", bytes.len()),
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Call {
                category,
                name,
                input,
            } => write!(
                f,
                "a call of {category}/{name} with {}",
                describe_payload(input)
            ),
            Request::Sleep(ms) => write!(f, "a sleep of {ms} ms"),
            Request::AwaitSignal(name) => write!(f, "a wait for the signal {name:?}"),
            Request::Emit(item) => write!(f, "an emit of {}", describe_payload(item)),
            Request::Checkpoint => write!(f, "a checkpoint"),
            Request::Now => write!(f, "a read of the time"),
            Request::Random => write!(f, "a random number"),
            Request::StartTool {
                category,
                name,
                input,
            } => write!(
                f,
                "a start of {category}/{name} with {}",
                describe_payload(input)
            ),
            Request::StartTimer(ms) => write!(f, "a start of a {ms} ms timer"),
            Request::StartSignal(name) => write!(f, "a start of a wait for the signal {name:?}"),
            Request::StartChild { workflow, input } => write!(
                f,
                "a start of the child workflow {workflow:?} with {}",
                describe_payload(input)
            ),
            Request::AwaitAny(handles) => write!(f, "an await of any of the handles {handles:?}"),
            Request::AwaitAll(handles) => write!(f, "an await of all of the handles {handles:?}"),
        }
    }
}
