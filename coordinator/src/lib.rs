//! The Murmuration validator: chain and hub access, dataset checks, the EvalQueue, in-process
//! workers, scoring, weights and persisted state, driven by the `Coordinator` actor.

pub mod actor;
pub mod bench;
pub mod bootstrap;
pub mod commit_reveal;
pub mod epoch;
pub mod metrics;
pub mod remote;
pub mod schedule;
pub mod service;
pub mod state;
pub mod supervisor;
pub mod worker_actor;
