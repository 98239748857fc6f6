//! The smallest workflow: no journaled step, just a greeting.

use reprise_sdk::{Context, workflow};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    name: Option<String>,
}

#[workflow]
fn hello(ctx: &Context, input: Input) -> Result<String, String> {
    let name = input.name.unwrap_or_else(|| "world".into());
    ctx.info(&format!("greeting {name}"));
    Ok(format!("Hello, {name}!"))
}
