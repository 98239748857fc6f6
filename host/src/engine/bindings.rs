//! The host's one `bindgen!` site: Rust types and traits for the
//! `reprise:workflow` world. Nothing else touches raw bindings.

wasmtime::component::bindgen!({
    world: "workflow",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use reprise::workflow::host::Host;
pub use reprise::workflow::types::{Host as TypesHost, Level, ToolError};
