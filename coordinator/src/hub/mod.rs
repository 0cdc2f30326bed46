//! Dataset hosting behind one trait: the [`local::LocalHub`] directory now, the Hugging Face Hub
//! later. A commitment `namespace/name:competition:sha` resolves to the bytes of that repo's
//! `data.jsonl` at that immutable revision.

pub mod hf;
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
    #[error("{repo}@{revision}: data.jsonl is over the limit of {limit} bytes")]
    TooLarge {
        /// The repo id.
        repo: String,
        /// The revision.
        revision: String,
        /// The limit.
        limit: u64,
    },
    /// The repo exists but we may not read it (gated or private on the Hugging Face Hub).
    #[error("repo {repo} is private or gated")]
    Private {
        /// The repo id.
        repo: String,
    },
    /// A repo id that is not `namespace/name` of safe characters.
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

/// Where miners publish datasets and validators fetch them. Dyn-compatible, so the
/// implementation can be chosen at run time (`Arc<dyn Hub>`).
#[async_trait]
pub trait Hub: Send + Sync {
    /// `data.jsonl` of `repo` at the pinned `revision` (40 hex), checked against the revision.
    /// Reading stops past `max_bytes`, which is then [`HubError::TooLarge`].
    async fn fetch(&self, repo: &str, revision: &str, max_bytes: u64) -> Result<Vec<u8>, HubError>;
    /// Publishes `bytes` as `data.jsonl` of `repo`; returns the new immutable revision (40 hex).
    async fn publish(&self, repo: &str, bytes: &[u8]) -> Result<String, HubError>;
}

/// Checks a repo id: `namespace/name` under the Hugging Face rules and the commitment
/// string's (the `hub` crate's check; nothing that could leave a directory passes).
pub fn check_repo_id(repo: &str) -> Result<(&str, &str), HubError> {
    hfhub::check_repo_id(repo).map_err(hf::translate)
}

/// Checks a revision: exactly 40 hex digits; returns it in lower case.
pub fn check_revision(repo: &str, revision: &str) -> Result<String, HubError> {
    hfhub::check_revision(repo, revision).map_err(hf::translate)
}
