//! The journal's hot read. Every resume decodes its whole journal, and
//! nearly every entry is a tool call that succeeded; through serde such an
//! entry costs a walk of visitors that moves the 176-byte `Entry` several
//! times. [`decode_entry`] reads that one shape directly with `rmp`'s
//! primitives, borrowing strings and bytes from the stored value and
//! allocating only what the `Entry` owns; [`decode_entry_owned`], given
//! bytes it may keep (a Redis reply's), makes them the result's and
//! allocates nothing.
//!
//! Serde ([`super::decode`]) stays the definition of the format: anything
//! the direct reader does not recognise exactly (another kind, a failed
//! call, an older format version, a field in another encoding, a byte left
//! over) goes through it, so the direct reader can only be faster, never
//! read differently. A test checks both agree on every golden entry.

use rmp::decode as rd;

use super::FORMAT_VERSION;
use crate::journal::{Entry, EntryKind, InputKey, ToolName};
use crate::store::StoreError;

/// Decodes a journal entry written by [`super::encode`].
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, StoreError> {
    match tool_entry(bytes) {
        Some((entry, result)) => Ok(entry.with_result(bytes[result..].to_vec())),
        None => super::decode(bytes),
    }
}

/// [`decode_entry`] of bytes the caller owns (a Redis reply's): a
/// successful call's result keeps their allocation, moved to its front,
/// so an entry costs no allocation of its own.
pub fn decode_entry_owned(mut bytes: Vec<u8>) -> Result<Entry, StoreError> {
    match tool_entry(&bytes) {
        Some((entry, result)) => {
            bytes.drain(..result);
            Ok(entry.with_result(bytes))
        }
        None => super::decode(&bytes),
    }
}

/// A successful tool call's entry, still without its result, and where
/// that result starts (it runs to the end); `None` for anything else.
fn tool_entry(bytes: &[u8]) -> Option<(ToolEntry, usize)> {
    let (&version, mut r) = bytes.split_first()?;
    // Version 1 wrote byte strings as arrays of numbers.
    if !(2..=FORMAT_VERSION).contains(&version) {
        return None;
    }
    let r = &mut r;
    if rd::read_array_len(r).ok()? != 3 {
        return None;
    }
    let at_ms: u64 = rd::read_int(r).ok()?;
    let duration_us: u64 = rd::read_int(r).ok()?;
    if rd::read_map_len(r).ok()? != 1 || text(r)? != "Tool" || rd::read_array_len(r).ok()? != 5 {
        return None;
    }
    let category = text(r)?;
    let name = text(r)?;
    let input = InputKey::from_stored(bytes_of(r)?)?;
    let input_len: u64 = rd::read_int(r).ok()?;
    if rd::read_map_len(r).ok()? != 1 || text(r)? != "Ok" {
        return None;
    }
    let result = bytes_of(r)?;
    if !r.is_empty() {
        return None;
    }
    let entry = ToolEntry {
        at_ms,
        duration_us,
        category: category.into(),
        name: name.into(),
        input,
        input_len,
    };
    Some((entry, bytes.len() - result.len()))
}

/// What a successful tool call's entry holds besides its result.
struct ToolEntry {
    at_ms: u64,
    duration_us: u64,
    category: ToolName,
    name: ToolName,
    input: InputKey,
    input_len: u64,
}

impl ToolEntry {
    fn with_result(self, result: Vec<u8>) -> Entry {
        Entry {
            at_ms: self.at_ms,
            duration_us: self.duration_us,
            kind: EntryKind::Tool {
                category: self.category,
                name: self.name,
                input: self.input,
                input_len: self.input_len,
                result: Ok(result),
            },
        }
    }
}

/// A MessagePack string, borrowed.
fn text<'a>(r: &mut &'a [u8]) -> Option<&'a str> {
    let len = rd::read_str_len(r).ok()? as usize;
    std::str::from_utf8(take(r, len)?).ok()
}

/// A MessagePack binary, borrowed.
fn bytes_of<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = rd::read_bin_len(r).ok()? as usize;
    take(r, len)
}

fn take<'a>(r: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let (head, rest) = r.split_at_checked(len)?;
    *r = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Digest;
    use crate::journal::ToolFailure;
    use crate::persist::{decode, encode};

    /// The direct reader's entry, whole.
    fn direct(bytes: &[u8]) -> Option<Entry> {
        tool_entry(bytes).map(|(entry, result)| entry.with_result(bytes[result..].to_vec()))
    }

    fn tool(category: &str, result: Result<Vec<u8>, ToolFailure>) -> Entry {
        Entry {
            at_ms: 1_700_000_000_123,
            duration_us: 70_000,
            kind: EntryKind::Tool {
                category: category.into(),
                name: "echo".into(),
                input: InputKey::from(Digest::of(b"in")),
                input_len: u64::MAX,
                result,
            },
        }
    }

    /// The direct reader takes the common shape, whatever its sizes.
    #[test]
    fn reads_successful_tool_calls_directly() {
        for (category, result) in [
            ("builtin", vec![]),
            ("", vec![1, 2, 3]),
            (&"c".repeat(300) as &str, vec![9; 70_000]),
        ] {
            let entry = tool(category, Ok(result));
            let bytes = encode(&entry);
            assert_eq!(direct(&bytes).as_ref(), Some(&entry));
            assert_eq!(decode_entry(&bytes).unwrap(), entry);
            assert_eq!(decode_entry_owned(bytes).unwrap(), entry);
        }
        // An input kept whole, of every length it can have.
        for len in 0..=InputKey::INLINE_MAX {
            let mut entry = tool("builtin", Ok(vec![1]));
            let EntryKind::Tool { input, .. } = &mut entry.kind else {
                unreachable!()
            };
            *input = InputKey::of(&vec![3; len]);
            let bytes = encode(&entry);
            assert_eq!(direct(&bytes).as_ref(), Some(&entry), "{len} bytes");
            assert_eq!(
                decode_entry_owned(bytes.clone()).unwrap(),
                entry,
                "{len} bytes"
            );
            assert_eq!(decode::<Entry>(&bytes).unwrap(), entry, "{len} bytes");
        }
    }

    /// Everything else goes through serde and reads the same as before.
    #[test]
    fn leaves_every_other_shape_to_serde() {
        let failed = tool(
            "demo",
            Err(ToolFailure {
                code: "x".into(),
                message: "m".into(),
                details: None,
            }),
        );
        let bytes = encode(&failed);
        assert_eq!(direct(&bytes), None);
        assert_eq!(decode_entry(&bytes).unwrap(), failed);
        assert_eq!(decode_entry_owned(bytes).unwrap(), failed);
        let ok = encode(&tool("demo", Ok(vec![5])));
        // A byte left over, a cut value, an unknown version: not read
        // directly, and serde's answer (or error) is the answer.
        let mut longer = ok.clone();
        longer.push(0xc0);
        assert_eq!(direct(&longer), None);
        assert_eq!(direct(&ok[..ok.len() - 1]), None);
        assert!(decode_entry(&ok[..ok.len() - 1]).is_err());
        let mut future = ok.clone();
        future[0] = FORMAT_VERSION + 1;
        assert!(decode_entry(&future).is_err());
        // Every cut of a valid entry is refused by both readers alike.
        for cut in 0..ok.len() {
            assert_eq!(direct(&ok[..cut]), None, "cut at {cut}");
            assert_eq!(
                decode_entry(&ok[..cut]).ok(),
                decode::<Entry>(&ok[..cut]).ok(),
                "cut at {cut}"
            );
            assert_eq!(
                decode_entry_owned(ok[..cut].to_vec()).ok(),
                decode::<Entry>(&ok[..cut]).ok(),
                "cut at {cut}"
            );
        }
    }
}
