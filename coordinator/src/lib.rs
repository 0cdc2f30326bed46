//! The Murmuration validator: chain and hub access, dataset checks, the EvalQueue, in-process
//! workers, scoring, weights and persisted state, driven by the `Coordinator` actor.

pub mod chain;
pub mod hub;
pub mod keys;
pub mod report;
pub mod scoring;
pub mod state;
pub mod worker_actor;
