//! Why a Hub operation failed. Every variant names the repo (and the revision and file where
//! they apply); none ever contains the token.

/// Why a Hub operation failed, on the Hugging Face Hub or the local directory hub.
///
/// HTTP statuses: 401 without a token on a read is `Private`, with a token (or on a write)
/// `Unauthorized`; 403 is `Private` on a read and `Unauthorized` on a write; 404 follows the
/// Hub's `X-Error-Code` (`RepoNotFound` → `NotFound`, `RevisionNotFound`, `EntryNotFound` →
/// `FileNotFound`); 5xx, 408, 429, timeouts and connection errors are retried, then `Io`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The repo does not exist, or is private and not visible with this token (the Hub answers
    /// 404 for both).
    #[error("repo {repo} not found (or private and not visible with this token)")]
    NotFound {
        /// The repo id.
        repo: String,
    },
    /// The repo exists but not at that revision, or the revision is not a pinned 40-hex sha.
    #[error("revision {revision:?} of {repo}: {reason}")]
    RevisionNotFound {
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The Hub resolved the revision to another commit (a branch or tag named like a sha, a
    /// moved ref), or the bytes do not hash to the ETag the Hub reported.
    #[error("{repo}@{revision}: {reason} (sha mismatch)")]
    ShaMismatch {
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// What did not match.
        reason: String,
    },
    /// The file is larger than allowed; reading stopped at the limit.
    #[error("{repo}@{revision}: {file} is over the limit of {limit} bytes")]
    TooLarge {
        /// The repo id.
        repo: String,
        /// The revision.
        revision: String,
        /// The file in the repo.
        file: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The repo exists but may not be read: private (no token was sent) or gated.
    #[error("repo {repo} is private or gated (or does not exist): {reason}")]
    Private {
        /// The repo id.
        repo: String,
        /// What the Hub said.
        reason: String,
    },
    /// The token is missing, invalid, or lacks write access to this namespace.
    #[error("repo {repo}: not authorized: {reason}")]
    Unauthorized {
        /// The repo id.
        repo: String,
        /// What the Hub said (never the token).
        reason: String,
    },
    /// A repo id that is not `namespace/name` of safe characters.
    #[error("repo id {repo:?}: {reason}")]
    BadRepo {
        /// The repo id.
        repo: String,
        /// Why.
        reason: String,
    },
    /// The repo and revision exist but the file does not.
    #[error("{repo}@{revision}: file {file} not found")]
    FileNotFound {
        /// The repo id.
        repo: String,
        /// The revision.
        revision: String,
        /// The missing file.
        file: String,
    },
    /// Offline mode (`HF_HUB_OFFLINE=1`) and the file is not in the local cache.
    #[error(
        "{repo}@{revision}: file {file} is not in the cache {cache_dir} and the hub is offline \
         (HF_HUB_OFFLINE=1)"
    )]
    OfflineMissing {
        /// The repo id.
        repo: String,
        /// The revision.
        revision: String,
        /// The missing file.
        file: String,
        /// The cache directory searched.
        cache_dir: String,
    },
    /// A downloaded file does not have the size the Hub reported.
    #[error("{repo}@{revision}: file {file} is corrupt: {reason}")]
    Corrupt {
        /// The repo id.
        repo: String,
        /// The revision.
        revision: String,
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Storage or transport failed (after the retries), or the Hub answered something
    /// unexpected.
    #[error("hub: {0}")]
    Io(String),
}
