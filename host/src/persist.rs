//! The encoding of everything written to a store.
//!
//! Every value is MessagePack (rmp-serde) behind a one-byte format version, so
//! the next release can still read what this one wrote: a reader that meets a
//! version it does not know fails with a clear error instead of misreading.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// The format version written by this release. Version 5 keeps a tool
/// call's input whole in its entry when it is shorter than a digest
/// ([`crate::journal::InputKey`]); version 4 gives a
/// workflow's failure (and a child's end) a code and details; version 3 journals an
/// emitted item by its digest (`EntryKind::Emitted`; the item is in the
/// output stream) and adds stream policies and consumer sessions; version 2
/// writes byte strings as MessagePack binaries; version 1 wrote them as
/// arrays of numbers. All read with the same types.
pub const FORMAT_VERSION: u8 = 5;

/// The oldest format version this release reads.
pub const OLDEST_READABLE: u8 = 1;

/// Encodes `value` for storage.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Encoding plain data into a Vec cannot fail: no I/O, no unsupported types.
    rmp_serde::encode::write(&mut out, value).expect("encoding persisted value");
    out
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((v, body)) if (OLDEST_READABLE..=FORMAT_VERSION).contains(v) => {
            rmp_serde::from_slice(body)
                .map_err(|e| StoreError::Corrupt(format!("undecodable value: {e}")))
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "stored value has format version {v}; this release reads versions \
             {OLDEST_READABLE} to {FORMAT_VERSION}"
        ))),
        None => Err(StoreError::Corrupt("empty stored value".into())),
    }
}

mod entry;
#[cfg(test)]
pub(crate) mod golden;

pub use entry::{LentJournal, decode_entry, decode_entry_owned};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Digest;
    use crate::journal::{Entry, EntryKind, ToolFailure};

    #[test]
    fn round_trip_and_version_check() {
        let e = Entry {
            at_ms: 7,
            duration_us: 3,
            kind: EntryKind::Random { value: 42 },
        };
        let bytes = encode(&e);
        assert_eq!(decode::<Entry>(&bytes).unwrap(), e);
        let mut future = bytes.clone();
        future[0] = 99;
        let err = decode::<Entry>(&future).unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
        assert!(decode::<Entry>(&[]).is_err());
    }

    /// Version 1 wrote byte strings as arrays of numbers; they still read.
    #[test]
    fn version_1_still_reads() {
        #[derive(serde::Serialize)]
        enum V1Kind {
            #[allow(dead_code)]
            Tool {
                category: String,
                name: String,
                input_digest: [u8; 32],
                input_len: u64,
                result: Result<Vec<u8>, ToolFailure>,
            },
        }
        #[derive(serde::Serialize)]
        struct V1Entry {
            at_ms: u64,
            duration_us: u64,
            kind: V1Kind,
        }
        let digest = Digest::of(b"in");
        let mut bytes = vec![1u8];
        rmp_serde::encode::write(
            &mut bytes,
            &V1Entry {
                at_ms: 5,
                duration_us: 6,
                kind: V1Kind::Tool {
                    category: "c".into(),
                    name: "n".into(),
                    input_digest: digest.0,
                    input_len: 2,
                    result: Ok(vec![1, 200, 3]),
                },
            },
        )
        .unwrap();
        let entry: Entry = decode(&bytes).unwrap();
        assert_eq!(
            entry.kind,
            EntryKind::Tool {
                category: "c".into(),
                name: "n".into(),
                input: digest.into(),
                input_len: 2,
                result: Ok(bytes::Bytes::from_static(&[1, 200, 3])),
            }
        );
        // The current version is smaller: bytes are one binary string.
        let now = encode(&entry);
        assert!(now.len() < bytes.len(), "{} vs {}", now.len(), bytes.len());
    }
}
