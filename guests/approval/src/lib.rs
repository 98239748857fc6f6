//! Waits for the signal `approve`, at most `deadline_ms`. Approved in time:
//! returns who approved. Otherwise escalates (a call to `builtin/echo`
//! standing for paging someone) and returns that it did. While it waits
//! the execution is suspended: no instance, no memory.

use std::time::Duration;

use reprise_sdk::{Context, ToolError, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    deadline_ms: u64,
}

#[derive(Deserialize)]
struct Approval {
    by: String,
}

#[derive(Serialize, Deserialize)]
struct Escalation {
    reason: String,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Output {
    Approved { by: String },
    Escalated { reason: String },
}

#[workflow]
fn approval(ctx: &Context, input: Input) -> Result<Output, ToolError> {
    let deadline = Duration::from_millis(input.deadline_ms);
    match ctx.signal_timeout::<Approval>("approve", deadline) {
        Some(Ok(approval)) => Ok(Output::Approved { by: approval.by }),
        Some(Err(e)) => Err(ToolError {
            code: "bad-signal".into(),
            message: e.to_string(),
            details: None,
        }),
        None => {
            let reason = format!("no approval within {} ms", input.deadline_ms);
            let paged: Escalation = ctx.call("builtin", "echo", &Escalation { reason })?;
            Ok(Output::Escalated {
                reason: paged.reason,
            })
        }
    }
}
