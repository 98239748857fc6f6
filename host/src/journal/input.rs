//! What a tool call's entry keeps of its input.
//!
//! Replay has to tell whether the guest makes the call the journal
//! recorded, input included (invariant 1), and every resume replays every
//! entry. An entry used to keep the input's SHA-256 only, so each replayed
//! call hashed its input again: the largest single cost of a replayed entry
//! on the host after wasmtime's own call path. Most inputs of a workflow's
//! steps are a few bytes, shorter than their digest; such an input is kept
//! as it is and compared byte for byte, with no hashing, and a longer one
//! keeps its digest. Either way an entry keeps at most 32 bytes of it, so
//! a journal is never larger than before (it is smaller, for short
//! inputs).

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::Digest;

/// A call's input as its journal entry keeps it: the input itself when it
/// is at most [`InputKey::INLINE_MAX`] bytes, else its SHA-256.
///
/// Written as one MessagePack binary: 32 bytes are a digest, fewer are the
/// input. Entries of format versions 1 to 4 always hold a digest, and still
/// match their call.
///
/// Two keys are equal when they name the same input, whichever form each
/// keeps: a key kept whole equals its input's digest (comparing the two
/// forms hashes the short input; keys of one form compare their bytes).
#[derive(Clone, Copy, Eq)]
pub struct InputKey {
    /// How many bytes of `bytes` are used: the input's length when it is
    /// kept whole, [`DIGEST_LEN`] for a digest.
    len: u8,
    bytes: [u8; DIGEST_LEN],
}

const DIGEST_LEN: usize = 32;

impl InputKey {
    /// The longest input kept whole: one byte under a digest, so the two
    /// are told apart by length.
    pub const INLINE_MAX: usize = DIGEST_LEN - 1;

    /// The key of `input`.
    pub fn of(input: &[u8]) -> Self {
        if input.len() <= Self::INLINE_MAX {
            let mut bytes = [0; DIGEST_LEN];
            bytes[..input.len()].copy_from_slice(input);
            Self {
                len: input.len() as u8,
                bytes,
            }
        } else {
            Self::from(Digest::of(input))
        }
    }

    /// Whether `input` is the input this key was made of (or, for a
    /// digest, one with the same SHA-256). Hashes only for a digest.
    pub fn matches(&self, input: &[u8]) -> bool {
        match self.inline() {
            Some(kept) => kept == input,
            None => Digest::of(input).0 == self.bytes,
        }
    }

    /// The input, when it is kept whole.
    pub fn inline(&self) -> Option<&[u8]> {
        (usize::from(self.len) < DIGEST_LEN).then(|| &self.bytes[..usize::from(self.len)])
    }

    /// The input's SHA-256 (computed, for an input kept whole): what error
    /// messages and the journal's API show, whichever form is kept.
    pub fn digest(&self) -> Digest {
        match self.inline() {
            Some(input) => Digest::of(input),
            None => Digest(self.bytes),
        }
    }

    /// The key as stored: the input, or the digest's 32 bytes.
    fn stored(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Reads a stored key: at most 32 bytes, as [`InputKey`] documents.
    pub(crate) fn from_stored(stored: &[u8]) -> Option<Self> {
        if stored.len() > DIGEST_LEN {
            return None;
        }
        let mut bytes = [0; DIGEST_LEN];
        bytes[..stored.len()].copy_from_slice(stored);
        Some(Self {
            len: stored.len() as u8,
            bytes,
        })
    }
}

impl PartialEq for InputKey {
    fn eq(&self, other: &Self) -> bool {
        match (self.inline(), other.inline()) {
            (Some(input), None) => other.matches(input),
            (None, Some(input)) => self.matches(input),
            _ => self.stored() == other.stored(),
        }
    }
}

impl From<Digest> for InputKey {
    fn from(digest: Digest) -> Self {
        Self {
            len: DIGEST_LEN as u8,
            bytes: digest.0,
        }
    }
}

impl fmt::Debug for InputKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inline() {
            Some(input) => write!(f, "input:{}", hex::encode(input)),
            None => Digest(self.bytes).fmt(f),
        }
    }
}

impl Serialize for InputKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.stored())
    }
}

impl<'de> Deserialize<'de> for InputKey {
    /// Reads a binary, and also the array of 32 numbers format version 1
    /// wrote for a digest.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = InputKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an input of at most 31 bytes or a 32-byte digest")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<InputKey, E> {
                InputKey::from_stored(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InputKey, A::Error> {
                let mut bytes = [0; DIGEST_LEN];
                let mut len = 0;
                while let Some(b) = seq.next_element::<u8>()? {
                    if len == DIGEST_LEN {
                        return Err(de::Error::invalid_length(len + 1, &self));
                    }
                    bytes[len] = b;
                    len += 1;
                }
                Ok(InputKey {
                    len: len as u8,
                    bytes,
                })
            }
        }

        d.deserialize_bytes(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{decode, encode};

    #[test]
    fn short_inputs_are_kept_and_long_ones_hashed() {
        for len in [0, 1, 16, InputKey::INLINE_MAX] {
            let input = vec![7u8; len];
            let key = InputKey::of(&input);
            assert_eq!(key.inline(), Some(&input[..]), "{len} bytes");
            assert!(key.matches(&input));
            assert_eq!(key.digest(), Digest::of(&input));
        }
        for len in [InputKey::INLINE_MAX + 1, 33, 4096] {
            let input = vec![7u8; len];
            let key = InputKey::of(&input);
            assert_eq!(key.inline(), None, "{len} bytes");
            assert_eq!(key, InputKey::from(Digest::of(&input)));
            assert!(key.matches(&input));
        }
    }

    #[test]
    fn another_input_does_not_match() {
        let short = InputKey::of(b"abc");
        assert!(!short.matches(b"abd"));
        assert!(!short.matches(b"ab"));
        assert!(!short.matches(b"abcd"));
        assert!(!short.matches(&[b'a'; 40]));
        let long = InputKey::of(&[1; 40]);
        assert!(!long.matches(&[1; 39]));
        assert!(!long.matches(b"abc"));
        // An input whose bytes are its own digest's is still told apart.
        let digest = Digest::of(b"abc");
        assert!(!InputKey::of(b"abc").matches(&digest.0));
    }

    /// A journal written before inputs were kept holds digests: a short
    /// input still matches its digest, and keys of either form are equal
    /// when they name the same input.
    #[test]
    fn a_digest_of_a_short_input_still_matches_it() {
        let old = InputKey::from(Digest::of(b"abc"));
        assert!(old.matches(b"abc"));
        assert!(!old.matches(b"abd"));
        assert_eq!(old.digest(), InputKey::of(b"abc").digest());
        assert_eq!(old, InputKey::of(b"abc"));
        assert_eq!(InputKey::of(b"abc"), old);
        assert_ne!(old, InputKey::of(b"abd"));
        assert_ne!(InputKey::of(b"abd"), old);
        assert_ne!(InputKey::of(b"abc"), InputKey::of(b"abcd"));
        assert_eq!(InputKey::of(&[2; 64]), InputKey::from(Digest::of(&[2; 64])));
        assert_ne!(InputKey::of(&[2; 64]), InputKey::of(&[2; 65]));
    }

    #[test]
    fn round_trips_through_the_store_encoding() {
        for input in [&b""[..], b"x", &[9; 31], &[9; 32], &[9; 500]] {
            let key = InputKey::of(input);
            assert_eq!(decode::<InputKey>(&encode(&key)).unwrap(), key);
        }
        // More than a digest's bytes is not a key.
        let mut too_long = vec![crate::persist::FORMAT_VERSION];
        rmp_serde::encode::write(&mut too_long, serde_bytes::Bytes::new(&[0; 33])).unwrap();
        assert!(decode::<InputKey>(&too_long).is_err());
    }
}
