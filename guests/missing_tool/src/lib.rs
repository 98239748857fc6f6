//! Misbehaves: calls a tool no host offers.

use reprise_sdk::{Context, workflow};

#[workflow]
fn missing_tool(ctx: &Context, _input: serde::de::IgnoredAny) -> Result<(), String> {
    ctx.call::<()>("nowhere", "nothing", &())
        .map_err(|e| e.to_string())
}
