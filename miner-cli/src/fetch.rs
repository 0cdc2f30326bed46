//! `fetch-all`: every miner's committed dataset, downloaded through the configured hub at the
//! pinned revision, `[hub] parallel_downloads` at a time, into one directory with an
//! `index.json` that `overlap` reads. Resumable: a file already there whose SHA-256 matches its
//! `.sha256` sidecar (written after the file, which is itself renamed into place) is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use hub::Hub;
use protocol::commitment::Commitment;
use protocol::dataset::parse_dataset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtensor::CommitmentRecord;

use crate::ctx::Ctx;

/// The index file's name in the output directory.
pub const INDEX: &str = "index.json";

/// One commitment and what became of its dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The miner's uid (none when the hotkey is no longer registered).
    pub uid: Option<u16>,
    /// The miner's hotkey (SS58).
    pub hotkey: String,
    /// The commitment as read from chain.
    pub commitment: String,
    /// Its repo ("" when the commitment did not parse).
    pub repo: String,
    /// Its revision ("" when the commitment did not parse).
    pub revision: String,
    /// The block it landed in.
    pub commit_block: u64,
    /// The dataset's file in the directory, when it was fetched.
    pub file: Option<String>,
    /// SHA-256 of that file.
    pub sha256: Option<String>,
    /// Content hash of its canonical rows, when it is a valid dataset.
    pub content_hash: Option<String>,
    /// Rows the validator would use, when valid.
    pub rows: Option<usize>,
    /// `downloaded`, `skipped` or `failed`.
    pub status: String,
    /// Why it failed, or why the validator would reject the file ("" otherwise).
    pub reason: String,
}

/// `index.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    /// The subnet.
    pub netuid: u16,
    /// Every commitment, oldest first.
    pub entries: Vec<IndexEntry>,
    /// How many could not be fetched.
    pub failed: usize,
}

/// Reads `DIR/index.json`.
pub fn read_index(dir: &Path) -> Result<Index> {
    let path = dir.join(INDEX);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no index of fetched datasets (run `miner-cli fetch-all --out {}` first)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a fetch-all index", path.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The file name of `repo@revision` in the output directory.
pub fn file_name(c: &Commitment) -> String {
    format!("{}@{}.jsonl", c.repo.replace('/', "__"), c.revision)
}

/// Whether `path` is complete: its `.sha256` sidecar names its content.
fn present(path: &Path) -> Option<String> {
    let expected = std::fs::read_to_string(sidecar(path)).ok()?;
    let bytes = std::fs::read(path).ok()?;
    let actual = sha256_hex(&bytes);
    (actual == expected.trim()).then_some(actual)
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Writes `bytes` to `path` through a temporary file, then its sidecar.
fn store(path: &Path, bytes: &[u8]) -> Result<String> {
    let sha = sha256_hex(bytes);
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::write(sidecar(path), &sha)
        .with_context(|| format!("writing {}", sidecar(path).display()))?;
    Ok(sha)
}

/// `fetch-all --out DIR`.
pub async fn fetch_all(ctx: &Ctx, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let chain = ctx.chain().await?;
    let netuid = ctx.config.netuid;
    let records: Vec<CommitmentRecord> = chain.commitments(netuid).await?;
    let bar = crate::ui::items(records.len() as u64, "datasets");
    let hub: Arc<dyn Hub> = ctx.hub(Some(bar.clone()))?;
    let max_bytes = ctx.config.dataset.max_file_bytes;
    let limits = ctx.config.dataset.clone();

    let mut entries = Vec::new();
    // One download per distinct repo@revision.
    let mut wanted: BTreeMap<String, Commitment> = BTreeMap::new();
    for r in &records {
        let mut entry = IndexEntry {
            uid: r.uid,
            hotkey: r.hotkey.to_ss58(),
            commitment: String::from_utf8_lossy(&r.data).into_owned(),
            repo: String::new(),
            revision: String::new(),
            commit_block: r.block,
            file: None,
            sha256: None,
            content_hash: None,
            rows: None,
            status: "failed".into(),
            reason: String::new(),
        };
        match Commitment::from_bytes(&r.data) {
            Ok(c) => {
                entry.repo = c.repo.clone();
                entry.revision = c.revision.clone();
                entry.file = Some(file_name(&c));
                wanted.insert(file_name(&c), c);
            }
            Err(e) => entry.reason = e.to_string(),
        }
        entries.push(entry);
    }

    let semaphore = Arc::new(tokio::sync::Semaphore::new(
        ctx.config.hub.parallel_downloads.max(1),
    ));
    let mut outcomes: BTreeMap<String, Result<(String, bool), String>> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (name, c) in wanted {
        let path = out.join(&name);
        if let Some(sha) = present(&path) {
            outcomes.insert(name, Ok((sha, false)));
            continue;
        }
        let (hub, semaphore) = (hub.clone(), semaphore.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let result = hub
                .fetch(&c.repo, &c.revision, max_bytes)
                .await
                .map_err(|e| format!("fetch {}@{}: {e}", c.repo, c.revision))
                .and_then(|bytes| store(&path, &bytes).map_err(|e| format!("{e:#}")));
            (name, result.map(|sha| (sha, true)))
        });
    }
    // Skipped ones are done already.
    let skipped_files = outcomes.len() as u64;
    bar.inc(skipped_files);
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined.map_err(|e| anyhow!("a download task failed: {e}"))?;
        bar.inc(1);
        outcomes.insert(name, result);
    }
    bar.finish_and_clear();

    let (mut downloaded, mut skipped, mut failed) = (0usize, 0usize, Vec::new());
    let mut invalid = Vec::new();
    for entry in &mut entries {
        let Some(name) = entry.file.clone() else {
            failed.push(format!(
                "uid {} {}: {}",
                entry.uid.map_or("-".into(), |u| u.to_string()),
                entry.hotkey,
                entry.reason
            ));
            continue;
        };
        match outcomes.get(&name) {
            Some(Ok((sha, fresh))) => {
                entry.sha256 = Some(sha.clone());
                entry.status = if *fresh { "downloaded" } else { "skipped" }.into();
                if *fresh {
                    downloaded += 1;
                } else {
                    skipped += 1;
                }
                let path = out.join(&name);
                match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| parse_dataset(&b, &limits).map_err(|e| e.to_string()))
                {
                    Ok(d) => {
                        entry.content_hash = Some(d.content_hash);
                        entry.rows = Some(d.rows.len());
                    }
                    Err(e) => {
                        entry.reason = format!("invalid dataset: {e}");
                        invalid.push(format!(
                            "uid {} {} ({}): {}",
                            entry.uid.map_or("-".into(), |u| u.to_string()),
                            entry.hotkey,
                            entry.repo,
                            entry.reason
                        ));
                    }
                }
            }
            Some(Err(reason)) => {
                entry.reason = reason.clone();
                entry.file = None;
                failed.push(format!(
                    "uid {} {} ({}): {reason}",
                    entry.uid.map_or("-".into(), |u| u.to_string()),
                    entry.hotkey,
                    entry.repo
                ));
            }
            None => {
                entry.reason = "not fetched".into();
                entry.file = None;
                failed.push(format!("{}: not fetched", entry.repo));
            }
        }
    }
    let index = Index {
        netuid,
        failed: failed.len(),
        entries,
    };
    let index_path = out.join(INDEX);
    std::fs::write(&index_path, serde_json::to_string_pretty(&index)?)
        .with_context(|| format!("writing {}", index_path.display()))?;
    println!(
        "{} commitment(s) on netuid {netuid}: downloaded {downloaded}, skipped {skipped} (already present, hash matches), failed {}",
        index.entries.len(),
        failed.len()
    );
    for f in &failed {
        println!("failed: {f}");
    }
    for i in &invalid {
        println!("fetched but the validator would reject it: {i}");
    }
    println!("index: {}", index_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_file_is_present_until_its_bytes_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a__b@0123.jsonl");
        assert_eq!(present(&path), None);
        let sha = store(&path, b"rows\n").expect("store");
        assert_eq!(present(&path), Some(sha));
        // A file changed (or cut short) on disk is fetched again.
        std::fs::write(&path, b"row").expect("write");
        assert_eq!(present(&path), None);
        // A file without its sidecar (an interrupted run) too.
        store(&path, b"rows\n").expect("store");
        std::fs::remove_file(sidecar(&path)).expect("rm");
        assert_eq!(present(&path), None);
    }

    #[test]
    fn file_names_keep_repo_and_revision() {
        let c = Commitment::new("ns/name.v2", "1", &"ab".repeat(20)).expect("commitment");
        assert_eq!(
            file_name(&c),
            format!("ns__name.v2@{}.jsonl", "ab".repeat(20))
        );
    }
}
