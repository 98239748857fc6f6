//! Listing executions through the stores' indexes: the query, the cursor,
//! and the merge both backends share.
//!
//! Each backend keeps, in the write that changes an execution's status,
//! an index entry `(time of the change, id)` under its status and under its
//! workflow and status (the Redis store splits each into buckets, see
//! `redis/index/`). A listing reads one sorted range per index list it
//! needs (one per status and bucket), each at most a page long, and
//! merges them here: the cost is the page's, times the lists merged, plus
//! one seek each, however many executions there are.
//!
//! The order is by the time of the last status change, then by id, so a
//! cursor (the last entry of a page) is a position that stays valid while
//! executions change: newest first, one that changes status between pages
//! moves to the front and is not listed twice; one that does not change
//! keeps its place and is not missed. (Oldest first, one that changes
//! moves to the end, where a later page may list it again.)

use crate::execution::{ExecutionRecord, Status};
use crate::ids::ExecutionId;

/// Newest or oldest first, by the time of the last status change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Most recently changed first (the default).
    #[default]
    NewestFirst,
    /// Least recently changed first (what retention and the sweep read).
    OldestFirst,
}

/// A position in a listing: the last execution of the page before.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListCursor {
    /// When that execution last changed status, µs since the Unix epoch.
    /// (The embedded store keeps ms; the Redis store numbers the changes of
    /// each index bucket in µs, strictly increasing.)
    pub changed_at_us: u64,
    /// Its id.
    pub id: ExecutionId,
}

impl ListCursor {
    /// The cursor as the API shows it: `<µs>-<id>`.
    pub fn encode(&self) -> String {
        format!("{}-{}", self.changed_at_us, self.id)
    }

    /// A cursor that [`ListCursor::encode`] made.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('-')?;
        Some(Self {
            changed_at_us: ms.parse().ok()?,
            id: ExecutionId::new(id).ok()?,
        })
    }
}

/// What to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only executions with this status.
    pub status: Option<Status>,
    /// Only executions of this workflow (deployment name).
    pub workflow: Option<String>,
    /// Only executions whose last status change is at or after this time
    /// (ms since the Unix epoch).
    pub changed_since_ms: Option<u64>,
    /// Only executions whose last status change is before this time.
    pub changed_before_ms: Option<u64>,
    /// Resume after this position (a previous page's `next`).
    pub after: Option<ListCursor>,
    /// Newest or oldest first.
    pub order: Order,
    /// Most executions on the page (at least 1).
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            status: None,
            workflow: None,
            changed_since_ms: None,
            changed_before_ms: None,
            after: None,
            order: Order::NewestFirst,
            limit: 100,
        }
    }
}

impl ListQuery {
    /// The statuses whose index lists the query reads.
    pub(crate) fn statuses(&self) -> Vec<Status> {
        match self.status {
            Some(s) => vec![s],
            None => Status::ALL.to_vec(),
        }
    }

    /// What retention reads: for each terminal status, up to `limit` of
    /// its executions whose status last changed before `before_ms`, oldest
    /// first.
    pub(crate) fn expired(before_ms: u64, limit: usize) -> [ListQuery; 3] {
        [Status::Completed, Status::Failed, Status::Cancelled].map(|status| ListQuery {
            status: Some(status),
            changed_before_ms: Some(before_ms),
            order: Order::OldestFirst,
            limit,
            ..ListQuery::default()
        })
    }

    /// The sorted index lists the query reads in a store that keeps the
    /// embedded store's index (`(scope, changed at (ms), id)` keys), each
    /// with the range of its keys to read: the time range, narrowed to the
    /// cursor. Lists the cursor has passed entirely are left out.
    pub(crate) fn index_ranges(&self) -> Vec<IndexRange<'_>> {
        let mut out = Vec::new();
        for status in self.statuses() {
            let scope = index_scope(status, self.workflow.as_deref());
            let mut lo = (self.changed_since_ms.unwrap_or(0), "");
            let mut hi = (self.changed_before_ms.unwrap_or(u64::MAX), "");
            // Seek to the cursor: a deep page costs what the first does.
            if let Some(c) = &self.after {
                let at = (c.changed_at_us / 1000, c.id.as_str());
                match self.order {
                    Order::NewestFirst => hi = hi.min(at),
                    Order::OldestFirst => lo = lo.max(at),
                }
            }
            if lo < hi {
                out.push(IndexRange {
                    status,
                    scope,
                    lo,
                    hi,
                });
            }
        }
        out
    }

    /// The first `limit` entries of one index list (read in the query's
    /// order) that the query admits.
    pub(crate) fn first_admitted<E>(
        &self,
        limit: usize,
        rows: impl Iterator<Item = Result<ListCursor, E>>,
    ) -> Result<Vec<ListCursor>, E> {
        let mut list = Vec::new();
        for row in rows {
            let e = row?;
            if self.admits(&e) {
                list.push(e);
                if list.len() == limit {
                    break;
                }
            }
        }
        Ok(list)
    }

    /// Whether index entry `e` is inside the time range and past the
    /// cursor.
    pub(crate) fn admits(&self, e: &ListCursor) -> bool {
        self.changed_since_ms
            .is_none_or(|t| e.changed_at_us >= t.saturating_mul(1000))
            && self
                .changed_before_ms
                .is_none_or(|t| e.changed_at_us < t.saturating_mul(1000))
            && self.after.as_ref().is_none_or(|c| match self.order {
                Order::NewestFirst => e < c,
                Order::OldestFirst => e > c,
            })
    }
}

/// The scope of an index list: every execution with `status` (`s<code>`),
/// or those of one workflow with it (`w<code>:<workflow>`).
pub(crate) fn index_scope(status: Status, workflow: Option<&str>) -> String {
    match workflow {
        Some(w) => format!("w{}:{w}", status.code()),
        None => format!("s{}", status.code()),
    }
}

/// One index list a query reads ([`ListQuery::index_ranges`]): its scope
/// and its keys from `lo` (included) to `hi` (excluded), as `(changed at
/// (ms), id)`.
pub(crate) struct IndexRange<'q> {
    /// The status of the executions the list holds.
    pub status: Status,
    /// The list's scope ([`index_scope`]).
    pub scope: String,
    /// The first key in range.
    pub lo: (u64, &'q str),
    /// The first key past the range.
    pub hi: (u64, &'q str),
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionPage {
    /// The executions, in the query's order.
    pub executions: Vec<ExecutionRecord>,
    /// Where the next page starts, when there may be more.
    pub next: Option<ListCursor>,
    /// How many index entries the page read (records fetched); what the
    /// sweep's cost is measured by.
    pub read: usize,
}

/// Merges sorted index lists (each already in `order` and admitted by the
/// query) into the first `limit` entries overall, without duplicates.
pub(crate) fn merge(lists: Vec<Vec<ListCursor>>, order: Order, limit: usize) -> Vec<ListCursor> {
    let mut all: Vec<ListCursor> = lists.into_iter().flatten().collect();
    all.sort_unstable();
    all.dedup();
    if order == Order::NewestFirst {
        all.reverse();
    }
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64, id: &str) -> ListCursor {
        ListCursor {
            changed_at_us: us,
            id: ExecutionId::new(id).unwrap(),
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_what_they_did_not_make() {
        let c = at(17, "abc-def");
        assert_eq!(ListCursor::parse(&c.encode()), Some(c));
        assert_eq!(ListCursor::parse("x-abc"), None);
        assert_eq!(ListCursor::parse("17"), None);
    }

    #[test]
    fn merging_takes_the_first_entries_of_every_list_in_order() {
        let lists = vec![
            vec![at(5, "a"), at(3, "a2"), at(1, "a3")],
            vec![at(4, "b"), at(3, "b2")],
        ];
        let newest = merge(lists.clone(), Order::NewestFirst, 3);
        assert_eq!(newest, vec![at(5, "a"), at(4, "b"), at(3, "b2")]);
        let mut oldest: Vec<_> = lists
            .into_iter()
            .map(|mut l| {
                l.reverse();
                l
            })
            .collect();
        oldest.push(vec![at(1, "a3")]);
        assert_eq!(
            merge(oldest, Order::OldestFirst, 2),
            vec![at(1, "a3"), at(3, "a2")]
        );
    }

    #[test]
    fn the_cursor_excludes_itself_and_what_came_before() {
        let q = ListQuery {
            after: Some(at(3, "m")),
            ..ListQuery::default()
        };
        assert!(q.admits(&at(3, "l")));
        assert!(!q.admits(&at(3, "m")));
        assert!(!q.admits(&at(3, "n")));
        assert!(!q.admits(&at(4, "a")));
        let q = ListQuery {
            order: Order::OldestFirst,
            changed_before_ms: Some(1),
            ..q
        };
        assert!(q.admits(&at(3, "n")));
        assert!(!q.admits(&at(1000, "z")));
    }
}
