//! The one integration-test binary: real components from `guests/`, real
//! stores, real timers.

mod abuse;
mod children;
mod compiled;
mod concurrency;
mod conformance;
mod cors;
mod durability;
mod guards;
mod http;
mod inspect;
mod javascript;
mod journal_values;
mod queue;
mod redis;
mod redis_scripts;
mod safety;
mod streaming;
mod tools;
mod traces;
mod workflows;
