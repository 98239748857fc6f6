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

use bytes::{Buf, Bytes};
use rmp::decode as rd;

use super::FORMAT_VERSION;
use crate::journal::{Entry, EntryKind, InputKey, ToolName};
use crate::store::StoreError;

/// Decodes a journal entry written by [`super::encode`].
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, StoreError> {
    match tool_entry(bytes) {
        Some((entry, result)) => Ok(entry.with_result(Bytes::copy_from_slice(&bytes[result..]))),
        None => super::decode(bytes),
    }
}

/// [`decode_entry`] of bytes the caller owns (a Redis reply's): a
/// successful call's result is a view of their allocation, so an entry
/// costs no allocation or copy of its own.
pub fn decode_entry_owned(bytes: Vec<u8>) -> Result<Entry, StoreError> {
    match tool_entry(&bytes) {
        Some((entry, result)) => {
            let mut bytes = Bytes::from(bytes);
            bytes.advance(result);
            Ok(entry.with_result(bytes))
        }
        None => super::decode(&bytes),
    }
}

/// Decodes a journal whose rows the storage lends one at a time (the file
/// store's pages, valid only while read): [`decode_entry`] row by row,
/// except that the successful calls' results are copied into one buffer
/// the entries share. A load then makes one allocation for all its
/// results, not one per entry (and frees one, once the last result is
/// replayed), and its entries read as [`decode_entry`] reads them.
pub struct LentJournal {
    entries: Vec<Entry>,
    results: Vec<u8>,
    /// The entries given a result from `results`: (index, start, end).
    spans: Vec<(usize, usize, usize)>,
}

impl LentJournal {
    /// Room for `rows` entries.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            entries: Vec::with_capacity(rows),
            results: Vec::new(),
            spans: Vec::with_capacity(rows),
        }
    }

    /// Decodes one row.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let entry = match tool_entry(bytes) {
            Some((entry, result)) => {
                let start = self.results.len();
                self.results.extend_from_slice(&bytes[result..]);
                self.spans
                    .push((self.entries.len(), start, self.results.len()));
                // Its result is set in `finish`, once the buffer is whole.
                entry.with_result(Bytes::new())
            }
            None => super::decode(bytes)?,
        };
        self.entries.push(entry);
        Ok(())
    }

    /// The entries, in the order pushed.
    pub fn finish(self) -> Vec<Entry> {
        let Self {
            mut entries,
            results,
            spans,
        } = self;
        let results = Bytes::from(results);
        for (index, start, end) in spans {
            if let EntryKind::Tool { result: Ok(r), .. } = &mut entries[index].kind {
                *r = results.slice(start..end);
            }
        }
        entries
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
    fn with_result(self, result: Bytes) -> Entry {
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
        tool_entry(bytes)
            .map(|(entry, result)| entry.with_result(Bytes::copy_from_slice(&bytes[result..])))
    }

    /// A tool call that failed: an entry the direct reader leaves to serde.
    fn failed_tool() -> Entry {
        tool(
            "demo",
            Err(ToolFailure {
                code: "x".into(),
                message: "m".into(),
                details: None,
            }),
        )
    }

    /// One row through [`LentJournal`].
    fn lent(bytes: &[u8]) -> Result<Entry, StoreError> {
        let mut journal = LentJournal::with_capacity(1);
        journal.push(bytes)?;
        Ok(journal.finish().pop().unwrap())
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
                result: result.map(Bytes::from),
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
            assert_eq!(lent(&bytes).ok(), Some(entry.clone()));
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

    /// A lent journal reads every row as `decode_entry` does, and its
    /// successful calls' results lie side by side in one buffer.
    #[test]
    fn a_lent_journal_shares_one_buffer() {
        let failed = failed_tool();
        let other = Entry {
            at_ms: 1,
            duration_us: 0,
            kind: EntryKind::Checkpoint,
        };
        let entries = [
            tool("a", Ok(vec![1, 2, 3])),
            failed,
            tool("b", Ok(vec![])),
            other,
            tool("c", Ok(vec![4; 100])),
        ];
        let rows: Vec<Vec<u8>> = entries.iter().map(encode).collect();
        let mut journal = LentJournal::with_capacity(1);
        for row in &rows {
            journal.push(row).unwrap();
        }
        let read = journal.finish();
        assert_eq!(read, entries);
        let result = |e: &Entry| match &e.kind {
            EntryKind::Tool { result: Ok(r), .. } => r.clone(),
            other => panic!("{other:?}"),
        };
        let (first, last) = (result(&read[0]), result(&read[4]));
        assert_eq!(first.as_ptr().wrapping_add(first.len()), last.as_ptr());
        // A row that does not decode is the load's error.
        let mut journal = LentJournal::with_capacity(1);
        assert!(journal.push(&rows[0][..rows[0].len() - 1]).is_err());
    }

    /// Everything else goes through serde and reads the same as before.
    #[test]
    fn leaves_every_other_shape_to_serde() {
        let failed = failed_tool();
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

    /// The committed sample entries of every format version (see
    /// `persist/golden.rs`), as stored.
    fn committed_entries() -> Vec<(String, Vec<u8>)> {
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        let mut out = Vec::new();
        for version in 2..=FORMAT_VERSION {
            let Ok(dir) = std::fs::read_dir(golden.join(format!("format-{version}"))) else {
                continue;
            };
            for file in dir {
                let path = file.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("entry-") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((
                        format!("format-{version}/{name}"),
                        hex::decode(text.trim()).unwrap(),
                    ));
                }
            }
        }
        out
    }

    /// Bytes that change what a MessagePack reader does next: every marker
    /// of a length, a type or a width, and the ends of each range.
    const MARKERS: &[u8] = &[
        0x00, 0x01, 0x02, 0x03, 0x05, 0x1f, 0x20, 0x7f, 0x80, 0x81, 0x82, 0x8f, 0x90, 0x91, 0x92,
        0x93, 0x95, 0x9f, 0xa0, 0xa1, 0xa2, 0xa4, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6,
        0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd8,
        0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff,
    ];

    /// The direct reader never changes an answer: for every committed entry
    /// with any one byte replaced by a marker (or by its neighbours), any
    /// one byte removed, a marker inserted anywhere, or cut anywhere, both
    /// readers give exactly what serde gives (the same entry, or an error),
    /// and neither panics. A store's bytes may be damaged, or written by
    /// another release; only serde defines the format.
    #[test]
    fn damaged_entries_read_as_serde_reads_them() {
        let check = |name: &str, bytes: &[u8], how: &dyn std::fmt::Display| {
            let serde = decode::<Entry>(bytes).ok();
            assert_eq!(decode_entry(bytes).ok(), serde, "{name}, {how}");
            assert_eq!(
                decode_entry_owned(bytes.to_vec()).ok(),
                serde,
                "{name}, {how}"
            );
            assert_eq!(lent(bytes).ok(), serde, "{name}, {how}");
        };
        let entries = committed_entries();
        assert!(
            entries.len() >= 40,
            "the committed entries were not found: {}",
            entries.len()
        );
        let mut read_directly = 0;
        for (name, bytes) in &entries {
            check(name, bytes, &"as committed");
            for at in 0..bytes.len() {
                let original = bytes[at];
                let others = [original.wrapping_add(1), original.wrapping_sub(1)];
                for &b in MARKERS.iter().chain(&others) {
                    let mut m = bytes.clone();
                    m[at] = b;
                    read_directly += usize::from(tool_entry(&m).is_some());
                    check(name, &m, &format_args!("byte {at} set to {b:#04x}"));
                }
                let mut m = bytes.clone();
                m.remove(at);
                check(name, &m, &format_args!("byte {at} removed"));
                for &b in MARKERS {
                    let mut m = bytes.clone();
                    m.insert(at, b);
                    check(name, &m, &format_args!("{b:#04x} inserted at {at}"));
                }
                check(name, &bytes[..at], &format_args!("cut at {at}"));
            }
        }
        // The direct reader took part: some damaged bytes still read as a
        // successful tool call (a changed time, name or result byte).
        assert!(read_directly > 100, "{read_directly}");
    }
}
