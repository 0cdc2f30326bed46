//! The Murmuration validator: the `Coordinator` actor runs one epoch at a time — sync the chain,
//! fetch and check every dataset, select what to train, train on in-process and remote workers,
//! score, set weights — and keeps everything it decides in its SQLite state
//! (`docs/architecture.md`). Chain access lives in `subtensor`, dataset hosting in `hub`,
//! scoring in `protocol::scoring`, the engine in `worker`.
//!
//! What other crates and the `coordinator` binary use is re-exported here; the modules are
//! private.

mod actor;
mod backoff;
mod bench;
mod bootstrap;
mod commit_reveal;
mod epoch;
mod eval_sets;
mod failure;
mod metrics;
mod remote;
mod retrying_chain;
mod schedule;
mod service;
mod state;
mod supervisor;
mod worker_actor;

pub use bench::{run as bench_cluster, ClusterBenchArgs};
pub use bootstrap::{validator_wallet, DEMO_MINERS};
pub use commit_reveal::{commit, reveal_due, CommitRevealError, RevealSummary};
pub use service::run_validator;
pub use state::{
    CacheKey, PendingCommit, PendingWeights, State, StateError, MIGRATIONS, SCHEMA_VERSION,
};
pub use worker_actor::unix_now;
