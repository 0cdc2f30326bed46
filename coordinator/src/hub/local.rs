//! A local directory hub: `<root>/<namespace>/<name>/<revision>/data.jsonl`, revisions
//! immutable, each revision the first 40 hex digits of SHA-256("murmuration-dataset\0" ‖ bytes),
//! so a revision names its content exactly like a git commit sha names a tree.

use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{Hub, HubError};

/// The revision id of `bytes`.
pub fn revision_of(bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"murmuration-dataset\0");
    hasher.update(bytes);
    hex::encode(hasher.finalize())[..40].to_string()
}

/// A hub over a directory.
#[derive(Debug, Clone)]
pub struct LocalHub {
    root: PathBuf,
}

fn safe_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl LocalHub {
    /// A hub rooted at `root` (created on first publish).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn repo_dir(&self, repo: &str) -> Result<PathBuf, HubError> {
        let parts: Vec<&str> = repo.split('/').collect();
        match parts.as_slice() {
            [ns, name] if safe_part(ns) && safe_part(name) => Ok(self.root.join(ns).join(name)),
            _ => Err(HubError::BadRepo {
                repo: repo.to_string(),
                reason: "must be namespace/name of letters, digits, '.', '_', '-'".into(),
            }),
        }
    }
}

#[async_trait]
impl Hub for LocalHub {
    async fn fetch(&self, repo: &str, revision: &str, max_bytes: u64) -> Result<Vec<u8>, HubError> {
        let dir = self.repo_dir(repo)?;
        if revision.len() != 40 || !revision.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(HubError::RevisionNotFound {
                repo: repo.into(),
                revision: revision.into(),
            });
        }
        if !dir.is_dir() {
            return Err(HubError::NotFound { repo: repo.into() });
        }
        let path = dir.join(revision).join("data.jsonl");
        let file = std::fs::File::open(&path).map_err(|_| HubError::RevisionNotFound {
            repo: repo.into(),
            revision: revision.into(),
        })?;
        let mut bytes = Vec::new();
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| HubError::Io(format!("{}: {e}", path.display())))?;
        if bytes.len() as u64 > max_bytes {
            return Err(HubError::TooLarge { limit: max_bytes });
        }
        if revision_of(&bytes) != revision.to_ascii_lowercase() {
            return Err(HubError::ShaMismatch {
                repo: repo.into(),
                revision: revision.into(),
            });
        }
        Ok(bytes)
    }

    async fn publish(&self, repo: &str, bytes: &[u8]) -> Result<String, HubError> {
        let revision = revision_of(bytes);
        let dir = self.repo_dir(repo)?.join(&revision);
        let path = dir.join("data.jsonl");
        if path.exists() {
            return Ok(revision);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| HubError::Io(format!("{}: {e}", dir.display())))?;
        let tmp = dir.join("data.jsonl.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| HubError::Io(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| HubError::Io(format!("{}: {e}", path.display())))?;
        Ok(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publish_then_fetch_at_the_revision_and_every_failure_has_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = LocalHub::new(dir.path());
        let rev = hub
            .publish("alice/data", b"{\"a\":1}\n")
            .await
            .expect("publish");
        assert_eq!(rev.len(), 40);
        assert_eq!(
            hub.fetch("alice/data", &rev, 1 << 20).await.expect("fetch"),
            b"{\"a\":1}\n"
        );
        let rev2 = hub
            .publish("alice/data", b"other\n")
            .await
            .expect("publish");
        assert_ne!(
            rev, rev2,
            "a new content is a new revision; the old one stays"
        );
        assert_eq!(
            hub.fetch("alice/data", &rev, 1 << 20).await.expect("old"),
            b"{\"a\":1}\n"
        );

        assert!(matches!(
            hub.fetch("bob/data", &rev, 10).await,
            Err(HubError::NotFound { .. })
        ));
        assert!(matches!(
            hub.fetch("alice/data", "main", 10).await,
            Err(HubError::RevisionNotFound { .. })
        ));
        assert!(matches!(
            hub.fetch("alice/data", &"0".repeat(40), 10).await,
            Err(HubError::RevisionNotFound { .. })
        ));
        assert!(matches!(
            hub.fetch("alice/data", &rev, 3).await,
            Err(HubError::TooLarge { limit: 3 })
        ));
        assert!(matches!(
            hub.fetch("../etc", &rev, 3).await,
            Err(HubError::BadRepo { .. })
        ));
        assert!(matches!(
            hub.publish("a/b/c", b"x").await,
            Err(HubError::BadRepo { .. })
        ));
        // Tampering with stored bytes is detected.
        std::fs::write(
            dir.path().join("alice/data").join(&rev).join("data.jsonl"),
            b"tampered",
        )
        .expect("write");
        assert!(matches!(
            hub.fetch("alice/data", &rev, 1 << 20).await,
            Err(HubError::ShaMismatch { .. })
        ));
    }
}
