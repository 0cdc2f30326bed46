//! The Murmuration validator: chain and hub access, dataset checks, the EvalQueue, in-process
//! workers, scoring, weights and persisted state, driven by the `Coordinator` actor.

pub mod actor;
pub mod audit;
pub mod bench;
pub mod bootstrap;
pub mod chain;
pub mod commit_reveal;
pub mod duplicates;
pub mod emission;
pub mod epoch;
pub mod eval_queue;
pub mod hub;
pub mod keys;
pub mod metrics;
pub mod network;
pub mod remote;
pub mod report;
pub mod schedule;
pub mod scoring;
pub mod service;
pub mod state;
pub mod supervisor;
pub mod worker_actor;
