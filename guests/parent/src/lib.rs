//! Starts one `child` execution per item of its input, all at once, and
//! joins them: returns each child's result, or its error (with the child's
//! code and details when it gave them), in input order.
//! `workflow` names the child workflow (default `child`).

use reprise_sdk::{Context, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    items: Vec<serde_json::Value>,
    #[serde(default)]
    workflow: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Ok(serde_json::Value),
    Err {
        kind: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
    },
}

#[workflow]
fn parent(ctx: &Context, input: Input) -> Result<Vec<Outcome>, String> {
    let workflow = input.workflow.as_deref().unwrap_or("child");
    let children = input
        .items
        .iter()
        .map(|item| ctx.start_child::<serde_json::Value>(workflow, item))
        .collect();
    Ok(ctx
        .join_all(children)
        .into_iter()
        .map(|end| match end {
            Ok(value) => Outcome::Ok(value),
            Err(e) => Outcome::Err {
                details: e.details().and_then(Result::ok),
                kind: e.kind,
                message: e.message,
                code: e.code,
            },
        })
        .collect())
}
