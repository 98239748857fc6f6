//! Large values in the Redis store: a tool result above
//! `blob_threshold` is uploaded once under its sha256 (in chunks, so the
//! host never holds two copies), counted by reference, fetched in chunks
//! on replay and checked against its digest.

use super::reply::Reply;
use super::scripts::scripts;
use super::{RedisStore, redis_err};
use crate::ids::Digest;
use crate::journal::{Entry, EntryKind};
use crate::persist::encode;
use crate::store::StoreError;

impl RedisStore {
    /// Takes a reference to `bytes` stored under `digest`, uploading them in
    /// chunks if no identical value is stored yet.
    pub(super) async fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let (refs, blob) = self.blob_keys(digest);
        let exists: i64 = scripts()
            .blob_ref
            .key(&refs)
            .key(&blob)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if exists == 1 {
            return Ok(());
        }
        let tmp = format!(
            "{}:blobtmp:{{{}}}:{}",
            self.options.prefix,
            digest.to_hex(),
            hex::encode(rand::random::<[u8; 8]>())
        );
        let upload = async {
            for chunk in bytes.chunks(self.options.blob_chunk.max(1)) {
                redis::pipe()
                    .cmd("APPEND")
                    .arg(&tmp)
                    .arg(chunk)
                    .ignore()
                    // An upload abandoned by a crashed host expires.
                    .cmd("PEXPIRE")
                    .arg(&tmp)
                    .arg(3_600_000)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_err)?;
            }
            let mut reply = Reply::new(
                scripts()
                    .blob_commit
                    .key(&tmp)
                    .key(&blob)
                    .arg(bytes.len())
                    .invoke_async(&mut conn)
                    .await
                    .map_err(redis_err)?,
                "blob commit",
            )?;
            match reply.tag.as_str() {
                "ok" => Ok(()),
                _ => {
                    let _ = reply.rest.next();
                    Err(StoreError::Unavailable(format!(
                        "upload of stored value {digest} was cut short"
                    )))
                }
            }
        };
        match upload.await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Give the reference back (best effort: if Redis is gone
                // this fails too and the count stays one too high, which
                // keeps a value alive, never loses one).
                let _ = self.unref_blobs(&[digest.to_hex()]).await;
                Err(e)
            }
        }
    }

    pub(super) async fn unref_blobs(&self, digests: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        for hex in digests {
            let digest = Digest::parse(hex)
                .ok_or_else(|| StoreError::Corrupt(format!("bad stored value digest {hex:?}")))?;
            let (refs, blob) = self.blob_keys(&digest);
            let _: i64 = scripts()
                .blob_unref
                .key(&refs)
                .key(&blob)
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err)?;
        }
        Ok(())
    }

    /// Gives back the reference an append took for a value it did not
    /// write. Best effort: a failure leaves the value alive, never loses it.
    pub(super) async fn release_failed_refs(&self, stored: &[Digest]) {
        if stored.is_empty() {
            return;
        }
        let hex: Vec<String> = stored.iter().map(Digest::to_hex).collect();
        if let Err(e) = self.unref_blobs(&hex).await {
            tracing::warn!("cannot release references to stored values {hex:?}: {e}");
        }
    }

    /// For a successful tool result over the blob threshold (of a
    /// blocking call, or a started call's completion): stores the value
    /// once under its digest and returns the digest and the journal entry
    /// that refers to it.
    pub(super) async fn store_large_result(
        &self,
        entry: &Entry,
    ) -> Result<Option<(Digest, Vec<u8>)>, StoreError> {
        let (tool, completed) = match &entry.kind {
            EntryKind::Completed {
                handle,
                attempts,
                value,
            } => (&**value, Some((*handle, *attempts))),
            kind => (kind, None),
        };
        let EntryKind::Tool {
            category,
            name,
            input,
            input_len,
            result: Ok(value),
        } = tool
        else {
            return Ok(None);
        };
        if value.len() <= self.options.blob_threshold {
            return Ok(None);
        }
        let digest = Digest::of(value);
        self.put_blob(&digest, value).await?;
        let stored = EntryKind::ToolStored {
            category: category.clone(),
            name: name.clone(),
            input: *input,
            input_len: *input_len,
            result_digest: digest,
            result_len: value.len() as u64,
        };
        let kind = match completed {
            Some((handle, attempts)) => EntryKind::Completed {
                handle,
                attempts,
                value: Box::new(stored),
            },
            None => stored,
        };
        let bytes = encode(&Entry {
            at_ms: entry.at_ms,
            duration_us: entry.duration_us,
            kind,
        });
        Ok(Some((digest, bytes)))
    }

    /// Reads stored value `digest` of `len` bytes in chunks, and checks its
    /// digest.
    pub(super) async fn fetch_blob(
        &self,
        digest: &Digest,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let (_, blob) = self.blob_keys(digest);
        let mut conn = self.conn();
        let len = len as usize;
        let mut out = Vec::with_capacity(len);
        let chunk = self.options.blob_chunk.max(1);
        while out.len() < len {
            let end = (out.len() + chunk).min(len) - 1;
            let piece: Vec<u8> = redis::cmd("GETRANGE")
                .arg(&blob)
                .arg(out.len())
                .arg(end)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if piece.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "stored value {digest} is missing or shorter than its {len} bytes"
                )));
            }
            out.extend_from_slice(&piece);
        }
        if Digest::of(&out) != *digest {
            return Err(StoreError::Corrupt(format!(
                "stored value {digest} does not match its digest"
            )));
        }
        Ok(out)
    }
}
