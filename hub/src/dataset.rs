//! Dataset hosting behind one trait: the [`crate::local::LocalHub`] directory of the devnet and
//! the Hugging Face Hub ([`HubClient`]) implement it. A commitment
//! `namespace/name:competition:sha` resolves to the bytes of that repo's `data.jsonl` at that
//! immutable revision.

use async_trait::async_trait;

use crate::client::HubClient;
use crate::error::HubError;

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

/// The Hugging Face Hub: datasets are fetched at their pinned commit into the Python-compatible
/// cache, with the size cap enforced while streaming; publishing creates a private dataset repo
/// when it is missing.
#[async_trait]
impl Hub for HubClient {
    async fn fetch(&self, repo: &str, revision: &str, max_bytes: u64) -> Result<Vec<u8>, HubError> {
        self.fetch_dataset(repo, revision, max_bytes).await
    }

    async fn publish(&self, repo: &str, bytes: &[u8]) -> Result<String, HubError> {
        self.publish_dataset(repo, bytes, true).await
    }
}
