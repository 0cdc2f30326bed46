//! What every Murmuration party must agree on: dataset rows and their validation, the on-chain
//! commitment string, configuration types, and (later) the coordinator<->worker wire messages.

pub mod commitment;
pub mod config;
pub mod dataset;
#[cfg(feature = "quic")]
pub mod transport;
pub mod wire;
