//! `call-tool` of the current world, its arguments read in place.
//!
//! The generated binding lifts a call's arguments into two `String`s and a
//! `Vec<u8>` before the host sees them: three allocations and copies per
//! call. A replayed call needs none of them: it only compares the tool's
//! name and its input with what the journal entry keeps of them (see
//! [`crate::journal::InputKey`]), and replay is where an execution resumed
//! after many steps spends its time. So the current world's `call-tool` is
//! defined over the generated one, taking its arguments as views of the
//! guest's memory: the input and the tool's name are compared with the next
//! entry where they lie, so a replayed call copies nothing out of the
//! guest; the arguments are copied only when the call runs the tool (or
//! fails as nondeterminism). What a call does is the generated import's
//! ([`InvocationState::replay_tool`], then [`InvocationState::run_tool`]).
//! The frozen worlds keep the generated binding.

use bytes::Bytes;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

use super::InvocationState;
use super::bindings::ToolError;
use crate::journal::ToolName;

/// The interface whose `call-tool` this replaces.
const HOST_INTERFACE: &str = "reprise:workflow/host@0.3.0";

/// Defines `call-tool` over the generated one, which must already be in
/// `linker`: if it is not (the interface was renamed with a new world
/// version and [`HOST_INTERFACE`] was not), this fails, so the engine
/// never starts with a stray interface and a slower replay unnoticed.
pub(super) fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    // Without shadowing, defining it again is refused exactly when the
    // generated one is there.
    if linker
        .instance(HOST_INTERFACE)?
        .func_wrap_async("call-tool", call_tool)
        .is_ok()
    {
        return Err(wasmtime::Error::msg(format!(
            "`{HOST_INTERFACE}` has no generated `call-tool` to replace"
        )));
    }
    linker.allow_shadowing(true);
    let defined = linker
        .instance(HOST_INTERFACE)
        .and_then(|mut host| host.func_wrap_async("call-tool", call_tool));
    linker.allow_shadowing(false);
    defined
}

/// A replayed result is lowered into the guest straight from the journal
/// entry's bytes: the memory store's load shares them with the store, and
/// a Redis load leaves them in the reply they came in, and the file
/// store's load copies them out of its pages into one buffer they share.
type ToolResult = Result<Bytes, ToolError>;

/// The import: replayed from the journal with the arguments in place, or
/// copied out of the guest to run the tool.
fn call_tool(
    mut store: StoreContextMut<'_, InvocationState>,
    (category, name, input): (WasmStr, WasmStr, WasmList<u8>),
) -> Box<dyn Future<Output = wasmtime::Result<(ToolResult,)>> + Send + '_> {
    Box::new(async move {
        // Compared where they lie: a replayed call copies nothing out.
        let replayed = {
            let input = input.as_le_slice(&store);
            let category = category.to_str(&store)?;
            let name = name.to_str(&store)?;
            store.data().steps.replays_tool(&category, &name, input)
        };
        if replayed {
            let result = store.data_mut().replay_matched_tool().await?;
            return Ok((result,));
        }
        // Past the journal, or another call than it records.
        let category = ToolName::from(category.to_str(&store)?);
        let name = ToolName::from(name.to_str(&store)?);
        let input = input.as_le_slice(&store).to_vec();
        let state = store.data_mut();
        if let Some(result) = state.replay_tool(&category, &name, &input).await? {
            return Ok((result,));
        }
        // The live path's future is boxed on its own: inline, it made
        // this future ~2 KiB, an allocation too large for the allocator's
        // per-thread cache, which every replayed call paid for (glibc
        // consolidates its free lists before serving one).
        let result = Box::pin(
            store
                .data_mut()
                .run_tool(category.into(), name.into(), input),
        )
        .await?;
        Ok((result,))
    })
}
