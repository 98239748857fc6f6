//! Misbehaves: does one step, then panics (a trap).

use reprise_sdk::{Context, workflow};

#[workflow]
fn trap(ctx: &Context, _input: serde::de::IgnoredAny) -> Result<(), String> {
    let _: () = ctx
        .call("builtin", "echo", &())
        .map_err(|e| e.to_string())?;
    panic!("the workflow gave up on purpose");
}
