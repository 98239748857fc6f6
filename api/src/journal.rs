//! The journal's documents: its entries and pages, and how to page it.

use serde::{Deserialize, Serialize};

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryView {
    /// Position in the journal.
    pub index: u64,
    /// `tool`, `sleep`, `signal`, `now`, `random`, `emit`, `checkpoint`,
    /// `start` (work started without waiting: a tool call, timer, signal
    /// wait or child; this entry's index is its handle) or `completion`
    /// (its detail begins `#<handle>:`, the index of the start it
    /// completes).
    pub kind: String,
    /// Tool address and error, timer, signal name, or value.
    pub detail: String,
    /// When it was recorded, ms since the Unix epoch.
    pub at_ms: u64,
    /// How long the step took, µs.
    pub duration_us: u64,
    /// Size of the recorded value, bytes.
    pub size: u64,
    /// With `?values=true`, for calls that have one: the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<ValueView>,
    /// With `?values=true`, for entries that record one: the value (a
    /// tool's result or its error `{code, message, details}`, a signal's
    /// payload, an item, a time or a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ValueView>,
}

/// A page of a journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JournalPage {
    /// Entries from `after` on.
    pub entries: Vec<EntryView>,
    /// Entries in the whole journal.
    pub total: u64,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// Paging of a journal.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct JournalParams {
    /// First index to return (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Entries per page (default 100, at most 1000).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Show each entry's input and value (see `ValueView`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub values: bool,
}

/// A value in the journal (`?values=true`): decoded from MessagePack to
/// JSON where it is MessagePack, hex where it is not, and only its size
/// and digest where it is not shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValueView {
    /// Its size in bytes.
    pub size: u64,
    /// sha256 of its bytes (hex), when it is a payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The value as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Its bytes in hex, when they are not MessagePack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    /// The value itself is not shown: it is over 64 KiB, kept outside the
    /// journal (a large stored result, an item of the output stream), or
    /// not kept at all (a tool's or a child's input: the journal keeps its
    /// digest, which replay compares).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omitted: bool,
}
