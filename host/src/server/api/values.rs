//! The journal's values as the API shows them (`?values=true`): each
//! entry's input and value, decoded where they are MessagePack, and only
//! their size and digest where they are large, kept elsewhere, or not
//! kept at all.

use super::{EntryView, ValueView, payload_json};
use crate::ids::Digest;
use crate::journal::{Entry, EntryKind, Started};

/// Largest value shown whole; a larger one shows its size and digest.
pub const MAX_SHOWN_BYTES: usize = 64 << 10;

/// The view of one journal entry, with its values when `values` is set.
pub fn entry_view(index: u64, e: &Entry, values: bool) -> EntryView {
    let (input, result) = if values {
        (input(&e.kind), result(&e.kind))
    } else {
        (None, None)
    };
    EntryView {
        index,
        kind: e.kind.label().to_string(),
        detail: e.kind.detail(),
        at_ms: e.at_ms,
        duration_us: e.duration_us,
        size: e.kind.value_len() as u64,
        input,
        result,
    }
}

/// A payload: JSON if it is MessagePack, hex if not; omitted past the
/// limit.
fn payload(bytes: &[u8]) -> ValueView {
    let digest = Some(Digest::of(bytes).to_hex());
    let size = bytes.len() as u64;
    if bytes.len() > MAX_SHOWN_BYTES {
        return omitted(size, digest);
    }
    match rmp_serde::from_slice::<serde_json::Value>(bytes) {
        Ok(json) => ValueView {
            size,
            digest,
            json: Some(json),
            hex: None,
            omitted: false,
        },
        Err(_) => ValueView {
            size,
            digest,
            json: None,
            hex: Some(hex::encode(bytes)),
            omitted: false,
        },
    }
}

fn omitted(size: u64, digest: Option<String>) -> ValueView {
    ValueView {
        size,
        digest,
        json: None,
        hex: None,
        omitted: true,
    }
}

fn json(size: u64, value: serde_json::Value) -> ValueView {
    ValueView {
        size,
        digest: None,
        json: Some(value),
        hex: None,
        omitted: false,
    }
}

/// A call's input, shown by its size and digest: the journal keeps a long
/// input's digest only, and a short one whole (to replay without hashing),
/// which the API does not show either.
fn input(kind: &EntryKind) -> Option<ValueView> {
    match kind {
        EntryKind::Tool {
            input, input_len, ..
        }
        | EntryKind::ToolStored {
            input, input_len, ..
        } => Some(omitted(*input_len, Some(input.digest().to_hex()))),
        EntryKind::Started(
            Started::Tool {
                input, input_len, ..
            }
            | Started::Child {
                input, input_len, ..
            },
        ) => Some(omitted(*input_len, Some(input.digest().to_hex()))),
        _ => None,
    }
}

/// The value an entry records.
fn result(kind: &EntryKind) -> Option<ValueView> {
    Some(match kind {
        EntryKind::Tool { result, .. } => match result {
            Ok(bytes) => payload(bytes),
            Err(e) => json(
                kind.value_len() as u64,
                serde_json::json!({
                    "code": e.code,
                    "message": e.message,
                    "details": e.details.as_deref().map(payload_json),
                }),
            ),
        },
        EntryKind::ToolStored {
            result_digest,
            result_len,
            ..
        } => omitted(*result_len, Some(result_digest.to_hex())),
        EntryKind::Signal { payload: p, .. } => payload(p),
        EntryKind::Emit { item } => payload(item),
        EntryKind::Emitted {
            item_digest,
            item_len,
        } => omitted(*item_len, Some(item_digest.to_hex())),
        EntryKind::Now { value } | EntryKind::Random { value } => json(8, (*value).into()),
        EntryKind::Completed { value, .. } => return result(value),
        EntryKind::Sleep { .. } | EntryKind::Checkpoint | EntryKind::Started(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{InputKey, ToolFailure};

    fn tool(result: Result<Vec<u8>, ToolFailure>) -> EntryKind {
        EntryKind::Tool {
            category: "demo".into(),
            name: "user".into(),
            input: InputKey::of(b"in"),
            input_len: 2,
            result: result.map(Into::into),
        }
    }

    #[test]
    fn payloads_are_json_hex_or_omitted() {
        let ok = result(&tool(Ok(rmp_serde::to_vec_named(
            &serde_json::json!({"id": 1}),
        )
        .unwrap())))
        .unwrap();
        assert_eq!(ok.json, Some(serde_json::json!({"id": 1})));
        assert_eq!(ok.digest.as_deref().map(str::len), Some(64));
        let raw = result(&EntryKind::Emit {
            item: vec![0xc1, 0xff],
        })
        .unwrap();
        assert_eq!(raw.hex.as_deref(), Some("c1ff"));
        let big = vec![0x41; MAX_SHOWN_BYTES + 1];
        let big = result(&EntryKind::Emit { item: big }).unwrap();
        assert!(big.omitted && big.json.is_none() && big.hex.is_none());
        assert_eq!(big.size, MAX_SHOWN_BYTES as u64 + 1);
        let err = result(&tool(Err(ToolFailure::new("not-found", "no")))).unwrap();
        assert_eq!(err.json.unwrap()["code"], "not-found");
        let input = input(&tool(Ok(vec![]))).unwrap();
        assert!(input.omitted);
        assert_eq!(
            (input.size, input.digest),
            (2, Some(Digest::of(b"in").to_hex()))
        );
    }
}
