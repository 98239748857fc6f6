//! The messages of the work queue: what a stream entry asks for (a start
//! or a resume), its fields (the format plain `XADD` producers use), and a
//! delivery as a host receives it.

use std::collections::HashMap;

use redis::Value;
use redis::streams::StreamId;

use crate::ids::ExecutionId;
use crate::stream::StreamOptions;

/// What a message asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Start an execution (idempotent with an `id`).
    Start {
        /// Workflow name.
        workflow: String,
        /// Input as JSON text (`null` when absent).
        input: String,
        /// Execution id; `q-<entry id>` when absent.
        id: Option<ExecutionId>,
        /// Start it as a stream paced by its consumers (the `stream` object
        /// of an HTTP start); the host's defaults fill what it leaves out.
        stream: Option<StreamOptions>,
        /// The W3C `traceparent` of the producer's trace, to continue it
        /// (a malformed one is ignored, as tracers do).
        traceparent: Option<String>,
    },
    /// Run an execution that can go on.
    Resume(ExecutionId),
}

impl Message {
    /// The stream fields of this message (the format plain `XADD` producers
    /// use: see the README).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Message::Start {
                workflow,
                input,
                id,
                stream,
                traceparent,
            } => {
                let mut f = vec![("workflow", workflow.clone()), ("input", input.clone())];
                if let Some(tp) = traceparent {
                    f.push(("traceparent", tp.clone()));
                }
                if let Some(id) = id {
                    f.push(("id", id.to_string()));
                }
                if let Some(stream) = stream {
                    let text = serde_json::to_string(stream).expect("options serialize");
                    f.push(("stream", text));
                }
                f
            }
            Message::Resume(id) => vec![("resume", id.to_string())],
        }
    }

    /// Reads a message from stream fields; the error says what is wrong.
    pub fn parse(fields: &HashMap<String, Value>) -> Result<Self, MalformedMessage> {
        Self::parse_fields(fields).map_err(MalformedMessage)
    }

    fn parse_fields(fields: &HashMap<String, Value>) -> Result<Self, String> {
        let text = |name: &str| -> Result<Option<String>, String> {
            match fields.get(name) {
                None => Ok(None),
                Some(Value::BulkString(b)) => String::from_utf8(b.clone())
                    .map(Some)
                    .map_err(|_| format!("field {name:?} is not UTF-8")),
                Some(other) => Err(format!("field {name:?} has an unexpected type: {other:?}")),
            }
        };
        if let Some(id) = text("resume")? {
            return ExecutionId::new(id)
                .map(Message::Resume)
                .map_err(|e| e.to_string());
        }
        let Some(workflow) = text("workflow")? else {
            return Err(
                "a message needs a `workflow` field (a start) or a `resume` field".to_string(),
            );
        };
        let input = text("input")?.unwrap_or_else(|| "null".to_string());
        let id = text("id")?
            .map(ExecutionId::new)
            .transpose()
            .map_err(|e| e.to_string())?;
        let stream = text("stream")?
            .map(|t| serde_json::from_str::<StreamOptions>(&t))
            .transpose()
            .map_err(|e| format!("field \"stream\" is not a stream object: {e}"))?;
        Ok(Message::Start {
            workflow,
            input,
            id,
            stream,
            traceparent: text("traceparent")?,
        })
    }
}

/// A stream entry that is not a message: it can never succeed, so it goes
/// to the dead-letter stream with this reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedMessage(pub String);

/// Where a message is: its partition and its entry id in that
/// partition's stream (what is acknowledged).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// The partition (0 for a queue of one).
    pub partition: usize,
    /// The stream entry id.
    pub id: String,
}

impl std::fmt::Display for Entry {
    /// The entry id, after `p<partition>/` outside partition 0.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.partition {
            0 => f.write_str(&self.id),
            p => write!(f, "p{p}/{}", self.id),
        }
    }
}

/// One message as received.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Where it is.
    pub entry: Entry,
    /// The message, or why it cannot be read.
    pub message: Result<Message, MalformedMessage>,
    /// How many times it has been delivered, this time included.
    pub deliveries: u64,
    /// The raw fields, copied to the dead-letter stream if it goes there.
    pub(super) fields: Vec<(String, Vec<u8>)>,
}

impl Delivery {
    /// The execution the message is about: a resume's, a start's `id`, or
    /// for a start without one `q-<entry id>` (`q-p<partition>-<entry id>`
    /// outside partition 0), so a message delivered again still starts
    /// once. `None` for a message that cannot be read.
    pub fn execution_id(&self) -> Option<ExecutionId> {
        match &self.message {
            Ok(Message::Resume(id)) | Ok(Message::Start { id: Some(id), .. }) => Some(id.clone()),
            Ok(Message::Start { id: None, .. }) => {
                let id = match self.entry.partition {
                    0 => format!("q-{}", self.entry.id),
                    p => format!("q-p{p}-{}", self.entry.id),
                };
                ExecutionId::new(id).ok()
            }
            Err(_) => None,
        }
    }

    pub(super) fn new(partition: usize, entry: StreamId, deliveries: u64) -> Self {
        let message = Message::parse(&entry.map);
        let mut fields: Vec<(String, Vec<u8>)> = entry
            .map
            .into_iter()
            .map(|(k, v)| {
                let bytes = match v {
                    Value::BulkString(b) => b,
                    other => format!("{other:?}").into_bytes(),
                };
                (k, bytes)
            })
            .collect();
        fields.sort();
        Self {
            entry: Entry {
                partition,
                id: entry.id,
            },
            message,
            deliveries,
            fields,
        }
    }
}

/// One dead letter: the original message's fields and why it is here.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Where it is: its partition and its entry id in that partition's
    /// dead-letter stream.
    pub entry: Entry,
    /// Every field: the original ones, plus `reason`, `original` (its entry
    /// id) and `deliveries`.
    pub fields: HashMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(fields: &[(&str, &str)]) -> Result<Message, MalformedMessage> {
        let map = fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.as_bytes().to_vec())))
            .collect();
        Message::parse(&map)
    }

    /// What `fields` writes, `parse` reads back, the stream options
    /// included; a `stream` that is not an options object is refused.
    #[test]
    fn start_fields_round_trip() {
        let start = Message::Start {
            workflow: "producer".into(),
            input: r#"{"n":3}"#.into(),
            id: Some(ExecutionId::new("s1").unwrap()),
            stream: Some(StreamOptions {
                window: Some(10),
                on_abandon: Some(reprise_api::OnAbandon::Continue),
                window_bytes: Some(4096),
            }),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let fields = start.fields();
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(parse(&pairs), Ok(start));
        let plain = parse(&[("workflow", "steps")]).unwrap();
        assert_eq!(
            plain,
            Message::Start {
                workflow: "steps".into(),
                input: "null".into(),
                id: None,
                stream: None,
                traceparent: None,
            }
        );
        assert!(plain.fields().iter().all(|(k, _)| *k != "stream"));
        for bad in [r#"{"window":-1}"#, r#"{"size":3}"#, "3", "window=3"] {
            let err = parse(&[("workflow", "w"), ("stream", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a stream object"), "{bad}: {err}");
        }
    }
}
