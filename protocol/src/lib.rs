//! What every Murmuration party must agree on (`docs/architecture.md`):
//!
//! - [`dataset`]: the JSONL row format, validation with limits, canonical rows, content hash;
//! - [`commitment`]: the on-chain commitment string `namespace/name:competition_id:sha`;
//! - [`config`]: `cluster.toml` ([`config::ClusterConfig`]) and the `[training]` table;
//! - [`profile`]: the production profile, `coordinator init`'s starting config, the guard;
//! - [`json`]: the canonical JSON form that is hashed, strict parsing, the depth scan;
//! - [`scoring`]: duplicates, the EvalQueue order, win rates, weights, emission and the epoch
//!   report, which the validator and miner-cli compute alike;
//! - [`text`]: untrusted text made safe to print (control characters escaped);
//! - [`wire`]: the coordinator<->worker messages in capped frames, and, behind the `quic`
//!   feature, `transport` (QUIC with mutual TLS and pinned certificates).

#![deny(missing_docs)]

pub mod commitment;
pub mod config;
pub mod dataset;
pub mod json;
pub mod profile;
pub mod scoring;
pub mod text;
#[cfg(feature = "quic")]
pub mod transport;
pub mod wire;
