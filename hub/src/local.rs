//! A local directory hub: `<root>/<namespace>/<name>/<revision>/data.jsonl`.
//!
//! A revision is content-addressed: the first 40 hex digits of
//! SHA-256(`"murmuration-dataset\0"` ‖ bytes) ([`revision_of`]), so it names its content the way a
//! git commit sha does, and revisions are immutable: publishing the same bytes again returns the
//! same revision and rewrites nothing. `fetch` re-hashes what it read, so a file changed on disk
//! after publishing is [`HubError::ShaMismatch`]. File access runs on tokio's blocking pool.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::dataset::Hub;
use crate::error::HubError;
use crate::repo::{check_repo_id, check_revision, DATASET_FILE};

/// The revision id of `bytes`: the first 40 hex digits of
/// SHA-256(`"murmuration-dataset\0"` ‖ bytes).
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

fn io(path: &Path) -> impl Fn(std::io::Error) -> HubError + '_ {
    move |e| HubError::Io(format!("{}: {e}", path.display()))
}

impl LocalHub {
    /// A hub rooted at `root` (created on first publish).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// `<root>/<namespace>/<name>` of a checked repo id.
    fn repo_dir(&self, repo: &str) -> Result<PathBuf, HubError> {
        let (ns, name) = check_repo_id(repo)?;
        Ok(self.root.join(ns).join(name))
    }

    fn fetch_blocking(
        &self,
        repo: &str,
        revision: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, HubError> {
        let dir = self.repo_dir(repo)?;
        let revision = check_revision(repo, revision)?;
        if !dir.is_dir() {
            return Err(HubError::NotFound { repo: repo.into() });
        }
        let path = dir.join(&revision).join(DATASET_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HubError::RevisionNotFound {
                    repo: repo.into(),
                    revision,
                    reason: "not in this hub".into(),
                })
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        if bytes.len() as u64 > max_bytes {
            return Err(HubError::TooLarge {
                repo: repo.into(),
                revision,
                file: DATASET_FILE.into(),
                limit: max_bytes,
            });
        }
        if revision_of(&bytes) != revision {
            return Err(HubError::ShaMismatch {
                repo: repo.into(),
                revision,
                reason: "the content does not hash to the revision".into(),
            });
        }
        Ok(bytes)
    }

    fn publish_blocking(&self, repo: &str, bytes: &[u8]) -> Result<String, HubError> {
        let revision = revision_of(bytes);
        let dir = self.repo_dir(repo)?.join(&revision);
        let path = dir.join(DATASET_FILE);
        if path.exists() {
            return Ok(revision);
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // A private temporary name, then an atomic rename: a reader never sees half a file, and
        // two publishers of the same bytes write the same content.
        let tmp = dir.join(format!(
            ".data.jsonl.tmp-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| revision)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HubError> + Send + 'static,
) -> Result<T, HubError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HubError::Io(format!("local hub task: {e}")))?
}

#[async_trait]
impl Hub for LocalHub {
    async fn fetch(&self, repo: &str, revision: &str, max_bytes: u64) -> Result<Vec<u8>, HubError> {
        let (hub, repo, revision) = (self.clone(), repo.to_string(), revision.to_string());
        blocking(move || hub.fetch_blocking(&repo, &revision, max_bytes)).await
    }

    async fn publish(&self, repo: &str, bytes: &[u8]) -> Result<String, HubError> {
        let (hub, repo, bytes) = (self.clone(), repo.to_string(), bytes.to_vec());
        blocking(move || hub.publish_blocking(&repo, &bytes)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_is_the_documented_hash() {
        // sha256("murmuration-dataset\0") — the empty dataset's revision.
        let mut hasher = Sha256::new();
        hasher.update(b"murmuration-dataset\0");
        let full = hex::encode(hasher.finalize());
        assert_eq!(revision_of(b""), full[..40]);
        assert_ne!(revision_of(b"a"), revision_of(b"b"));
    }

    #[tokio::test]
    async fn publish_then_fetch_at_the_revision_and_every_failure_has_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = LocalHub::new(dir.path());
        let rev = hub
            .publish("alice/data", b"{\"a\":1}\n")
            .await
            .expect("publish");
        assert_eq!(rev.len(), 40);
        assert_eq!(rev, revision_of(b"{\"a\":1}\n"));
        assert_eq!(
            hub.publish("alice/data", b"{\"a\":1}\n")
                .await
                .expect("again"),
            rev,
            "the same bytes are the same revision"
        );
        assert_eq!(
            hub.fetch("alice/data", &rev, 1 << 20).await.expect("fetch"),
            b"{\"a\":1}\n"
        );
        assert_eq!(
            hub.fetch("alice/data", &rev.to_uppercase(), 1 << 20)
                .await
                .expect("upper-case revision"),
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
        let exact = b"{\"a\":1}\n".len() as u64;
        assert!(
            hub.fetch("alice/data", &rev, exact).await.is_ok(),
            "limit inclusive"
        );

        let err = hub.fetch("bob/data", &rev, 10).await.expect_err("no repo");
        assert!(matches!(err, HubError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("bob/data"));
        assert!(matches!(
            hub.fetch("alice/data", "main", 10).await,
            Err(HubError::RevisionNotFound { .. })
        ));
        assert!(matches!(
            hub.fetch("alice/data", &"0".repeat(40), 10).await,
            Err(HubError::RevisionNotFound { .. })
        ));
        let err = hub.fetch("alice/data", &rev, 3).await.expect_err("too big");
        assert!(matches!(err, HubError::TooLarge { limit: 3, .. }), "{err}");
        assert!(err.to_string().contains("alice/data"), "{err}");
        // Tampering with stored bytes is detected.
        std::fs::write(
            dir.path().join("alice/data").join(&rev).join(DATASET_FILE),
            b"tampered",
        )
        .expect("write");
        let err = hub
            .fetch("alice/data", &rev, 1 << 20)
            .await
            .expect_err("tampered");
        assert!(matches!(err, HubError::ShaMismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn repo_ids_that_could_leave_the_root_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("hub");
        let hub = LocalHub::new(&root);
        let rev = revision_of(b"x");
        for repo in [
            "../etc",
            "alice/..",
            "/etc/passwd",
            "alice\\data",
            "a/b/c",
            "alice",
            "alice/",
            "/alice",
            "alice/da..ta",
            ".alice/data",
            "alice/data-",
            "alice/da ta",
            "",
        ] {
            let err = hub.publish(repo, b"x").await.expect_err(repo);
            assert!(matches!(err, HubError::BadRepo { .. }), "{repo}: {err}");
            let err = hub.fetch(repo, &rev, 10).await.expect_err(repo);
            assert!(matches!(err, HubError::BadRepo { .. }), "{repo}: {err}");
        }
        let long = format!("{}/{}", "a".repeat(50), "b".repeat(50));
        assert!(matches!(
            hub.publish(&long, b"x").await,
            Err(HubError::BadRepo { .. })
        ));
        assert!(!root.exists(), "nothing was written anywhere");
        hub.publish("alice/my-data.v2", b"x")
            .await
            .expect("a good name");
    }
}
