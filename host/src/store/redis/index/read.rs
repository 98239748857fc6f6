//! The index's read side: listing executions through the lists (merging
//! the buckets, checking each entry against its record, dropping stale
//! ones) and counting them.

use std::collections::HashMap;

use futures_util::future::try_join_all;

use super::{BUCKETS, GRACE_MS, List};
use crate::execution::{ExecutionRecord, Status};
use crate::ids::ExecutionId;
use crate::store::listing::{ExecutionPage, ListCursor, ListQuery, Order, merge};
use crate::store::redis::{RedisStore, redis_err};
use crate::store::{StoreError, now_ms};

impl RedisStore {
    /// Up to `want` entries of one list the query admits, in its order.
    async fn range(
        &self,
        list: &List,
        query: &ListQuery,
        want: usize,
    ) -> Result<Vec<(ListCursor, List)>, StoreError> {
        // Score bounds in µs: the time range, narrowed to the cursor's time
        // (inclusive: entries of that time on the near side of its id still
        // come; `admits` drops the rest).
        let mut lo = query.changed_since_ms.map(|t| t.saturating_mul(1000));
        let mut hi = query
            .changed_before_ms
            .map(|t| t.saturating_mul(1000).saturating_sub(1));
        if let Some(c) = &query.after {
            let at = c.changed_at_us;
            match query.order {
                Order::NewestFirst => hi = Some(hi.map_or(at, |h| h.min(at))),
                Order::OldestFirst => lo = Some(lo.map_or(at, |l| l.max(at))),
            }
        }
        let lo = lo.map_or("-inf".into(), |t| t.to_string());
        let hi = hi.map_or("+inf".into(), |t| t.to_string());
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(&list.key);
            match query.order {
                Order::NewestFirst => cmd.arg(&hi).arg(&lo).arg("BYSCORE").arg("REV"),
                Order::OldestFirst => cmd.arg(&lo).arg(&hi).arg("BYSCORE"),
            };
            let batch = want.max(16);
            cmd.arg("LIMIT").arg(offset).arg(batch).arg("WITHSCORES");
            let got: Vec<(String, f64)> =
                cmd.query_async(&mut self.conn()).await.map_err(redis_err)?;
            let n = got.len();
            for (member, score) in got {
                let Ok(id) = ExecutionId::new(member) else {
                    continue;
                };
                let e = ListCursor {
                    changed_at_us: score as u64,
                    id,
                };
                if query.admits(&e) {
                    out.push((e, list.clone()));
                    if out.len() == want {
                        return Ok(out);
                    }
                }
            }
            // Fewer than asked: the list is read to its end.
            if n < batch {
                return Ok(out);
            }
            offset += batch;
        }
    }

    /// Lists a page (see [`Store::list_page`]).
    pub(in crate::store::redis) async fn page(
        &self,
        query: &ListQuery,
    ) -> Result<ExecutionPage, StoreError> {
        let limit = query.limit.max(1);
        let mut lists = Vec::new();
        for status in query.statuses() {
            for b in 0..BUCKETS {
                let key = match &query.workflow {
                    Some(w) if status != Status::Running => self.workflow_key(b, status, w),
                    _ => self.status_key(b, status),
                };
                lists.push(List { key, status });
            }
        }
        let ranges = try_join_all(lists.iter().map(|l| self.range(l, query, limit + 1))).await?;
        let mut from: HashMap<ListCursor, List> = HashMap::new();
        let cursors = ranges
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|(c, l)| {
                        from.insert(c.clone(), l);
                        c
                    })
                    .collect()
            })
            .collect();
        let mut found = merge(cursors, query.order, limit + 1);
        let more = found.len() > limit;
        found.truncate(limit);
        let records = self.records(found.iter().map(|e| &e.id)).await?;
        let read = records.len();
        let mut executions = Vec::new();
        for (e, rec) in found.iter().zip(records) {
            let list = &from[e];
            match rec {
                Some(rec) if rec.status == list.status => {
                    if query.workflow.as_ref().is_none_or(|w| *w == rec.workflow) {
                        executions.push(rec);
                    }
                }
                _ => self.drop_stale(e, list).await?,
            }
        }
        Ok(ExecutionPage {
            executions,
            next: if more { found.pop() } else { None },
            read,
        })
    }

    /// The records of `ids` (`None` for one that is gone): plain `HGETALL`
    /// and `LLEN` in a pipeline per record (one slot each), all in flight
    /// at once, which costs Redis less than a script each.
    async fn records(
        &self,
        ids: impl Iterator<Item = &ExecutionId>,
    ) -> Result<Vec<Option<ExecutionRecord>>, StoreError> {
        try_join_all(ids.map(|id| {
            let mut pipe = redis::pipe();
            pipe.cmd("HGETALL")
                .arg(self.key("x", id))
                .cmd("LLEN")
                .arg(self.key("j", id));
            let mut conn = self.conn();
            async move {
                let (fields, len): (HashMap<String, Vec<u8>>, u64) =
                    pipe.query_async(&mut conn).await.map_err(redis_err)?;
                if fields.is_empty() {
                    return Ok(None);
                }
                crate::store::redis::reply::record_from(fields, len).map(Some)
            }
        }))
        .await
    }

    /// A stale entry (its execution has another status, or is gone):
    /// removed once older than [`GRACE_MS`], if it is still the one read.
    async fn drop_stale(&self, e: &ListCursor, list: &List) -> Result<(), StoreError> {
        if e.changed_at_us / 1000 + GRACE_MS > now_ms() {
            return Ok(());
        }
        crate::store::redis::scripts::scripts()
            .index_drop
            .key(&list.key)
            .arg(e.id.as_str())
            .arg(e.changed_at_us)
            .invoke_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    /// Executions per status: the sizes of the status lists (one `ZCARD`
    /// per list, each routed to its bucket's node).
    pub(in crate::store::redis) async fn counts(&self) -> Result<HashMap<Status, u64>, StoreError> {
        let sizes = try_join_all(Status::ALL.into_iter().flat_map(|status| {
            (0..BUCKETS).map(move |b| {
                let mut conn = self.conn();
                let key = self.status_key(b, status);
                async move {
                    redis::cmd("ZCARD")
                        .arg(key)
                        .query_async::<u64>(&mut conn)
                        .await
                        .map(|n| (status, n))
                }
            })
        }))
        .await
        .map_err(redis_err)?;
        let mut out = HashMap::new();
        for (status, n) in sizes {
            if n > 0 {
                *out.entry(status).or_insert(0) += n;
            }
        }
        Ok(out)
    }
}
