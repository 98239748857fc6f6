//! The host's `bindgen!` sites: Rust types and traits for the
//! `reprise:workflow` worlds. Nothing else touches raw bindings.
//!
//! The current world (0.2.0) is generated at the top; [`v0_1`] is the
//! frozen 0.1.0 world, whose imports the host serves too, so a component
//! built before 0.2.0 runs unchanged (its calls are 0.2.0 calls with the
//! same meaning: see `invocation/imports.rs`).

wasmtime::component::bindgen!({
    world: "workflow",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use reprise::workflow::host::Host;
pub use reprise::workflow::types::{
    ChildError, Completion, Host as TypesHost, Level, RetryPolicy, ToolError,
};

/// The `reprise:workflow@0.1.0` world.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "workflow",
        path: "../wit/0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    pub use reprise::workflow::host::Host;
    pub use reprise::workflow::types::{Host as TypesHost, Level, ToolError};
}
