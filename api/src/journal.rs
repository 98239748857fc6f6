//! The journal's documents: its entries and pages, and how to page it.

use serde::{Deserialize, Serialize};

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// A page of a journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}
