//! Reprise host: runs durable workflow components.
//!
//! A workflow is a WebAssembly component of the `reprise:workflow` world. The
//! host instantiates it for every invocation, serves its tool calls, records
//! each result in a journal before the guest sees it, and when the workflow
//! must wait it drops the instance. On resume a fresh instance replays the
//! journal through the imports until it reaches new work.
//!
//! The modules, from vocabulary to machinery:
//! - [`ids`], [`journal`], [`execution`]: plain types every other module uses;
//! - [`persist`]: the versioned encoding of what stores write (frozen by
//!   golden bytes);
//! - [`store`]: the `Store` trait and its backends; [`redis_conn`]: the Redis
//!   connection the Redis store and the queue share;
//! - [`stream`]: how an output stream is paced by its consumers;
//! - [`tools`]: the `Tool` trait, the registry and the built-in tools;
//! - [`engine`]: wasmtime, compiled components and one invocation;
//! - [`runtime`]: the driver and scheduler behind the public API;
//! - [`queue`]: the Redis Streams work queue and durable timers many hosts share;
//! - [`metrics`]: what the runtime counts, for Prometheus;
//! - [`server`]: `reprise serve`, the HTTP API in front of a runtime (its
//!   documents are the `reprise-api` crate's).
//!
//! The library reads no environment variables, flags or files but the store
//! file it is given; the `reprise` binary (the `reprise-cli` crate) does.
#![deny(missing_docs)]

pub mod config;
pub mod engine;
pub mod execution;
pub mod ids;
pub mod journal;
pub mod metrics;
pub mod persist;
pub mod queue;
pub mod redis_conn;
pub mod runtime;
pub mod server;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod tools;

pub use config::{Budget, EngineConfig, Limits, RuntimeConfig, StreamConfig};
pub use engine::{CompileError, WorkflowEngine};
pub use execution::{
    ConsumerSession, ExecutionRecord, Failure, FailureKind, OnAbandon, Outcome, Status,
    StreamPolicy, Wait,
};
pub use ids::{Digest, ExecutionId};
pub use metrics::Metrics;
pub use runtime::{Children, Deployment, Runtime, RuntimeBuilder, RuntimeError};
pub use store::{EmbeddedStore, MemoryStore, RedisOptions, RedisStore, Store, StoreError};
pub use tools::{Tool, ToolCall, ToolError, ToolRegistry};
