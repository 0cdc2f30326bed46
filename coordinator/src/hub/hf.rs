//! [`Hub`] on the Hugging Face Hub, through the `hub` crate's client (hf-hub 1.x): datasets are
//! fetched at their pinned commit into the Python-compatible cache, with the size cap enforced
//! while streaming; publishing creates a private dataset repo when it is missing.

use async_trait::async_trait;

use super::{Hub, HubError};

/// The Hugging Face Hub as a [`Hub`].
#[derive(Debug, Clone)]
pub struct HfHub {
    client: hfhub::HubClient,
}

impl HfHub {
    /// Wraps a configured client.
    pub fn new(client: hfhub::HubClient) -> Self {
        HfHub { client }
    }

    /// The client, for what the trait does not cover (visibility, models, eval sets).
    pub fn client(&self) -> &hfhub::HubClient {
        &self.client
    }
}

/// The client's error as the trait's, keeping the reason where the trait has no field for it.
pub fn translate(e: hfhub::HubError) -> HubError {
    use hfhub::HubError as E;
    match e {
        E::NotFound { repo } => HubError::NotFound { repo },
        E::RevisionNotFound { repo, revision, .. } => HubError::RevisionNotFound { repo, revision },
        E::ShaMismatch { repo, revision, .. } => HubError::ShaMismatch { repo, revision },
        E::TooLarge {
            repo,
            revision,
            limit,
            ..
        } => HubError::TooLarge {
            repo,
            revision,
            limit,
        },
        E::Private { repo, .. } | E::Unauthorized { repo, .. } => HubError::Private { repo },
        E::BadRepo { repo, reason } => HubError::BadRepo { repo, reason },
        other => HubError::Io(other.to_string()),
    }
}

#[async_trait]
impl Hub for HfHub {
    async fn fetch(&self, repo: &str, revision: &str, max_bytes: u64) -> Result<Vec<u8>, HubError> {
        self.client
            .fetch_dataset(repo, revision, max_bytes)
            .await
            .map_err(translate)
    }

    async fn publish(&self, repo: &str, bytes: &[u8]) -> Result<String, HubError> {
        self.client
            .publish_dataset(repo, bytes, true)
            .await
            .map_err(translate)
    }
}
