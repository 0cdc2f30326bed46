//! Dataset hosting behind one trait: the [`local::LocalHub`] directory now, the Hugging Face Hub
//! later. A commitment `namespace/name:competition:sha` resolves to the bytes of that repo's
//! `data.jsonl` at that immutable revision.

pub mod local;

use async_trait::async_trait;

/// Why a dataset could not be fetched or published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The repo does not exist (or is not visible to us).
    #[error("repo {repo} not found")]
    NotFound {
        /// The repo id.
        repo: String,
    },
    /// The repo exists but not at that revision.
    #[error("revision {revision} of {repo} not found")]
    RevisionNotFound {
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
    },
    /// The bytes do not hash to the revision they are stored under.
    #[error("{repo}@{revision}: content does not match the revision (sha mismatch)")]
    ShaMismatch {
        /// The repo id.
        repo: String,
        /// The revision.
        revision: String,
    },
    /// The file is larger than allowed; reading stopped at the limit.
    #[error("data.jsonl is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// A repo id that cannot be a path component pair.
    #[error("repo id {repo:?}: {reason}")]
    BadRepo {
        /// The repo id.
        repo: String,
        /// Why.
        reason: String,
    },
    /// Storage or transport failed.
    #[error("hub: {0}")]
    Io(String),
}

/// Where miners publish datasets and validators fetch them.
#[async_trait]
pub trait Hub: Send + Sync {
    /// `data.jsonl` of `repo` at `revision`, at most `max_bytes` (reading stops past it).
    async fn fetch(&self, repo: &str, revision: &str, max_bytes: u64) -> Result<Vec<u8>, HubError>;
    /// Publishes `bytes` as `data.jsonl` of `repo`; returns the new immutable revision.
    async fn publish(&self, repo: &str, bytes: &[u8]) -> Result<String, HubError>;
}
