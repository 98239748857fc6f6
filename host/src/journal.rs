//! Journal entries: what an execution has done, in order.
//!
//! Entry `n` is written once, before the guest sees its value, and never
//! changed. Replay hands the recorded values back to a fresh instance; the
//! `call` of each entry is what replay compares against to detect
//! nondeterminism (invariant 1 in ARCHITECTURE.md).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::Digest;

mod input;
mod start;

pub use input::InputKey;
pub use start::{StartCall, Started};

/// A tool's category or name in a journal entry: a string kept inline
/// when it is short (up to 24 bytes), as tool names are, so loading a long
/// journal does not allocate two strings per tool call. It derefs to
/// `str`, and is written as a plain string.
pub type ToolName = compact_str::CompactString;

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When the entry was recorded, in milliseconds since the Unix epoch. The
    /// guest's WASI wall clock reads this value until the next entry, which is
    /// what makes `std::time::SystemTime::now()` replay identically.
    pub at_ms: u64,
    /// Time the host spent producing the value (e.g. running the tool), in
    /// microseconds. Informational.
    pub duration_us: u64,
    /// What happened.
    pub kind: EntryKind,
}

/// The kinds of journal entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A tool call and its result.
    Tool {
        /// Tool category.
        category: ToolName,
        /// Tool name.
        name: ToolName,
        /// The input payload, or its sha256 when it is long (see
        /// [`InputKey`]).
        input: InputKey,
        /// Size of the input payload in bytes.
        input_len: u64,
        /// The recorded result.
        #[serde(with = "result_bytes")]
        result: Result<Bytes, ToolFailure>,
    },
    /// A durable timer was set; the guest continues once `wake_at_ms` passes.
    Sleep {
        /// Requested duration.
        duration_ms: u64,
        /// Due time, milliseconds since the Unix epoch.
        wake_at_ms: u64,
    },
    /// A signal was consumed.
    Signal {
        /// Signal name.
        name: String,
        /// Position of the signal among all signals sent to the execution.
        seq: u64,
        /// Its payload.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// An item was emitted to the output stream.
    Emit {
        /// The item.
        #[serde(with = "serde_bytes")]
        item: Vec<u8>,
    },
    /// An explicit save point.
    Checkpoint,
    /// A reading of the wall clock (`now`).
    Now {
        /// Milliseconds since the Unix epoch.
        value: u64,
    },
    /// A random number (`random`).
    Random {
        /// The number.
        value: u64,
    },
    /// A tool call whose successful result was too large to keep in the
    /// journal: the store keeps the bytes once under their digest and the
    /// entry refers to them. Stores produce this form when they load a
    /// journal; replay fetches the bytes only when the guest reaches the
    /// entry. Hosts always append [`EntryKind::Tool`].
    ToolStored {
        /// Tool category.
        category: ToolName,
        /// Tool name.
        name: ToolName,
        /// The input payload, or its sha256 (see [`InputKey`]).
        input: InputKey,
        /// Size of the input payload in bytes.
        input_len: u64,
        /// sha256 of the result, under which the store keeps it.
        result_digest: Digest,
        /// Size of the result in bytes.
        result_len: u64,
    },
    /// An item was emitted; the item itself is in the output stream. Stores
    /// write this form for [`EntryKind::Emit`] (hosts always append
    /// `Emit`): an item is kept once, and loading a journal to replay it
    /// does not read the items back.
    Emitted {
        /// sha256 of the item.
        item_digest: Digest,
        /// Size of the item in bytes.
        item_len: u64,
    },
    /// Work started without waiting (`start-tool`, `start-timer`,
    /// `start-signal`). Its handle is this entry's index, which is also a
    /// started tool call's idempotency key.
    Started(Started),
    /// A started operation's completion, recorded when the guest observed it
    /// (`await-any`): replay hands completions back in journal order.
    Completed {
        /// The index of the operation's [`EntryKind::Started`] entry.
        handle: u64,
        /// Attempts the tool call took (1 for anything else).
        attempts: u32,
        /// The value, as the entry of the same blocking call records it:
        /// [`EntryKind::Tool`] (or [`EntryKind::ToolStored`]),
        /// [`EntryKind::Sleep`] or [`EntryKind::Signal`].
        value: Box<EntryKind>,
    },
}

impl Entry {
    /// What a store writes for this entry: an [`EntryKind::Emit`] becomes
    /// [`EntryKind::Emitted`] plus the item, which goes to the output
    /// stream in the same write; any other entry is written as it is.
    pub fn split_item(&self) -> (std::borrow::Cow<'_, Entry>, Option<&[u8]>) {
        match &self.kind {
            EntryKind::Emit { item } => (
                std::borrow::Cow::Owned(Entry {
                    at_ms: self.at_ms,
                    duration_us: self.duration_us,
                    kind: EntryKind::Emitted {
                        item_digest: Digest::of(item),
                        item_len: item.len() as u64,
                    },
                }),
                Some(item.as_slice()),
            ),
            _ => (std::borrow::Cow::Borrowed(self), None),
        }
    }
}

/// A tool error as recorded in the journal: a value the workflow sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolFailure {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Optional structured details.
    #[serde(with = "serde_bytes")]
    pub details: Option<Vec<u8>>,
}

/// A tool call's recorded result, as replay finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedTool {
    /// In the journal entry itself.
    Inline(Result<Bytes, ToolFailure>),
    /// Kept by the store under its digest (a large result): fetched when
    /// the guest reaches it.
    Stored {
        /// sha256 of the result.
        digest: Digest,
        /// Its size in bytes.
        len: u64,
    },
}

/// Serializes a tool result with its payload as raw bytes (not an array of
/// numbers): smaller, and decoded with one copy. Reading also accepts the
/// arrays format version 1 wrote.
mod result_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    use super::ToolFailure;

    pub fn serialize<S: Serializer>(
        result: &Result<bytes::Bytes, ToolFailure>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match result {
            Ok(v) => Ok::<&Bytes, &ToolFailure>(Bytes::new(v)).serialize(s),
            Err(e) => Err::<&Bytes, &ToolFailure>(e).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Result<bytes::Bytes, ToolFailure>, D::Error> {
        Ok(Result::<ByteBuf, ToolFailure>::deserialize(d)?.map(|b| b.into_vec().into()))
    }
}

/// The shape of a journaled call, without its result: what replay compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `call-tool`.
    Tool {
        /// The tool's category (first half of its address).
        category: String,
        /// The tool's name within its category.
        name: String,
        /// sha256 of the input.
        input_digest: Digest,
    },
    /// `sleep`.
    Sleep {
        /// Requested duration.
        duration_ms: u64,
    },
    /// `await-signal`.
    Signal {
        /// Signal name.
        name: String,
    },
    /// `emit`.
    Emit {
        /// sha256 of the item.
        item_digest: Digest,
    },
    /// `checkpoint`.
    Checkpoint,
    /// `now`.
    Now,
    /// `random`.
    Random,
    /// One of the `start-*` calls.
    Start(StartCall),
    /// `await-any` on these handles; from an entry, the handle it
    /// completed.
    Await {
        /// The handles.
        handles: Vec<u64>,
    },
}

impl EntryKind {
    /// A one-line description: the tool and its error, the timer, the
    /// signal, the value.
    pub fn detail(&self) -> String {
        match self {
            EntryKind::Tool {
                category,
                name,
                result,
                ..
            } => match result {
                Ok(_) => format!("{category}/{name}"),
                Err(e) => format!("{category}/{name} -> error {}: {}", e.code, e.message),
            },
            EntryKind::ToolStored {
                category,
                name,
                result_digest,
                ..
            } => format!("{category}/{name} (stored as {result_digest})"),
            EntryKind::Sleep {
                duration_ms,
                wake_at_ms,
            } => format!("{duration_ms} ms, until {wake_at_ms}"),
            EntryKind::Signal { name, seq, .. } => format!("{name} (#{seq})"),
            EntryKind::Now { value } => value.to_string(),
            EntryKind::Random { value } => value.to_string(),
            EntryKind::Emit { .. } | EntryKind::Emitted { .. } | EntryKind::Checkpoint => {
                String::new()
            }
            EntryKind::Started(started) => match started {
                Started::Tool { category, name, .. } => format!("tool {category}/{name}"),
                Started::Timer {
                    duration_ms,
                    wake_at_ms,
                } => format!("timer {duration_ms} ms, until {wake_at_ms}"),
                Started::Signal { name } => format!("signal {name}"),
                Started::Child { workflow, id, .. } => format!("child {id} ({workflow})"),
            },
            EntryKind::Completed {
                handle,
                attempts,
                value,
            } => {
                let detail = value.detail();
                let mut line = format!("#{handle}: {}", value.label());
                if !detail.is_empty() {
                    line.push(' ');
                    line.push_str(&detail);
                }
                if *attempts > 1 {
                    line.push_str(&format!(" after {attempts} attempts"));
                }
                line
            }
        }
    }

    /// The call this entry records.
    pub fn call(&self) -> Call {
        match self {
            EntryKind::Tool {
                category,
                name,
                input,
                ..
            }
            | EntryKind::ToolStored {
                category,
                name,
                input,
                ..
            } => Call::Tool {
                category: category.to_string(),
                name: name.to_string(),
                input_digest: input.digest(),
            },
            EntryKind::Sleep { duration_ms, .. } => Call::Sleep {
                duration_ms: *duration_ms,
            },
            EntryKind::Signal { name, .. } => Call::Signal { name: name.clone() },
            EntryKind::Emit { item } => Call::Emit {
                item_digest: Digest::of(item),
            },
            EntryKind::Emitted { item_digest, .. } => Call::Emit {
                item_digest: *item_digest,
            },
            EntryKind::Checkpoint => Call::Checkpoint,
            EntryKind::Now { .. } => Call::Now,
            EntryKind::Random { .. } => Call::Random,
            EntryKind::Started(started) => Call::Start(started.call()),
            EntryKind::Completed { handle, .. } => Call::Await {
                handles: vec![*handle],
            },
        }
    }

    // Replay. Each function below answers one kind of call: if this entry
    // records that very call it returns the recorded value, typed for that
    // call; otherwise it returns the call the entry does record, and replay
    // reports nondeterminism. Checking the call and taking its value out are one
    // `match`, so they cannot disagree, and no caller has an "impossible"
    // arm to write. A tool call's check is a function of its own
    // (`records_tool`), which the current world's `call-tool` makes with
    // the arguments still in the guest's memory.

    /// The recorded result of `call-tool(category, name, input)`.
    pub fn replay_tool(
        self,
        category: &str,
        name: &str,
        input: &[u8],
    ) -> Result<RecordedTool, Call> {
        if self.records_tool(category, name, input) {
            self.recorded_tool()
        } else {
            Err(self.call())
        }
    }

    /// Whether this entry records `call-tool` of `category/name` with this
    /// input: what [`EntryKind::replay_tool`] accepts, checked without
    /// taking the entry. The input is hashed only if the entry keeps a
    /// digest of it (see [`InputKey`]), and only once the names match.
    pub fn records_tool(&self, category: &str, name: &str, input: &[u8]) -> bool {
        match self {
            EntryKind::Tool {
                category: c,
                name: n,
                input: key,
                ..
            }
            | EntryKind::ToolStored {
                category: c,
                name: n,
                input: key,
                ..
            } => c == category && n == name && key.matches(input),
            _ => false,
        }
    }

    /// A tool call's recorded result, whatever the call: for an entry
    /// [`EntryKind::records_tool`] has already matched.
    pub fn recorded_tool(self) -> Result<RecordedTool, Call> {
        match self {
            EntryKind::Tool { result, .. } => Ok(RecordedTool::Inline(result)),
            EntryKind::ToolStored {
                result_digest,
                result_len,
                ..
            } => Ok(RecordedTool::Stored {
                digest: result_digest,
                len: result_len,
            }),
            other => Err(other.call()),
        }
    }

    /// A tool call's recorded result, shared with the entry (an inline
    /// result's bytes are reference-counted, not copied), which stays
    /// whole: [`EntryKind::take_recorded_tool`] for a journal that is kept.
    /// `None` for any other entry.
    pub fn recorded_tool_shared(&self) -> Option<RecordedTool> {
        match self {
            EntryKind::Tool { result, .. } => Some(RecordedTool::Inline(result.clone())),
            EntryKind::ToolStored {
                result_digest,
                result_len,
                ..
            } => Some(RecordedTool::Stored {
                digest: *result_digest,
                len: *result_len,
            }),
            _ => None,
        }
    }

    /// A tool call's recorded result, taken out of the entry (an inline
    /// result leaves an empty one behind): [`EntryKind::recorded_tool`]
    /// without moving the entry. `None` for any other entry.
    pub fn take_recorded_tool(&mut self) -> Option<RecordedTool> {
        match self {
            EntryKind::Tool { result, .. } => Some(RecordedTool::Inline(std::mem::replace(
                result,
                Ok(Bytes::new()),
            ))),
            // A stored result's reference is copied either way.
            other => other.recorded_tool_shared(),
        }
    }

    /// The due time of `sleep(duration_ms)`.
    pub fn replay_sleep(self, duration_ms: u64) -> Result<u64, Call> {
        match self {
            EntryKind::Sleep {
                duration_ms: d,
                wake_at_ms,
            } if d == duration_ms => Ok(wake_at_ms),
            other => Err(other.call()),
        }
    }

    /// The payload `await-signal(name)` received.
    pub fn replay_signal(self, name: &str) -> Result<Vec<u8>, Call> {
        match self {
            EntryKind::Signal {
                name: n, payload, ..
            } if n == name => Ok(payload),
            other => Err(other.call()),
        }
    }

    /// `emit(item)`, for the item with `item_digest`.
    pub fn replay_emit(self, item_digest: &Digest) -> Result<(), Call> {
        match self {
            EntryKind::Emit { item } if Digest::of(&item) == *item_digest => Ok(()),
            EntryKind::Emitted { item_digest: d, .. } if d == *item_digest => Ok(()),
            other => Err(other.call()),
        }
    }

    /// `checkpoint()`.
    pub fn replay_checkpoint(self) -> Result<(), Call> {
        match self {
            EntryKind::Checkpoint => Ok(()),
            other => Err(other.call()),
        }
    }

    /// The reading `now()` returned.
    pub fn replay_now(self) -> Result<u64, Call> {
        match self {
            EntryKind::Now { value } => Ok(value),
            other => Err(other.call()),
        }
    }

    /// The number `random()` returned.
    pub fn replay_random(self) -> Result<u64, Call> {
        match self {
            EntryKind::Random { value } => Ok(value),
            other => Err(other.call()),
        }
    }

    /// What `start` started, if this entry records that very call.
    pub fn replay_start(self, call: &StartCall) -> Result<Started, Call> {
        match self {
            EntryKind::Started(started) if started.starts(call) => Ok(started),
            other => Err(other.call()),
        }
    }

    /// The completion `await-any(handles)` observed: the handle, its
    /// attempts and its value, if this entry completes one of `handles`.
    pub fn replay_completion(self, handles: &[u64]) -> Result<(u64, u32, EntryKind), Call> {
        match self {
            EntryKind::Completed {
                handle,
                attempts,
                value,
            } if handles.contains(&handle) => Ok((handle, attempts, *value)),
            other => Err(other.call()),
        }
    }

    /// A short name for the kind: `tool`, `sleep`, `signal`, ...
    pub fn label(&self) -> &'static str {
        match self {
            EntryKind::Tool { .. } | EntryKind::ToolStored { .. } => "tool",
            EntryKind::Sleep { .. } => "sleep",
            EntryKind::Signal { .. } => "signal",
            EntryKind::Emit { .. } | EntryKind::Emitted { .. } => "emit",
            EntryKind::Checkpoint => "checkpoint",
            EntryKind::Now { .. } => "now",
            EntryKind::Random { .. } => "random",
            EntryKind::Started(_) => "start",
            EntryKind::Completed { .. } => "completion",
        }
    }

    /// Size of the recorded value in bytes (what the guest gets back).
    pub fn value_len(&self) -> usize {
        match self {
            EntryKind::Tool { result, .. } => match result {
                Ok(v) => v.len(),
                Err(e) => e.code.len() + e.message.len() + e.details.as_ref().map_or(0, Vec::len),
            },
            EntryKind::ToolStored { result_len, .. } => *result_len as usize,
            EntryKind::Signal { payload, .. } => payload.len(),
            EntryKind::Emit { item } => item.len(),
            EntryKind::Emitted { item_len, .. } => *item_len as usize,
            EntryKind::Now { .. } | EntryKind::Random { .. } => 8,
            EntryKind::Sleep { .. } | EntryKind::Checkpoint | EntryKind::Started(_) => 0,
            EntryKind::Completed { value, .. } => value.value_len(),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Tool {
                category,
                name,
                input_digest,
            } => write!(f, "call-tool {category}/{name} (input {input_digest:?})"),
            Call::Sleep { duration_ms } => write!(f, "sleep {duration_ms} ms"),
            Call::Signal { name } => write!(f, "await-signal {name:?}"),
            Call::Emit { item_digest } => write!(f, "emit (item {item_digest:?})"),
            Call::Checkpoint => f.write_str("checkpoint"),
            Call::Now => f.write_str("now"),
            Call::Random => f.write_str("random"),
            Call::Start(start) => start.fmt(f),
            Call::Await { handles } => match handles.as_slice() {
                [handle] => write!(f, "await-any, completing handle {handle}"),
                handles => write!(f, "await-any {handles:?}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_answers_exactly_the_recorded_call() {
        // The inputs the tool entries below were called with: a call names
        // its input by digest, and replay is given the input itself.
        let inputs: [&[u8]; 3] = [b"i", b"j", &[5; 40]];
        let tool = |name: &str, input: InputKey, input_len: u64| EntryKind::Tool {
            category: "c".into(),
            name: name.into(),
            input,
            input_len,
            result: Ok(Bytes::from_static(&[1])),
        };
        let kinds = [
            tool("n", InputKey::of(b"i"), 1),
            // The same call as a journal before format 5 kept it.
            tool("n", InputKey::from(Digest::of(b"i")), 1),
            tool("n", InputKey::of(b"j"), 1),
            tool("n", InputKey::of(&[5; 40]), 40),
            EntryKind::ToolStored {
                category: "c".into(),
                name: "n".into(),
                input: InputKey::of(b"i"),
                input_len: 1,
                result_digest: Digest::of(b"r"),
                result_len: 1,
            },
            tool("other", InputKey::of(b"i"), 1),
            EntryKind::Sleep {
                duration_ms: 5,
                wake_at_ms: 9,
            },
            EntryKind::Signal {
                name: "s".into(),
                seq: 0,
                payload: vec![],
            },
            EntryKind::Emit { item: vec![7] },
            EntryKind::Emitted {
                item_digest: Digest::of(&[7]),
                item_len: 1,
            },
            EntryKind::Emitted {
                item_digest: Digest::of(&[8]),
                item_len: 1,
            },
            EntryKind::Checkpoint,
            EntryKind::Now { value: 1 },
            EntryKind::Random { value: 2 },
            EntryKind::Started(Started::Tool {
                category: "c".into(),
                name: "n".into(),
                input: InputKey::of(b"i"),
                input_len: 1,
            }),
            // As a journal before format 5 kept it: the same start.
            EntryKind::Started(Started::Tool {
                category: "c".into(),
                name: "n".into(),
                input: InputKey::from(Digest::of(b"i")),
                input_len: 1,
            }),
            EntryKind::Started(Started::Tool {
                category: "c".into(),
                name: "n".into(),
                input: InputKey::of(b"j"),
                input_len: 1,
            }),
            EntryKind::Started(Started::Timer {
                duration_ms: 5,
                wake_at_ms: 9,
            }),
            EntryKind::Started(Started::Signal { name: "s".into() }),
            EntryKind::Completed {
                handle: 3,
                attempts: 2,
                value: Box::new(EntryKind::Signal {
                    name: "s".into(),
                    seq: 0,
                    payload: vec![],
                }),
            },
            EntryKind::Completed {
                handle: 4,
                attempts: 1,
                value: Box::new(EntryKind::Checkpoint),
            },
        ];
        // Taking a result out is reading it, for tool calls only.
        for kind in &kinds {
            assert_eq!(
                kind.clone().take_recorded_tool(),
                kind.clone().recorded_tool().ok(),
                "{}",
                kind.call()
            );
        }
        // Each replay function accepts an entry exactly when the entry
        // records the call it answers.
        let answers = |kind: &EntryKind, call: &Call| -> bool {
            let kind = kind.clone();
            match call {
                Call::Tool {
                    category,
                    name,
                    input_digest,
                } => {
                    let input = inputs
                        .iter()
                        .find(|i| Digest::of(i) == *input_digest)
                        .expect("a call of one of the inputs");
                    kind.replay_tool(category, name, input).is_ok()
                }
                Call::Sleep { duration_ms } => kind.replay_sleep(*duration_ms).is_ok(),
                Call::Signal { name } => kind.replay_signal(name).is_ok(),
                Call::Emit { item_digest } => kind.replay_emit(item_digest).is_ok(),
                Call::Checkpoint => kind.replay_checkpoint().is_ok(),
                Call::Now => kind.replay_now().is_ok(),
                Call::Random => kind.replay_random().is_ok(),
                Call::Start(start) => kind.replay_start(start).is_ok(),
                Call::Await { handles } => kind.replay_completion(handles).is_ok(),
            }
        };
        for a in &kinds {
            for b in &kinds {
                assert_eq!(
                    answers(a, &b.call()),
                    a.call() == b.call(),
                    "{} vs {}",
                    a.call(),
                    b.call()
                );
            }
        }
    }
}
