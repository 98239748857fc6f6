//! An output stream's documents: reading items, their batches and end, and
//! the consumer sessions that pace it.

use serde::{Deserialize, Serialize};

use crate::{ErrorView, ExecutionStatus};

/// Reading an execution's output stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct ItemsParams {
    /// Return items with an offset above this one (default: from the
    /// first item, offset 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Items per reply (default 100, at most 1000).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
    /// With no item to return yet, wait up to this long (`500ms`, `10s`)
    /// for one or for the end; capped below the request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    /// The consumer session this read belongs to: reading records that the
    /// consumer has seen every item up to `after`. A read of a streaming
    /// execution without one opens a session (its id is in the reply).
    #[cfg_attr(feature = "openapi", param(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Watch without being a consumer: no session is opened or touched, so
    /// the read neither paces the stream nor keeps it from being
    /// abandoned (a dashboard). Not with `session`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observe: bool,
}

/// One item of an output stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemView {
    /// Its position in the stream: 0 for the first item emitted.
    pub offset: u64,
    /// The item, as JSON (`{"hex": ...}` if JSON cannot hold it).
    pub item: serde_json::Value,
}

/// How a stream ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamEnd {
    /// `completed`, `failed` or `cancelled`.
    pub status: ExecutionStatus,
    /// Why it failed, when `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
}

/// A batch of an output stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemsBatch {
    /// Items after `after`, in order.
    pub items: Vec<ItemView>,
    /// Pass as `after` for the next batch: the last offset returned (or the
    /// `after` given, if none); absent while nothing has been read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
    /// Items the execution has emitted so far.
    pub count: u64,
    /// Set once the execution has ended and this batch holds the last item:
    /// nothing more will come. Every item comes before the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<StreamEnd>,
    /// The consumer session of this read, for a streaming execution: pass
    /// it as `session` with the next read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// A consumer session of an output stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    /// Session id: pass it as `session` when reading.
    pub session: String,
    /// The highest offset the consumer has read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<u64>,
    /// Last read, ms since the Unix epoch.
    pub last_access_ms: u64,
    /// Closed by the consumer.
    pub closed: bool,
    /// Still pacing the stream: not closed, and used within the TTL.
    pub live: bool,
}

/// The consumer sessions of an execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    /// Every session, closed and expired ones included.
    pub sessions: Vec<SessionView>,
}

/// The header that carries the consumer session of an item read.
pub const SESSION_HEADER: &str = "reprise-session";
