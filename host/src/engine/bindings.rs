//! The host's `bindgen!` sites: Rust types and traits for the
//! `reprise:workflow` worlds. Nothing else touches raw bindings.
//!
//! The current world (0.3.0) is generated at the top; [`v0_2`] and
//! [`v0_1`] are the frozen earlier worlds, whose imports the host serves
//! too, so a component built before 0.3.0 runs unchanged (its calls are
//! current calls with the same meaning: see `invocation/versions.rs`).
//! Their `run` export is the same (an error is a string), so one
//! [`v0_2::WorkflowPre`] instantiates a component of either.

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

/// The `reprise:workflow@0.2.0` world: the 0.3.0 calls, a child error
/// without code or details, and a string as the workflow's error.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "workflow",
        path: "../wit/0.2.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    pub use reprise::workflow::host::Host;
    pub use reprise::workflow::types::{
        ChildError, Completion, Host as TypesHost, Level, RetryPolicy, ToolError,
    };
}

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
