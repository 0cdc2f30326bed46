//! Dataset, model and eval-set hosting for validators and miners.
//!
//! * [`dataset::Hub`] — where miners publish datasets and validators fetch them, implemented by
//!   [`local::LocalHub`] (the devnet's directory) and [`client::HubClient`] (the Hugging Face
//!   Hub).
//! * [`client::HubClient`] — the Hugging Face Hub client (built on hf-hub 1.x): pinned-revision
//!   dataset downloads with a streaming size cap, dataset publishing, visibility changes, and
//!   model / eval-set downloads into the Python-compatible cache.
//! * [`resolve`] — what a `cluster.toml` names: the dataset hub, the model, the eval set.
//! * [`config::ClientConfig`] — endpoint, token, cache directory, offline mode and retry policy,
//!   explicitly or from the environment (`HF_ENDPOINT`, `HF_TOKEN`, `.env`, `HF_HOME`, ...).
//! * [`error::HubError`] — why an operation failed, naming the repo, revision and file.
//! * [`repo`] — repo kinds, and the checks of repo ids and pinned revisions.
//! * [`cache`] — the Python `huggingface_hub` cache layout (`datasets--ns--name/...`).
//! * [`progress::ProgressSink`] — byte progress callbacks for progress bars.
//! * `server` (feature `server`, off by default; only tests and `scripts/hub_check.py` turn it
//!   on) — an in-process server speaking the Hub's HTTP API.

#![warn(missing_docs)]

pub mod cache;
pub mod client;
pub mod config;
pub mod dataset;
pub mod error;
pub mod local;
pub mod progress;
pub mod repo;
pub mod resolve;
mod retry;
#[cfg(feature = "server")]
pub mod server;

pub use client::{HubClient, ModelFiles, RepoInfo};
pub use config::{ClientConfig, RetryPolicy, Token};
pub use dataset::Hub;
pub use error::HubError;
pub use local::LocalHub;
pub use progress::ProgressSink;
pub use repo::{check_repo_id, check_revision, RepoKind, DATASET_FILE};
