//! Calls the tools its input lists, in order, and returns what each gave:
//! `{"ok": value}` or `{"err": {"code", "message"}}`. Tests use it to drive
//! configured tools (webhooks, `http/request`) from a real workflow.

use reprise_sdk::{Context, ToolError, workflow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct Call {
    category: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
struct Input {
    calls: Vec<Call>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Ok(Value),
    Err { code: String, message: String },
}

#[workflow]
fn caller(ctx: &Context, input: Input) -> Result<Vec<Outcome>, ToolError> {
    Ok(input
        .calls
        .iter()
        .map(
            |c| match ctx.call::<Value>(&c.category, &c.name, &c.input) {
                Ok(v) => Outcome::Ok(v),
                Err(e) => Outcome::Err {
                    code: e.code,
                    message: e.message,
                },
            },
        )
        .collect())
}
