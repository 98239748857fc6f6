//! The encoding of everything written to a store.
//!
//! Every value is MessagePack (rmp-serde) behind a one-byte format version, so
//! the next release can still read what this one wrote: a reader that meets a
//! version it does not know fails with a clear error instead of misreading.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// The format version written by this release.
pub const FORMAT_VERSION: u8 = 1;

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
        Some((&FORMAT_VERSION, body)) => rmp_serde::from_slice(body)
            .map_err(|e| StoreError::Corrupt(format!("undecodable value: {e}"))),
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "stored value has format version {v}; this release reads version {FORMAT_VERSION}"
        ))),
        None => Err(StoreError::Corrupt("empty stored value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, EntryKind};

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
}
