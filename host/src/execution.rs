//! Executions: status, what a suspended execution waits for, and outcomes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{Digest, ExecutionId};
use crate::journal::Entry;

/// Where an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// An invocation holds (or held, before a crash) the lease.
    Running,
    /// No instance exists; the execution waits for [`Wait`].
    Suspended,
    /// Finished with a result.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled on request; the guest is not run again.
    Cancelled,
}

impl Status {
    /// Completed, failed or cancelled: nothing will run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    /// Lowercase name, as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Suspended => "suspended",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Every status, in the order of their [`Status::code`].
    pub const ALL: [Status; 5] = [
        Status::Running,
        Status::Suspended,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The status named by [`Status::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// A small number for the status, stable across versions: how the
    /// embedded store's indexes key it.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status of [`Status::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a suspended execution waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wait {
    /// Nothing: it may run now (an invocation ended on its budget, or what it
    /// waited for arrived).
    Ready,
    /// A durable timer, due at this time (ms since the Unix epoch).
    Timer {
        /// Due time.
        wake_at_ms: u64,
    },
    /// A signal of this name.
    Signal {
        /// Signal name.
        name: String,
    },
    /// Its consumers: the output stream's window is full (see
    /// [`StreamPolicy`]). Reading frees it and wakes the execution; it is
    /// also run at `wake_at_ms` (when the earliest consumer session would
    /// expire) to notice consumers that left.
    Consumers {
        /// When to look again, ms since the Unix epoch, if any session is live.
        wake_at_ms: Option<u64>,
        /// Size of the item waiting to be emitted (for a byte window).
        item_len: u64,
    },
    /// The first of several started operations (`await-any` with only
    /// timers and signals pending): any signal of these names, or the
    /// earliest timer.
    Any {
        /// The signals waited for, with how many of each name the journal
        /// had consumed (see [`crate::store::Store::suspend`]).
        signals: Vec<SignalWait>,
        /// The earliest timer's due time, if a timer is among them.
        wake_at_ms: Option<u64>,
    },
}

/// A signal name an execution waits for, in a [`Wait::Any`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalWait {
    /// Signal name.
    pub name: String,
    /// Signals of this name the journal had consumed when it suspended: one
    /// more arriving is what it waits for.
    pub consumed: u64,
}

impl Wait {
    /// When the execution should run even if nothing else happens.
    pub fn wake_at_ms(&self) -> Option<u64> {
        match self {
            Wait::Timer { wake_at_ms } => Some(*wake_at_ms),
            Wait::Consumers { wake_at_ms, .. } | Wait::Any { wake_at_ms, .. } => *wake_at_ms,
            Wait::Ready | Wait::Signal { .. } => None,
        }
    }

    /// Whether a signal called `name` ends this wait.
    pub fn wants_signal(&self, name: &str) -> bool {
        match self {
            Wait::Signal { name: n } => n == name,
            Wait::Any { signals, .. } => signals.iter().any(|s| s.name == name),
            _ => false,
        }
    }

    /// Whether only someone outside (a signal, a consumer's read) can end
    /// this wait: no timer of the host's would.
    pub fn needs_outside(&self) -> bool {
        // A child's end is a signal the host sends itself.
        let outside = |name: &str| !name.starts_with(RESERVED_SIGNAL_PREFIX);
        match self {
            Wait::Signal { name } => outside(name),
            Wait::Consumers { .. } => true,
            Wait::Any {
                signals,
                wake_at_ms,
            } => wake_at_ms.is_none() && signals.iter().all(|s| outside(&s.name)),
            Wait::Ready | Wait::Timer { .. } => false,
        }
    }
}

/// What happens to a streaming execution once every consumer has left
/// (closed its session, or let it expire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnAbandon {
    /// Cancel it at its next `emit`: nobody wants what it produces.
    #[default]
    Cancel,
    /// Let it run to its end; the window no longer holds it back, and its
    /// items stay readable.
    Continue,
}

impl OnAbandon {
    /// Lowercase name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OnAbandon::Cancel => "cancel",
            OnAbandon::Continue => "continue",
        }
    }
}

/// How a streaming execution's output is paced by its consumers. Only
/// executions started as streams have one; the others emit freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPolicy {
    /// Most items emitted beyond the lowest offset every live consumer has
    /// read. An `emit` that would exceed it waits: inline for a moment,
    /// then suspended with the instance dropped.
    pub window: u64,
    /// What to do once every consumer has left.
    pub on_abandon: OnAbandon,
    /// Most bytes of items emitted beyond what every live consumer has
    /// read, if the window is bounded in bytes too. An item larger than
    /// this still goes out when nothing is unread.
    #[serde(default)]
    pub window_bytes: Option<u64>,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Ready => f.write_str("ready to run"),
            Wait::Timer { wake_at_ms } => write!(f, "timer due at {wake_at_ms} ms"),
            Wait::Signal { name } => write!(f, "signal {name:?}"),
            Wait::Consumers { .. } => f.write_str("consumers to read the stream"),
            Wait::Any {
                signals,
                wake_at_ms,
            } => {
                let names: Vec<String> = signals.iter().map(|s| format!("{:?}", s.name)).collect();
                match wake_at_ms {
                    Some(at) if names.is_empty() => write!(f, "timer due at {at} ms"),
                    Some(at) => write!(f, "signal {} or timer due at {at} ms", names.join(" or ")),
                    None => write!(f, "signal {}", names.join(" or ")),
                }
            }
        }
    }
}

/// Why an execution failed. The variants group failures by cause so callers
/// and dashboards can tell a workflow bug from a host limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The workflow returned an error.
    Workflow,
    /// The guest trapped (a panic, an `unreachable`, ...).
    Trap,
    /// Replay did not match the journal (invariant 1 in ARCHITECTURE.md). Never retried.
    Nondeterminism,
    /// The guest exceeded its memory or table limit.
    MemoryLimit,
    /// The guest ran too long without reaching a journaled call.
    TimeLimit,
    /// The guest called a tool this host does not offer.
    MissingTool,
    /// The component could not be loaded or instantiated.
    InvalidComponent,
    /// The workflow used the host's imports wrongly: it awaited a handle it
    /// never started or already spent, or held more handles than allowed.
    InvalidCall,
}

impl FailureKind {
    /// A stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Workflow => "workflow-error",
            FailureKind::Trap => "trap",
            FailureKind::Nondeterminism => "nondeterminism-detected",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::TimeLimit => "time-limit",
            FailureKind::MissingTool => "missing-tool",
            FailureKind::InvalidComponent => "invalid-component",
            FailureKind::InvalidCall => "invalid-call",
        }
    }
}

/// The code of a workflow error that was given none: the error of a
/// component built before world 0.3.0 (a string), or one recorded before
/// format 4.
pub const UNCODED_WORKFLOW_ERROR: &str = "error";

/// A failed execution's error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The cause.
    pub kind: FailureKind,
    /// A message for humans: names the entry, the trap, the limit.
    pub message: String,
    /// For [`FailureKind::Workflow`]: the workflow's own code (`error`
    /// when it gave none, as components built before world 0.3.0 cannot).
    /// Absent in records of format 3 and earlier.
    #[serde(default)]
    pub code: Option<String>,
    /// For [`FailureKind::Workflow`]: the details the workflow gave, a
    /// payload like its result.
    #[serde(default, with = "serde_bytes")]
    pub details: Option<Vec<u8>>,
}

impl Failure {
    /// A failure of the host's making (a trap, a limit...): no code.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
            details: None,
        }
    }

    /// The error a workflow returned.
    pub fn workflow(code: String, message: String, details: Option<Vec<u8>>) -> Self {
        Self {
            kind: FailureKind::Workflow,
            message,
            code: Some(code),
            details,
        }
    }
}

impl Failure {
    /// For a workflow error, its code ([`UNCODED_WORKFLOW_ERROR`] if it was
    /// recorded without one); none for other failures.
    pub fn workflow_code(&self) -> Option<&str> {
        match (&self.code, self.kind) {
            (Some(code), _) => Some(code),
            (None, FailureKind::Workflow) => Some(UNCODED_WORKFLOW_ERROR),
            (None, _) => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.workflow_code() {
            Some(code) => write!(f, "{} {code}: {}", self.kind.as_str(), self.message),
            None => write!(f, "{}: {}", self.kind.as_str(), self.message),
        }
    }
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The workflow's result payload.
    Completed(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The failure.
    Failed(Failure),
    /// Cancelled on request.
    Cancelled,
}

impl Outcome {
    /// The status this outcome gives an execution.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Completed(_) => Status::Completed,
            Outcome::Failed(_) => Status::Failed,
            Outcome::Cancelled => Status::Cancelled,
        }
    }
}

/// A lease: the right to run one invocation of an execution and append to
/// its journal. `token` grows with every lease granted, so a store can refuse
/// a stale holder (fencing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it (a host id).
    pub owner: String,
    /// Fencing token.
    pub token: u64,
    /// Expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// The persisted state of an execution, apart from its journal and signals.
/// (Its `Serialize` is written out below, for its optional tail.)
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ExecutionRecord {
    /// Its id.
    pub id: ExecutionId,
    /// The workflow name it was started from.
    pub workflow: String,
    /// The component it is pinned to.
    pub digest: Digest,
    /// The input payload.
    #[serde(with = "serde_bytes")]
    pub input: Vec<u8>,
    /// Seed for the guest's WASI random generators.
    pub seed: u64,
    /// Current status.
    pub status: Status,
    /// What it waits for, when suspended.
    pub wait: Option<Wait>,
    /// How it ended, when terminal.
    pub outcome: Option<Outcome>,
    /// Number of journal entries.
    pub journal_len: u64,
    /// Number of invocations so far.
    pub invocations: u64,
    /// The current lease, if any.
    pub lease: Option<Lease>,
    /// The last fencing token granted.
    pub last_token: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// Set for executions started as streams.
    #[serde(default)]
    pub stream: Option<StreamPolicy>,
    /// Set for a child execution: the parent it reports its end to. Left
    /// out when absent (and no `trace` follows), so a record without one
    /// encodes exactly as before it existed.
    #[serde(default)]
    pub parent: Option<ParentLink>,
    /// The trace context it was started in, which its invocations' spans
    /// are children of (see [`crate::telemetry`]). Last, and left out when
    /// absent.
    #[serde(default)]
    pub trace: Option<crate::telemetry::TraceParent>,
}

impl Serialize for ExecutionRecord {
    /// The derived encoding, except for the optional tail: fields are
    /// encoded by position, so `parent` and `trace` can only be left out
    /// from the end. `parent` is written (as nil if absent) when a `trace`
    /// follows it; a record with neither encodes as before they existed.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let tail = if self.trace.is_some() {
            2
        } else {
            usize::from(self.parent.is_some())
        };
        let mut st = s.serialize_struct("ExecutionRecord", 15 + tail)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("workflow", &self.workflow)?;
        st.serialize_field("digest", &self.digest)?;
        st.serialize_field("input", serde_bytes::Bytes::new(&self.input))?;
        st.serialize_field("seed", &self.seed)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("wait", &self.wait)?;
        st.serialize_field("outcome", &self.outcome)?;
        st.serialize_field("journal_len", &self.journal_len)?;
        st.serialize_field("invocations", &self.invocations)?;
        st.serialize_field("lease", &self.lease)?;
        st.serialize_field("last_token", &self.last_token)?;
        st.serialize_field("created_at_ms", &self.created_at_ms)?;
        st.serialize_field("updated_at_ms", &self.updated_at_ms)?;
        st.serialize_field("stream", &self.stream)?;
        if tail >= 1 {
            st.serialize_field("parent", &self.parent)?;
        } else {
            st.skip_field("parent")?;
        }
        if tail == 2 {
            st.serialize_field("trace", &self.trace)?;
        } else {
            st.skip_field("trace")?;
        }
        st.end()
    }
}

/// A child execution's parent, and the handle the parent awaits it by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent's id.
    pub id: ExecutionId,
    /// The handle of the parent's `start-child` (its journal index).
    pub handle: u64,
}

impl ParentLink {
    /// The name of the signal by which the child's end reaches the parent.
    /// Signals whose names start with `reprise:` cannot be sent from
    /// outside.
    pub fn signal_name(&self) -> String {
        child_signal(self.handle)
    }
}

/// The reserved prefix of signal names only the host sends.
pub const RESERVED_SIGNAL_PREFIX: &str = "reprise:";

/// The signal a child started by handle `handle` ends with.
pub fn child_signal(handle: u64) -> String {
    format!("{RESERVED_SIGNAL_PREFIX}child/{handle}")
}

/// How a child ended, as its parent receives it (the payload of its
/// [`child_signal`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildEnd {
    /// Its result.
    Completed(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `cancelled` or the failure kind, and a message.
    Failed {
        /// `cancelled`, or the failure kind's name.
        kind: String,
        /// What happened.
        message: String,
        /// For a workflow error: its code (absent before format 4).
        #[serde(default)]
        code: Option<String>,
        /// For a workflow error: its details.
        #[serde(default, with = "serde_bytes")]
        details: Option<Vec<u8>>,
    },
}

impl ChildEnd {
    /// The end `outcome` gives a child.
    pub fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Completed(out) => ChildEnd::Completed(out.clone()),
            Outcome::Failed(f) => ChildEnd::Failed {
                kind: f.kind.as_str().into(),
                message: f.message.clone(),
                code: f.workflow_code().map(str::to_string),
                details: f.details.clone(),
            },
            Outcome::Cancelled => ChildEnd::Failed {
                kind: "cancelled".into(),
                message: "the child execution was cancelled".into(),
                code: None,
                details: None,
            },
        }
    }
}

impl ExecutionRecord {
    /// Ended, or suspended until someone else acts (a signal, a consumer):
    /// the point past which a host makes no progress on its own.
    pub fn is_settled(&self) -> bool {
        self.status.is_terminal()
            || (self.status == Status::Suspended
                && self.wait.as_ref().is_some_and(Wait::needs_outside))
    }

    /// A new, not yet run execution.
    pub fn new(
        id: ExecutionId,
        workflow: String,
        digest: Digest,
        input: Vec<u8>,
        now_ms: u64,
    ) -> Self {
        Self {
            id,
            workflow,
            digest,
            input,
            seed: rand::random(),
            status: Status::Suspended,
            wait: Some(Wait::Ready),
            outcome: None,
            journal_len: 0,
            invocations: 0,
            lease: None,
            last_token: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            stream: None,
            parent: None,
            trace: None,
        }
    }
}

impl ExecutionRecord {
    /// Leases the execution to `owner` for `ttl` from `now_ms`, as an
    /// acquire does: a new token, running, one more invocation. Returns
    /// the lease. A new record leased so before it is created is stored
    /// running and held (see [`crate::store::Store::create_execution`]),
    /// and needs no acquire before its first invocation.
    pub fn take_lease(&mut self, owner: &str, ttl: std::time::Duration, now_ms: u64) -> Lease {
        self.last_token += 1;
        let lease = Lease {
            owner: owner.to_string(),
            token: self.last_token,
            expires_at_ms: now_ms + ttl.as_millis() as u64,
        };
        self.lease = Some(lease.clone());
        self.status = Status::Running;
        self.wait = None;
        self.invocations += 1;
        self.updated_at_ms = now_ms;
        lease
    }
}

/// A signal sent to an execution, as buffered by the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRecord {
    /// Position among all signals sent to this execution.
    pub seq: u64,
    /// The signal's name, which `await-signal` waits for.
    pub name: String,
    /// The payload the sender gave (MessagePack), handed to the guest as is.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A consumer of an execution's output stream. Consumers pace a streaming
/// execution (see [`StreamPolicy`]); a session is live until it is closed
/// or goes unused for the session TTL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerSession {
    /// Session id, chosen by the host.
    pub id: String,
    /// The highest offset the consumer has read, if any.
    pub acked: Option<u64>,
    /// Last time the consumer read or said it is there, ms since the Unix epoch.
    pub last_access_ms: u64,
    /// Closed by the consumer: it takes no more reads.
    pub closed: bool,
}

impl ConsumerSession {
    /// Whether the session still paces the stream at `now_ms`.
    pub fn is_live(&self, ttl_ms: u64, now_ms: u64) -> bool {
        !self.closed && self.last_access_ms.saturating_add(ttl_ms) > now_ms
    }
}

/// Everything an invocation needs, read in one store round trip.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The record.
    pub record: ExecutionRecord,
    /// The whole journal.
    pub journal: Vec<Entry>,
    /// Every signal sent so far.
    pub signals: Vec<SignalRecord>,
}
