//! The persisted format, frozen: one sample of every type a store writes
//! (every variant of every enum in it), encoded at [`FORMAT_VERSION`] and
//! committed as hex under `host/golden/format-<version>/`. The test checks
//! both ways: this release encodes each sample to exactly the committed
//! bytes, and decodes the committed bytes to exactly the sample.
//!
//! So renaming a variant or a field, reordering fields or changing a serde
//! attribute fails here instead of silently breaking every existing store.
//! A deliberate change of encoding bumps [`FORMAT_VERSION`] (keeping the
//! old version readable) and adds the new version's files with
//! `REPRISE_BLESS_GOLDEN=1 cargo test -p reprise-host golden`; the files of
//! earlier versions stay, and their decode check keeps running.

use std::path::PathBuf;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{FORMAT_VERSION, decode, encode};
use crate::execution::{
    ChildEnd, ConsumerSession, ExecutionRecord, Failure, FailureKind, Lease, OnAbandon, Outcome,
    ParentLink, SignalRecord, SignalWait, Status, StreamPolicy, Wait,
};
use crate::ids::{Digest, ExecutionId};
use crate::journal::{Entry, EntryKind, InputKey, Started, ToolFailure};
use crate::store::DeploymentVersion;

fn dir(version: u8) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(format!("format-{version}"))
}

/// Checks `value` against the committed sample `name` of the current
/// version (or writes it, when blessing).
pub(crate) fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    name: &str,
    value: &T,
) {
    let path = dir(FORMAT_VERSION).join(format!("{name}.hex"));
    let bytes = encode(value);
    if std::env::var_os("REPRISE_BLESS_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, hex::encode(&bytes) + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; a new persisted type needs its sample \
             (REPRISE_BLESS_GOLDEN=1 cargo test -p reprise-host golden)",
            path.display()
        )
    });
    let golden = hex::decode(text.trim()).expect("golden file is hex");
    let back: T = decode(&golden).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        &back, value,
        "{name}: the committed bytes decode differently"
    );
    assert_eq!(
        hex::encode(&bytes),
        hex::encode(&golden),
        "{name}: this release encodes differently from format {FORMAT_VERSION}; \\
         bump FORMAT_VERSION on purpose (see the module docs)"
    );
}

pub(crate) fn digest(text: &str) -> Digest {
    Digest::of(text.as_bytes())
}

fn entries() -> Vec<(&'static str, Entry)> {
    let entry = |kind| Entry {
        at_ms: 1_700_000_000_123,
        duration_us: 4_567,
        kind,
    };
    vec![
        (
            "entry-tool-ok",
            entry(EntryKind::Tool {
                category: "demo".into(),
                name: "user".into(),
                input: InputKey::from(digest("input")),
                input_len: 5,
                result: Ok(Bytes::from_static(&[0x81, 0xa2, b'i', b'd', 0x7b])),
            }),
        ),
        (
            // Format 5: a short input kept whole instead of its digest.
            "entry-tool-inline-input",
            entry(EntryKind::Tool {
                category: "demo".into(),
                name: "user".into(),
                input: InputKey::of(b"input"),
                input_len: 5,
                result: Ok(Bytes::from_static(&[0xc3])),
            }),
        ),
        (
            "entry-tool-err",
            entry(EntryKind::Tool {
                category: "builtin".into(),
                name: "fail".into(),
                input: InputKey::from(digest("x")),
                input_len: 1,
                result: Err(ToolFailure {
                    code: "not-found".into(),
                    message: "no such user".into(),
                    details: Some(vec![0xc0]),
                }),
            }),
        ),
        (
            "entry-sleep",
            entry(EntryKind::Sleep {
                duration_ms: 3_600_000,
                wake_at_ms: 1_700_003_600_123,
            }),
        ),
        (
            "entry-signal",
            entry(EntryKind::Signal {
                name: "approve".into(),
                seq: 2,
                payload: vec![0xa3, b'a', b'n', b'n'],
            }),
        ),
        (
            "entry-emit",
            entry(EntryKind::Emit {
                item: vec![1, 2, 3],
            }),
        ),
        ("entry-checkpoint", entry(EntryKind::Checkpoint)),
        (
            "entry-now",
            entry(EntryKind::Now {
                value: 1_700_000_000_999,
            }),
        ),
        (
            "entry-random",
            entry(EntryKind::Random {
                value: u64::MAX - 7,
            }),
        ),
        (
            "entry-tool-stored",
            entry(EntryKind::ToolStored {
                category: "demo".into(),
                name: "big".into(),
                input: InputKey::from(digest("in")),
                input_len: 2,
                result_digest: digest("result"),
                result_len: 300_000,
            }),
        ),
        (
            "entry-emitted",
            entry(EntryKind::Emitted {
                item_digest: digest("item"),
                item_len: 3,
            }),
        ),
        (
            "entry-started-tool",
            entry(EntryKind::Started(Started::Tool {
                category: "demo".into(),
                name: "user".into(),
                input: InputKey::from(digest("in")),
                input_len: 2,
            })),
        ),
        (
            "entry-started-timer",
            entry(EntryKind::Started(Started::Timer {
                duration_ms: 86_400_000,
                wake_at_ms: 1_700_086_400_123,
            })),
        ),
        (
            "entry-started-signal",
            entry(EntryKind::Started(Started::Signal {
                name: "approve".into(),
            })),
        ),
        (
            "entry-started-child",
            entry(EntryKind::Started(Started::Child {
                workflow: "invoice".into(),
                input: InputKey::from(digest("in")),
                input_len: 2,
                id: ExecutionId::new("order-42.3").unwrap(),
            })),
        ),
        (
            "entry-completed-tool",
            entry(EntryKind::Completed {
                handle: 7,
                attempts: 3,
                value: Box::new(EntryKind::Tool {
                    category: "demo".into(),
                    name: "user".into(),
                    input: InputKey::from(digest("in")),
                    input_len: 2,
                    result: Ok(Bytes::from_static(&[0xa2, b'o', b'k'])),
                }),
            }),
        ),
        (
            "entry-completed-timer",
            entry(EntryKind::Completed {
                handle: 8,
                attempts: 1,
                value: Box::new(EntryKind::Sleep {
                    duration_ms: 86_400_000,
                    wake_at_ms: 1_700_086_400_123,
                }),
            }),
        ),
    ]
}

fn record(status: Status, wait: Option<Wait>, outcome: Option<Outcome>) -> ExecutionRecord {
    ExecutionRecord {
        id: ExecutionId::new("order-42").unwrap(),
        workflow: "checkout".into(),
        digest: digest("component"),
        input: vec![0x81, 0xa3, b's', b'k', b'u', 0x01],
        seed: 0x0123_4567_89ab_cdef,
        status,
        wait,
        outcome,
        journal_len: 12,
        invocations: 3,
        lease: Some(Lease {
            owner: "edge-1".into(),
            token: 9,
            expires_at_ms: 1_700_000_030_000,
        }),
        last_token: 9,
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_001_000,
        stream: Some(StreamPolicy {
            window: 100,
            on_abandon: OnAbandon::Continue,
            window_bytes: Some(1 << 20),
        }),
        parent: None,
        trace: None,
    }
}

fn records() -> Vec<(&'static str, ExecutionRecord)> {
    let failed = |kind| Some(Outcome::Failed(Failure::new(kind, "it broke")));
    let mut plain = record(Status::Running, None, None);
    plain.lease = None;
    plain.stream = None;
    vec![
        ("record-running", plain),
        (
            "record-ready",
            record(Status::Suspended, Some(Wait::Ready), None),
        ),
        (
            "record-timer",
            record(
                Status::Suspended,
                Some(Wait::Timer {
                    wake_at_ms: 1_700_003_600_000,
                }),
                None,
            ),
        ),
        (
            "record-signal",
            record(
                Status::Suspended,
                Some(Wait::Signal {
                    name: "approve".into(),
                }),
                None,
            ),
        ),
        (
            "record-consumers",
            record(
                Status::Suspended,
                Some(Wait::Consumers {
                    wake_at_ms: Some(1_700_000_060_000),
                    item_len: 512,
                }),
                None,
            ),
        ),
        (
            "record-any",
            record(
                Status::Suspended,
                Some(Wait::Any {
                    signals: vec![SignalWait {
                        name: "approve".into(),
                        consumed: 1,
                    }],
                    wake_at_ms: Some(1_700_086_400_123),
                }),
                None,
            ),
        ),
        ("record-traced", {
            let mut traced = record(Status::Suspended, Some(Wait::Ready), None);
            traced.trace = crate::telemetry::TraceParent::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            );
            assert!(traced.trace.is_some());
            traced
        }),
        ("record-child", {
            let mut child = record(Status::Suspended, Some(Wait::Ready), None);
            child.parent = Some(ParentLink {
                id: ExecutionId::new("order-41").unwrap(),
                handle: 3,
            });
            child
        }),
        (
            "record-completed",
            record(
                Status::Completed,
                None,
                Some(Outcome::Completed(vec![0xa2, b'o', b'k'])),
            ),
        ),
        (
            "record-cancelled",
            record(Status::Cancelled, None, Some(Outcome::Cancelled)),
        ),
        (
            "record-failed-workflow",
            record(Status::Failed, None, failed(FailureKind::Workflow)),
        ),
        (
            "record-failed-workflow-coded",
            record(
                Status::Failed,
                None,
                Some(Outcome::Failed(Failure::workflow(
                    "out-of-stock".into(),
                    "sku A-1 is sold out".into(),
                    Some(vec![0x81, 0xa3, b's', b'k', b'u', 0xa3, b'A', b'-', b'1']),
                ))),
            ),
        ),
        (
            "record-failed-trap",
            record(Status::Failed, None, failed(FailureKind::Trap)),
        ),
        (
            "record-failed-nondeterminism",
            record(Status::Failed, None, failed(FailureKind::Nondeterminism)),
        ),
        (
            "record-failed-memory-limit",
            record(Status::Failed, None, failed(FailureKind::MemoryLimit)),
        ),
        (
            "record-failed-time-limit",
            record(Status::Failed, None, failed(FailureKind::TimeLimit)),
        ),
        (
            "record-failed-missing-tool",
            record(Status::Failed, None, failed(FailureKind::MissingTool)),
        ),
        (
            "record-failed-invalid-component",
            record(Status::Failed, None, failed(FailureKind::InvalidComponent)),
        ),
        (
            "record-failed-invalid-call",
            record(Status::Failed, None, failed(FailureKind::InvalidCall)),
        ),
    ]
}

#[test]
fn every_persisted_type_matches_its_committed_bytes() {
    for (name, entry) in entries() {
        check(name, &entry);
    }
    for (name, record) in records() {
        check(name, &record);
        // The Redis store writes the wait and the outcome as fields of
        // their own.
        if let Some(wait) = &record.wait {
            check(&format!("{name}-wait"), wait);
        }
        if let Some(outcome) = &record.outcome {
            check(&format!("{name}-outcome"), outcome);
        }
    }
    for (name, end) in [
        ("child-end-completed", ChildEnd::Completed(vec![0x2a])),
        (
            "child-end-failed",
            ChildEnd::Failed {
                kind: "workflow-error".into(),
                message: "sku A-1 is sold out".into(),
                code: Some("out-of-stock".into()),
                details: Some(vec![0xc3]),
            },
        ),
        (
            "child-end-cancelled",
            ChildEnd::Failed {
                kind: "cancelled".into(),
                message: "the child execution was cancelled".into(),
                code: None,
                details: None,
            },
        ),
    ] {
        check(name, &end);
    }
    check(
        "signal",
        &SignalRecord {
            seq: 4,
            name: "approve".into(),
            payload: vec![0xc3],
        },
    );
    for (name, acked, closed) in [
        ("session-new", None, false),
        ("session-closed", Some(41), true),
    ] {
        check(
            name,
            &ConsumerSession {
                id: "s-1f2e".into(),
                acked,
                last_access_ms: 1_700_000_002_000,
                closed,
            },
        );
    }
    // `version` is not stored: a store numbers the list when it reads it.
    check(
        "deployment-versions",
        &vec![
            DeploymentVersion {
                version: 0,
                digest: digest("v1"),
                deployed_at_ms: 1_690_000_000_000,
                imports: vec!["reprise:workflow/host@0.1.0".into()],
            },
            DeploymentVersion {
                version: 0,
                digest: digest("v2"),
                deployed_at_ms: 1_690_000_100_000,
                imports: vec![],
            },
        ],
    );
}

/// Every committed sample of every format version still decodes (the
/// samples of the current version are checked field by field above; older
/// ones must at least stay readable).
#[test]
fn every_committed_version_still_decodes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut seen = 0;
    for version in super::OLDEST_READABLE..=FORMAT_VERSION {
        let Ok(files) = std::fs::read_dir(dir(version)) else {
            continue;
        };
        for file in files {
            let path = file.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let bytes = hex::decode(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
            let ok = if name.starts_with("entry-") {
                // The journal's direct reader reads exactly what serde does.
                let entry = decode::<Entry>(&bytes);
                assert_eq!(
                    super::decode_entry(&bytes).ok(),
                    entry.as_ref().ok().cloned(),
                    "{}: the direct reader disagrees",
                    path.display()
                );
                entry.is_ok()
            } else if name.ends_with("-wait") {
                decode::<Wait>(&bytes).is_ok()
            } else if name.ends_with("-outcome") {
                decode::<Outcome>(&bytes).is_ok()
            } else if name.starts_with("record-") {
                decode::<ExecutionRecord>(&bytes).is_ok()
            } else if name.starts_with("signal") {
                decode::<SignalRecord>(&bytes).is_ok()
            } else if name.starts_with("session-") {
                decode::<ConsumerSession>(&bytes).is_ok()
            } else if name.starts_with("deployment-") {
                decode::<Vec<DeploymentVersion>>(&bytes).is_ok()
            } else if name.starts_with("child-end-") {
                decode::<ChildEnd>(&bytes).is_ok()
            } else if name.starts_with("redis-meta") {
                // Checked by the Redis store's own test.
                true
            } else {
                panic!("{}: no type is known for this sample", path.display())
            };
            assert!(ok, "{} no longer decodes", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 30, "only {seen} samples under {}", root.display());
}

/// A workflow's failure written before format 4 has no code: it reads as
/// the uncoded workflow error, and a child's end likewise.
#[test]
fn a_format_3_workflow_failure_reads_without_a_code() {
    let text = std::fs::read_to_string(dir(3).join("record-failed-workflow-outcome.hex")).unwrap();
    let outcome: Outcome = decode(&hex::decode(text.trim()).unwrap()).unwrap();
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.code, None);
    assert_eq!(failure.details, None);
    assert_eq!(
        failure.workflow_code(),
        Some(crate::execution::UNCODED_WORKFLOW_ERROR)
    );

    #[derive(Serialize)]
    enum ChildEndV3 {
        Failed { kind: String, message: String },
    }
    let old = super::encode(&ChildEndV3::Failed {
        kind: "trap".into(),
        message: "boom".into(),
    });
    assert_eq!(
        decode::<ChildEnd>(&old).unwrap(),
        ChildEnd::Failed {
            kind: "trap".into(),
            message: "boom".into(),
            code: None,
            details: None,
        }
    );
}

/// A tool call journaled before format 5 keeps its input's digest, even
/// for a short input: it still replays the same call, and no other.
#[test]
fn a_format_4_tool_call_still_replays() {
    let text = std::fs::read_to_string(dir(4).join("entry-tool-ok.hex")).unwrap();
    let bytes = hex::decode(text.trim()).unwrap();
    for entry in [
        decode::<Entry>(&bytes).unwrap(),
        super::decode_entry(&bytes).unwrap(),
    ] {
        assert!(entry.kind.records_tool("demo", "user", b"input"));
        assert!(!entry.kind.records_tool("demo", "user", b"inpuT"));
        // The same call made now keeps its input whole, and the journal's
        // API names it by the same digest.
        let EntryKind::Tool { input, .. } = entry.kind else {
            panic!("{entry:?}")
        };
        assert_eq!(input.inline(), None);
        assert_eq!(input.digest(), InputKey::of(b"input").digest());
    }
}
