//! The one integration-test binary: real components from `guests/`, real
//! stores, real timers.

mod conformance;
mod durability;
mod redis;
mod safety;
mod workflows;
