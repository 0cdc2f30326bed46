//! The Python `huggingface_hub` cache layout, which hf-hub 1.x shares:
//!
//! ```text
//! <cache>/datasets--ns--name/
//!     blobs/<etag>                          the content, named by its ETag
//!     snapshots/<commit sha>/data.jsonl  -> ../../blobs/<etag>   (relative symlink)
//!     refs/main                             the commit sha a branch pointed at when last seen
//! ```
//!
//! A file under `snapshots/<sha>/` is immutable, so it is served without asking the Hub.

use std::path::{Component, Path, PathBuf};

use crate::repo::{is_sha40, RepoKind};

/// `datasets--ns--name` / `models--ns--name`: the repo's folder in the cache.
pub fn repo_folder(kind: RepoKind, repo: &str) -> String {
    format!("{}--{}", kind.plural(), repo.replace('/', "--"))
}

/// `<cache>/<repo folder>/snapshots/<sha>/<file>`.
pub fn snapshot_path(
    cache_dir: &Path,
    kind: RepoKind,
    repo: &str,
    sha: &str,
    file: &str,
) -> PathBuf {
    cache_dir
        .join(repo_folder(kind, repo))
        .join("snapshots")
        .join(sha)
        .join(file)
}

/// `<cache>/<repo folder>/blobs/<etag>`.
pub fn blob_path(cache_dir: &Path, kind: RepoKind, repo: &str, etag: &str) -> PathBuf {
    cache_dir
        .join(repo_folder(kind, repo))
        .join("blobs")
        .join(etag)
}

/// `<cache>/<repo folder>/refs/<name>`.
pub fn ref_path(cache_dir: &Path, kind: RepoKind, repo: &str, name: &str) -> PathBuf {
    cache_dir
        .join(repo_folder(kind, repo))
        .join("refs")
        .join(name)
}

/// The commit sha a ref (branch) pointed at when it was last resolved, if cached.
pub fn read_ref(cache_dir: &Path, kind: RepoKind, repo: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(ref_path(cache_dir, kind, repo, name)).ok()?;
    let sha = text.trim();
    is_sha40(sha).then(|| sha.to_string())
}

/// Records that `name` pointed at `sha` (as Python does after resolving a branch).
pub fn write_ref(
    cache_dir: &Path,
    kind: RepoKind,
    repo: &str,
    name: &str,
    sha: &str,
) -> std::io::Result<()> {
    let path = ref_path(cache_dir, kind, repo, name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, sha)
}

/// The cached snapshot file for `file` at commit `sha`, when it exists and its blob is there.
pub fn lookup(
    cache_dir: &Path,
    kind: RepoKind,
    repo: &str,
    sha: &str,
    file: &str,
) -> Option<PathBuf> {
    let path = snapshot_path(cache_dir, kind, repo, sha, file);
    // `metadata` follows the symlink: a dangling pointer is a miss.
    std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
    Some(path)
}

/// Stores `bytes` as `blobs/<etag>` (written to a temporary name, then renamed) and points
/// `snapshots/<sha>/<file>` at it with a relative symlink (a copy where symlinks are not
/// available). Returns the snapshot path.
pub fn store(
    cache_dir: &Path,
    kind: RepoKind,
    repo: &str,
    sha: &str,
    file: &str,
    etag: &str,
    bytes: &[u8],
) -> std::io::Result<PathBuf> {
    let blob = blob_path(cache_dir, kind, repo, etag);
    if let Some(parent) = blob.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let same = std::fs::metadata(&blob)
        .map(|m| m.len() == bytes.len() as u64)
        .unwrap_or(false);
    if !same {
        // Unique per process and call: concurrent fetches of one file never share a temp file.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = blob.with_file_name(format!("{etag}.incomplete.{}.{n}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &blob)?;
    }
    link_snapshot(cache_dir, kind, repo, sha, file, etag)
}

/// Points `snapshots/<sha>/<file>` at `blobs/<etag>` (which must exist).
pub fn link_snapshot(
    cache_dir: &Path,
    kind: RepoKind,
    repo: &str,
    sha: &str,
    file: &str,
    etag: &str,
) -> std::io::Result<PathBuf> {
    let blob = blob_path(cache_dir, kind, repo, etag);
    let snap = snapshot_path(cache_dir, kind, repo, sha, file);
    let parent = snap
        .parent()
        .ok_or_else(|| std::io::Error::other("snapshot path has no parent"))?;
    std::fs::create_dir_all(parent)?;
    if std::fs::symlink_metadata(&snap).is_ok() {
        match std::fs::remove_file(&snap) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    // snapshots/<sha>/<a>/<b> -> ../../../blobs/<etag>: one `..` per directory below the repo
    // folder.
    let depth = 2 + Path::new(file).components().count() - 1;
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push("blobs");
    target.push(etag);
    #[cfg(unix)]
    {
        match std::os::unix::fs::symlink(&target, &snap) {
            // A concurrent fetch of the same file linked it first: same target.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = target;
        std::fs::copy(&blob, &snap)?;
    }
    let _ = blob;
    Ok(snap)
}

/// True when `file` is a relative path inside a repo: no `..`, no root, no empty components,
/// no backslashes.
pub fn is_safe_file_name(file: &str) -> bool {
    !file.is_empty()
        && !file.contains('\\')
        && !file.starts_with('/')
        && !file
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        && Path::new(file)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_python() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "a".repeat(40);
        let p = store(
            dir.path(),
            RepoKind::Dataset,
            "ns/name",
            &sha,
            "sub/x.jsonl",
            "etag1",
            b"hi",
        )
        .unwrap();
        assert_eq!(
            p,
            dir.path()
                .join("datasets--ns--name/snapshots")
                .join(&sha)
                .join("sub/x.jsonl")
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"hi");
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(&p).unwrap(),
            PathBuf::from("../../../blobs/etag1")
        );
        assert!(dir.path().join("datasets--ns--name/blobs/etag1").is_file());
        assert_eq!(
            lookup(
                dir.path(),
                RepoKind::Dataset,
                "ns/name",
                &sha,
                "sub/x.jsonl"
            ),
            Some(p)
        );
        assert_eq!(
            lookup(dir.path(), RepoKind::Model, "ns/name", &sha, "sub/x.jsonl"),
            None
        );
        write_ref(dir.path(), RepoKind::Model, "a/b", "main", &sha).unwrap();
        assert_eq!(
            read_ref(dir.path(), RepoKind::Model, "a/b", "main"),
            Some(sha)
        );
    }

    #[test]
    fn file_names() {
        assert!(is_safe_file_name("data.jsonl"));
        assert!(is_safe_file_name("a/b.json"));
        for bad in ["", "../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "a/.."] {
            assert!(!is_safe_file_name(bad), "{bad}");
        }
    }
}
