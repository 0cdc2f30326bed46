//! The Hugging Face Hub client, built on hf-hub 1.x.
//!
//! hf-hub does repo info, the cached model downloads, `create_repo`, commits and settings. Two
//! things it cannot do the way this project needs are done next to it, against the documented
//! Hub endpoints:
//! * the file's metadata (`HEAD {endpoint}/{datasets/}{repo}/resolve/{sha}/{file}`, without
//!   following redirects, like Python's `get_hf_file_metadata`), so that the ETag, the size and
//!   `X-Repo-Commit` can be checked before any byte of the body is read;
//! * the capped dataset download: hf-hub's stream API (`download_file_stream`, with a `Range`
//!   when the size is unknown) read chunk by chunk and dropped as soon as the cap is passed, then
//!   stored in the Python cache layout by [`crate::cache`] (hf-hub's cache writer has no cap).

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use hf_hub::{HFClient, HFError};
use sha2::Digest;

use crate::cache;
use crate::config::ClientConfig;
use crate::error::HubError;
use crate::progress::{HfProgress, ProgressSink};
use crate::repo::{check_repo_id, check_revision, is_sha40, RepoKind, DATASET_FILE};
use crate::retry;

/// The Hub client. Cheap to clone (the connection pools are shared).
#[derive(Clone)]
pub struct HubClient {
    cfg: ClientConfig,
    hf: HFClient,
    /// A client that does not follow redirects, for `HEAD .../resolve/...`.
    http: reqwest::Client,
    progress: Option<Arc<dyn ProgressSink>>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // ClientConfig's Debug redacts the token.
        f.debug_struct("HubClient")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Repo metadata at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// The commit the revision resolved to (40 hex).
    pub sha: String,
    /// Whether the repo is private (when the Hub says).
    pub private: Option<bool>,
    /// The files at that commit.
    pub files: Vec<String>,
}

/// A base model in the cache: the files the engine loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The repo id.
    pub repo: String,
    /// The commit the files are from (40 hex).
    pub revision: String,
    /// `config.json`.
    pub config: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `model.safetensors`, or the shards listed in `model.safetensors.index.json`, in order.
    pub weights: Vec<PathBuf>,
    /// The snapshot directory holding them all.
    pub dir: PathBuf,
}

/// What `HEAD .../resolve/...` says about a file.
#[derive(Debug, Clone)]
struct FileMeta {
    etag: Option<String>,
    size: Option<u64>,
    commit: Option<String>,
}

/// Whether an operation reads or writes (401/403 mean different things).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

impl HubClient {
    /// A client for `cfg`. Builds the HTTP clients; makes no request.
    pub fn new(cfg: ClientConfig) -> Result<Self, HubError> {
        let ua = concat!("murmuration-hub/", env!("CARGO_PKG_VERSION"), "; hf-hub/1");
        let build = |redirects: bool| {
            let mut b = reqwest::Client::builder()
                .user_agent(ua)
                .connect_timeout(cfg.connect_timeout)
                .read_timeout(cfg.read_timeout);
            if !redirects {
                b = b.redirect(reqwest::redirect::Policy::none());
            }
            b.build()
                .map_err(|e| HubError::Io(format!("building the HTTP client: {e}")))
        };
        let mut builder = HFClient::builder()
            .endpoint(cfg.endpoint.clone())
            .cache_dir(cfg.cache_dir.clone())
            .client(build(true)?)
            .retry_max_attempts(cfg.retry.retries)
            .retry_base_delay(cfg.retry.base_delay);
        if let Some(t) = &cfg.token {
            builder = builder.token(t.expose());
        }
        let hf = builder
            .build()
            .map_err(|e| HubError::Io(format!("hub endpoint {:?}: {e}", cfg.endpoint)))?;
        Ok(HubClient {
            http: build(false)?,
            cfg,
            hf,
            progress: None,
        })
    }

    /// A client configured from the environment ([`ClientConfig::from_env`]).
    pub fn from_env() -> Result<Self, HubError> {
        Self::new(ClientConfig::from_env())
    }

    /// The same client, reporting byte progress of downloads and uploads to `sink`.
    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The underlying hf-hub client, for anything this crate does not wrap.
    pub fn hf(&self) -> &HFClient {
        &self.hf
    }

    fn hf_progress(&self) -> Option<hf_hub::progress::Progress> {
        self.progress
            .as_ref()
            .map(|p| hf_hub::progress::Progress::new(HfProgress(p.clone())))
    }

    // ------------------------------------------------------------------ datasets

    /// `data.jsonl` of dataset `repo` at the pinned `revision` (40 hex), at most `max_bytes`
    /// long. See [`HubClient::fetch_dataset_file`].
    pub async fn fetch_dataset(
        &self,
        repo: &str,
        revision: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, HubError> {
        self.fetch_dataset_file(repo, revision, DATASET_FILE, max_bytes)
            .await
    }

    /// `file` of dataset `repo` at the pinned `revision`:
    /// * `revision` must be 40 hex (a branch or tag name is rejected: it can move), and the Hub
    ///   must resolve it to exactly that commit ([`HubError::ShaMismatch`] otherwise, e.g. for
    ///   a branch named like a sha);
    /// * over `max_bytes` is [`HubError::TooLarge`]: refused from the announced size without
    ///   downloading, and in any case the stream is dropped as soon as the cap is passed;
    /// * the bytes must hash to the ETag the Hub sent (git blob sha1 or sha256);
    /// * served from, and stored in, the Python-compatible cache; offline, only the cache;
    /// * fetched from the network within `download_deadline` (retries included), else
    ///   [`HubError::Io`] saying so: a server trickling bytes cannot stall the caller.
    pub async fn fetch_dataset_file(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, HubError> {
        let path = self
            .fetch_to_cache(RepoKind::Dataset, repo, revision, file, max_bytes)
            .await?;
        let sha = check_revision(repo, revision)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            HubError::Io(format!(
                "{repo}@{sha}: reading cached {file} at {}: {e}",
                path.display()
            ))
        })?;
        if bytes.len() as u64 > max_bytes {
            return Err(HubError::TooLarge {
                repo: repo.into(),
                revision: sha,
                file: file.into(),
                limit: max_bytes,
            });
        }
        Ok(bytes)
    }

    /// The evaluation set `"org/name@sha"` (a dataset repo's `data.jsonl` at a pinned commit),
    /// fetched like [`HubClient::fetch_dataset`] into the cache; returns its cache path.
    pub async fn download_eval_set(&self, spec: &str, max_bytes: u64) -> Result<PathBuf, HubError> {
        let (repo, revision) = parse_spec(spec)?;
        let revision = revision.ok_or_else(|| HubError::RevisionNotFound {
            repo: repo.to_string(),
            revision: String::new(),
            reason: "an eval set must be pinned as org/name@<40-hex sha>".into(),
        })?;
        self.fetch_to_cache(RepoKind::Dataset, repo, revision, DATASET_FILE, max_bytes)
            .await
    }

    /// Publishes `bytes` as `data.jsonl` of dataset `repo`: creates the repo if it is missing
    /// (private when `private`; an existing repo keeps its visibility), commits the file to
    /// `main` and returns the new commit sha (40 hex).
    pub async fn publish_dataset(
        &self,
        repo: &str,
        bytes: &[u8],
        private: bool,
    ) -> Result<String, HubError> {
        let (ns, name) = check_repo_id(repo)?;
        self.offline_guard(repo, "publish")?;
        self.hf
            .create_repository()
            .repo_id(repo)
            .repo_type(hf_hub::RepoTypeDataset)
            .private(private)
            .exist_ok(true)
            .send()
            .await
            .map_err(|e| self.map_hf(e, Op::Write, repo, "main", None))?;
        let info = self
            .hf
            .dataset(ns, name)
            .create_commit()
            .operations(vec![hf_hub::repository::CommitOperation::add_bytes(
                DATASET_FILE,
                bytes.to_vec(),
            )])
            .commit_message(format!("Upload {DATASET_FILE} ({} bytes)", bytes.len()))
            .maybe_progress(self.hf_progress())
            .send()
            .await
            .map_err(|e| self.map_hf(e, Op::Write, repo, "main", Some(DATASET_FILE)))?;
        match info.commit_oid {
            Some(oid) if is_sha40(&oid) => Ok(oid.to_ascii_lowercase()),
            other => Err(HubError::Io(format!(
                "{repo}: the commit answer has no 40-hex commitOid (got {other:?})"
            ))),
        }
    }

    /// Makes dataset `repo` public (`public = true`) or private, through
    /// `PUT /api/datasets/{repo}/settings` with `{"private": bool}` (hf-hub's
    /// `update_settings`). Miners make a repo public only after their chain commitment landed.
    pub async fn set_visibility(&self, repo: &str, public: bool) -> Result<(), HubError> {
        let (ns, name) = check_repo_id(repo)?;
        self.offline_guard(repo, "change visibility")?;
        self.hf
            .dataset(ns, name)
            .update_settings()
            .private(!public)
            .send()
            .await
            .map_err(|e| self.map_hf(e, Op::Write, repo, "main", None))
    }

    /// The repo's metadata at `revision` (`None`: `main`), from
    /// `GET /api/{models|datasets}/{repo}[/revision/{rev}]`.
    pub async fn repo_info(
        &self,
        kind: RepoKind,
        repo: &str,
        revision: Option<&str>,
    ) -> Result<RepoInfo, HubError> {
        let (ns, name) = check_repo_id(repo)?;
        let rev_label = revision.unwrap_or("main");
        self.offline_guard(repo, "read repo info")?;
        let (sha, private, siblings) = match kind {
            RepoKind::Dataset => {
                let i = self
                    .hf
                    .dataset(ns, name)
                    .info()
                    .maybe_revision(revision.map(str::to_string))
                    .send()
                    .await
                    .map_err(|e| self.map_hf(e, Op::Read, repo, rev_label, None))?;
                (i.sha, i.private, i.siblings)
            }
            RepoKind::Model => {
                let i = self
                    .hf
                    .model(ns, name)
                    .info()
                    .maybe_revision(revision.map(str::to_string))
                    .send()
                    .await
                    .map_err(|e| self.map_hf(e, Op::Read, repo, rev_label, None))?;
                (i.sha, i.private, i.siblings)
            }
        };
        let sha = sha.filter(|s| is_sha40(s)).ok_or_else(|| {
            HubError::Io(format!(
                "{repo}@{rev_label}: the repo info has no 40-hex sha"
            ))
        })?;
        Ok(RepoInfo {
            sha: sha.to_ascii_lowercase(),
            private,
            files: siblings
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.rfilename)
                .collect(),
        })
    }

    // ------------------------------------------------------------------ models

    /// Downloads `files` of model `repo` at `revision` (`None`: `main`, resolved to a commit
    /// first) into the cache and returns `(commit sha, local paths)` in the order of `files`.
    /// Each file must exist and have the size the Hub announced ([`HubError::Corrupt`]
    /// otherwise). Offline, the files come from the cache (a branch through `refs/`), and a
    /// missing one is [`HubError::OfflineMissing`] naming it.
    pub async fn download_model_files(
        &self,
        repo: &str,
        revision: Option<&str>,
        files: &[&str],
    ) -> Result<(String, Vec<PathBuf>), HubError> {
        let (ns, name) = check_repo_id(repo)?;
        let rev_label = revision.unwrap_or("main");
        for f in files {
            self.check_file(repo, rev_label, f)?;
        }
        // Pinned and every file cached: served without asking the Hub (it may be down).
        if is_sha40(rev_label) {
            let sha = rev_label.to_ascii_lowercase();
            let cached: Option<Vec<PathBuf>> = files
                .iter()
                .map(|f| cache::lookup(&self.cfg.cache_dir, RepoKind::Model, repo, &sha, f))
                .collect();
            if let Some(paths) = cached {
                return Ok((sha, paths));
            }
        }
        if self.cfg.offline {
            let sha = self.cached_sha(RepoKind::Model, repo, rev_label, files.first().copied())?;
            let paths = files
                .iter()
                .map(|f| self.cached_or_offline_error(RepoKind::Model, repo, &sha, f))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((sha, paths));
        }
        let sha = self.repo_info(RepoKind::Model, repo, revision).await?.sha;
        if let Some(r) = revision.filter(|r| is_sha40(r)) {
            if !r.eq_ignore_ascii_case(&sha) {
                return Err(HubError::ShaMismatch {
                    repo: repo.into(),
                    revision: r.into(),
                    reason: format!("the Hub resolves it to commit {sha}"),
                });
            }
        }
        let mut paths = Vec::with_capacity(files.len());
        for f in files {
            let meta = self.head(RepoKind::Model, repo, &sha, f).await?;
            let path = self
                .hf
                .model(ns, name)
                .download_file()
                .filename(f.to_string())
                .revision(sha.clone())
                .maybe_progress(self.hf_progress())
                .send()
                .await
                .map_err(|e| self.map_hf(e, Op::Read, repo, &sha, Some(f)))?;
            let len = std::fs::metadata(&path)
                .map_err(|e| HubError::Io(format!("{repo}@{sha}: {f} at {}: {e}", path.display())))?
                .len();
            if let Some(size) = meta.size {
                if size != len {
                    return Err(HubError::Corrupt {
                        repo: repo.into(),
                        revision: sha.clone(),
                        file: f.to_string(),
                        reason: format!("{len} bytes on disk, the Hub announced {size}"),
                    });
                }
            }
            paths.push(path);
        }
        if !is_sha40(rev_label) {
            cache::write_ref(&self.cfg.cache_dir, RepoKind::Model, repo, rev_label, &sha)
                .map_err(|e| HubError::Io(format!("{repo}: writing refs/{rev_label}: {e}")))?;
        }
        Ok((sha, paths))
    }

    /// A base model `"org/name"` or `"org/name@revision"`: `config.json`, `tokenizer.json` and
    /// `model.safetensors`, or the shards `model.safetensors.index.json` lists, into the cache
    /// (see [`HubClient::download_model_files`]).
    pub async fn download_model(&self, spec: &str) -> Result<ModelFiles, HubError> {
        const INDEX: &str = "model.safetensors.index.json";
        let (repo, revision) = parse_spec(spec)?;
        let rev_label = revision.unwrap_or("main");
        // Resolve the revision once; every file then comes from that one commit.
        // Pinned and complete in the cache: no request at all, so the Hub may be down
        // (huggingface_hub does the same for a commit hash).
        if is_sha40(rev_label) {
            if let Some(files) = self.cached_model(repo, &rev_label.to_ascii_lowercase()) {
                tracing::debug!(repo, revision = %files.revision, "model served from the cache");
                return Ok(files);
            }
        }
        let (sha, sharded) = if self.cfg.offline {
            let sha = self.cached_sha(RepoKind::Model, repo, rev_label, Some("config.json"))?;
            let sharded =
                cache::lookup(&self.cfg.cache_dir, RepoKind::Model, repo, &sha, INDEX).is_some();
            (sha, sharded)
        } else {
            let info = self.repo_info(RepoKind::Model, repo, revision).await?;
            if is_sha40(rev_label) && !rev_label.eq_ignore_ascii_case(&info.sha) {
                return Err(HubError::ShaMismatch {
                    repo: repo.into(),
                    revision: rev_label.into(),
                    reason: format!("the Hub resolves it to commit {}", info.sha),
                });
            }
            let sharded = info.files.iter().any(|f| f == INDEX);
            (info.sha, sharded)
        };
        let (_, base) = self
            .download_model_files(repo, Some(&sha), &["config.json", "tokenizer.json"])
            .await?;
        let weights = if sharded {
            let (_, idx) = self
                .download_model_files(repo, Some(&sha), &[INDEX])
                .await?;
            let index = idx
                .first()
                .ok_or_else(|| HubError::Io(format!("{repo}@{sha}: {INDEX} missing")))?;
            let shards = shard_names(repo, &sha, index)?;
            let names: Vec<&str> = shards.iter().map(String::as_str).collect();
            self.download_model_files(repo, Some(&sha), &names).await?.1
        } else {
            self.download_model_files(repo, Some(&sha), &["model.safetensors"])
                .await?
                .1
        };
        if !self.cfg.offline && !is_sha40(rev_label) {
            cache::write_ref(&self.cfg.cache_dir, RepoKind::Model, repo, rev_label, &sha)
                .map_err(|e| HubError::Io(format!("{repo}: writing refs/{rev_label}: {e}")))?;
        }
        let [config, tokenizer]: [PathBuf; 2] = base.try_into().map_err(|_| {
            HubError::Io(format!(
                "{repo}@{sha}: config.json or tokenizer.json missing"
            ))
        })?;
        let dir = cache::snapshot_path(&self.cfg.cache_dir, RepoKind::Model, repo, &sha, "");
        Ok(ModelFiles {
            repo: repo.into(),
            revision: sha,
            config,
            tokenizer,
            weights,
            dir,
        })
    }

    // ------------------------------------------------------------------ internals

    /// Model `repo` at commit `sha` when the cache holds all of it: `config.json`,
    /// `tokenizer.json`, and `model.safetensors` or every shard its index names.
    fn cached_model(&self, repo: &str, sha: &str) -> Option<ModelFiles> {
        const INDEX: &str = "model.safetensors.index.json";
        let find = |f: &str| cache::lookup(&self.cfg.cache_dir, RepoKind::Model, repo, sha, f);
        let config = find("config.json")?;
        let tokenizer = find("tokenizer.json")?;
        let weights = match find(INDEX) {
            Some(index) => shard_names(repo, sha, &index)
                .ok()?
                .iter()
                .map(|f| find(f))
                .collect::<Option<Vec<_>>>()?,
            None => vec![find("model.safetensors")?],
        };
        Some(ModelFiles {
            repo: repo.into(),
            revision: sha.into(),
            config,
            tokenizer,
            weights,
            dir: cache::snapshot_path(&self.cfg.cache_dir, RepoKind::Model, repo, sha, ""),
        })
    }

    fn offline_guard(&self, repo: &str, what: &str) -> Result<(), HubError> {
        if self.cfg.offline {
            Err(HubError::Io(format!(
                "{repo}: cannot {what}: the hub is offline (HF_HUB_OFFLINE=1)"
            )))
        } else {
            Ok(())
        }
    }

    fn check_file(&self, repo: &str, revision: &str, file: &str) -> Result<(), HubError> {
        if cache::is_safe_file_name(file) {
            Ok(())
        } else {
            Err(HubError::FileNotFound {
                repo: repo.into(),
                revision: revision.into(),
                file: format!("{file:?} (not a relative path inside the repo)"),
            })
        }
    }

    /// The commit a revision names, from the cache only.
    fn cached_sha(
        &self,
        kind: RepoKind,
        repo: &str,
        revision: &str,
        file: Option<&str>,
    ) -> Result<String, HubError> {
        if is_sha40(revision) {
            return Ok(revision.to_ascii_lowercase());
        }
        cache::read_ref(&self.cfg.cache_dir, kind, repo, revision).ok_or_else(|| {
            HubError::OfflineMissing {
                repo: repo.into(),
                revision: revision.into(),
                file: format!(
                    "{} (no cached refs/{revision})",
                    file.unwrap_or("(any file)")
                ),
                cache_dir: self.cfg.cache_dir.display().to_string(),
            }
        })
    }

    fn cached_or_offline_error(
        &self,
        kind: RepoKind,
        repo: &str,
        sha: &str,
        file: &str,
    ) -> Result<PathBuf, HubError> {
        cache::lookup(&self.cfg.cache_dir, kind, repo, sha, file).ok_or_else(|| {
            HubError::OfflineMissing {
                repo: repo.into(),
                revision: sha.into(),
                file: file.into(),
                cache_dir: self.cfg.cache_dir.display().to_string(),
            }
        })
    }

    /// The pinned, capped, verified download into the cache (see
    /// [`HubClient::fetch_dataset_file`]).
    async fn fetch_to_cache(
        &self,
        kind: RepoKind,
        repo: &str,
        revision: &str,
        file: &str,
        max_bytes: u64,
    ) -> Result<PathBuf, HubError> {
        let (ns, name) = check_repo_id(repo)?;
        let sha = check_revision(repo, revision)?;
        self.check_file(repo, &sha, file)?;
        let too_large = || HubError::TooLarge {
            repo: repo.into(),
            revision: sha.clone(),
            file: file.into(),
            limit: max_bytes,
        };
        if let Some(path) = cache::lookup(&self.cfg.cache_dir, kind, repo, &sha, file) {
            let len = std::fs::metadata(&path)
                .map(|m| m.len())
                .unwrap_or(u64::MAX);
            if len > max_bytes {
                return Err(too_large());
            }
            tracing::debug!(repo, revision = %sha, file, "served from the cache");
            return Ok(path);
        }
        if self.cfg.offline {
            return Err(HubError::OfflineMissing {
                repo: repo.into(),
                revision: sha.clone(),
                file: file.into(),
                cache_dir: self.cfg.cache_dir.display().to_string(),
            });
        }
        let deadline = self.cfg.download_deadline;
        match tokio::time::timeout(
            deadline,
            self.download_to_cache(kind, (ns, name), repo, &sha, file, max_bytes),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(HubError::Io(format!(
                "{repo}@{sha}: fetching {file} took longer than the download deadline of {:.0} s; \
                 the server is too slow",
                deadline.as_secs_f64()
            ))),
        }
    }

    /// The network part of [`Self::fetch_to_cache`] (under its deadline): resolve, HEAD, the
    /// capped body, the checks, the cache.
    async fn download_to_cache(
        &self,
        kind: RepoKind,
        (ns, name): (&str, &str),
        repo: &str,
        sha: &str,
        file: &str,
        max_bytes: u64,
    ) -> Result<PathBuf, HubError> {
        let sha = sha.to_string();
        let too_large = || HubError::TooLarge {
            repo: repo.into(),
            revision: sha.clone(),
            file: file.into(),
            limit: max_bytes,
        };
        // 1. The Hub must resolve this revision to exactly this commit.
        let info = self.repo_info(kind, repo, Some(&sha)).await?;
        if info.sha != sha {
            return Err(HubError::ShaMismatch {
                repo: repo.into(),
                revision: sha.clone(),
                reason: format!(
                    "the Hub resolves it to commit {}: a branch or tag named like a sha is not a \
                     pinned revision",
                    info.sha
                ),
            });
        }
        // 2. The file's metadata; refuse an announced oversize before reading any body.
        let meta = self.head(kind, repo, &sha, file).await?;
        if let Some(c) = &meta.commit {
            if !c.eq_ignore_ascii_case(&sha) {
                return Err(HubError::ShaMismatch {
                    repo: repo.into(),
                    revision: sha.clone(),
                    reason: format!("{file} is served from commit {c}"),
                });
            }
        }
        if meta.size.is_some_and(|s| s > max_bytes) {
            return Err(too_large());
        }
        // 3. The body, capped while streaming.
        let bytes = self
            .get_capped(kind, ns, name, repo, &sha, file, max_bytes, meta.size)
            .await?;
        // 4. Verify against what the Hub announced.
        if let Some(size) = meta.size {
            if size != bytes.len() as u64 {
                return Err(HubError::Corrupt {
                    repo: repo.into(),
                    revision: sha.clone(),
                    file: file.into(),
                    reason: format!("received {} bytes, the Hub announced {size}", bytes.len()),
                });
            }
        }
        let etag = match &meta.etag {
            Some(etag) => {
                verify_etag(etag, &bytes).map_err(|reason| HubError::ShaMismatch {
                    repo: repo.into(),
                    revision: sha.clone(),
                    reason: format!("{file}: {reason}"),
                })?;
                etag.clone()
            }
            None => hex::encode(sha2::Sha256::digest(&bytes)),
        };
        cache::store(&self.cfg.cache_dir, kind, repo, &sha, file, &etag, &bytes).map_err(|e| {
            HubError::Io(format!(
                "{repo}@{sha}: storing {file} in the cache {}: {e}",
                self.cfg.cache_dir.display()
            ))
        })
    }

    /// Reads the body through hf-hub's stream API, dropping the stream as soon as more than
    /// `max_bytes` arrived; a transport failure mid-body starts over (with backoff) while
    /// retries remain.
    #[allow(clippy::too_many_arguments)]
    async fn get_capped(
        &self,
        kind: RepoKind,
        ns: &str,
        name: &str,
        repo: &str,
        sha: &str,
        file: &str,
        max_bytes: u64,
        announced: Option<u64>,
    ) -> Result<Vec<u8>, HubError> {
        let mut attempt = 0;
        loop {
            match self
                .get_capped_once(kind, ns, name, repo, sha, file, max_bytes, announced)
                .await
            {
                Err(Retryable(e)) if attempt < self.cfg.retry.retries => {
                    tracing::debug!(repo, file, attempt, error = %e, "download interrupted, retrying");
                    tokio::time::sleep(retry::backoff(&self.cfg.retry, attempt)).await;
                    attempt += 1;
                }
                Err(Retryable(e)) => {
                    return Err(HubError::Io(format!(
                        "{repo}@{sha}: downloading {file} failed after {} tries: {e}",
                        attempt + 1
                    )))
                }
                Ok(r) => return r,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn get_capped_once(
        &self,
        kind: RepoKind,
        ns: &str,
        name: &str,
        repo: &str,
        sha: &str,
        file: &str,
        max_bytes: u64,
        announced: Option<u64>,
    ) -> Result<Result<Vec<u8>, HubError>, Retryable> {
        if announced == Some(0) {
            return Ok(Ok(Vec::new()));
        }
        // Without an announced size, ask for one byte past the cap: an honest server then
        // cannot send more than that.
        let range = announced.is_none().then(|| 0..max_bytes.saturating_add(1));
        let progress = self.hf_progress();
        let opened = match kind {
            RepoKind::Dataset => {
                self.hf
                    .dataset(ns, name)
                    .download_file_stream()
                    .filename(file.to_string())
                    .revision(sha.to_string())
                    .maybe_range(range)
                    .maybe_progress(progress)
                    .send()
                    .await
            }
            RepoKind::Model => {
                self.hf
                    .model(ns, name)
                    .download_file_stream()
                    .filename(file.to_string())
                    .revision(sha.to_string())
                    .maybe_range(range)
                    .maybe_progress(progress)
                    .send()
                    .await
            }
        };
        let (_, mut stream) = match opened {
            Ok(s) => s,
            Err(e) => return Ok(Err(self.map_hf(e, Op::Read, repo, sha, Some(file)))),
        };
        let mut buf = Vec::with_capacity(announced.unwrap_or(0).min(max_bytes) as usize);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    if buf.len() as u64 + c.len() as u64 > max_bytes {
                        // Dropping the stream closes the connection: nothing more is read.
                        drop(stream);
                        return Ok(Err(HubError::TooLarge {
                            repo: repo.into(),
                            revision: sha.into(),
                            file: file.into(),
                            limit: max_bytes,
                        }));
                    }
                    buf.extend_from_slice(&c);
                }
                Err(HFError::Request { source, .. }) => {
                    return Err(Retryable(error_chain(&source.without_url())))
                }
                Err(e) => return Ok(Err(self.map_hf(e, Op::Read, repo, sha, Some(file)))),
            }
        }
        Ok(Ok(buf))
    }

    /// `HEAD {endpoint}/{prefix}{repo}/resolve/{sha}/{file}` without following redirects.
    async fn head(
        &self,
        kind: RepoKind,
        repo: &str,
        sha: &str,
        file: &str,
    ) -> Result<FileMeta, HubError> {
        let url = format!(
            "{}/{}{}/resolve/{}/{}",
            self.cfg.endpoint,
            kind.url_prefix(),
            repo,
            sha,
            encode_path(file)
        );
        let resp = retry::send(&self.cfg.retry, || {
            let mut req = self
                .http
                .head(&url)
                .header(reqwest::header::ACCEPT_ENCODING, "identity");
            if let Some(t) = &self.cfg.token {
                req = req.bearer_auth(t.expose());
            }
            req.send()
        })
        .await
        .map_err(|e| {
            HubError::Io(format!(
                "{repo}@{sha}: HEAD {file} failed after {} tries: {}",
                self.cfg.retry.retries + 1,
                error_chain(&e.without_url())
            ))
        })?;
        let status = resp.status().as_u16();
        let h = resp.headers();
        let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        if !(200..400).contains(&status) {
            let code = header("x-error-code");
            let message = header("x-error-message").unwrap_or_else(|| format!("HTTP {status}"));
            return Err(self.map_status(
                status,
                code.as_deref(),
                &message,
                Op::Read,
                repo,
                sha,
                Some(file),
            ));
        }
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let size = header("x-linked-size")
            .or_else(|| (status < 300).then(|| header("content-length")).flatten())
            .and_then(|s| s.trim().parse().ok());
        Ok(FileMeta {
            etag,
            size,
            commit: header("x-repo-commit"),
        })
    }

    /// hf-hub's error, named after the repo, revision and file, in this crate's terms.
    fn map_hf(
        &self,
        e: HFError,
        op: Op,
        repo: &str,
        revision: &str,
        file: Option<&str>,
    ) -> HubError {
        let ctx_of = |c: &hf_hub::HFError| -> Option<(u16, Option<String>, String)> {
            let ctx = match c {
                HFError::Http { context }
                | HFError::AuthRequired { context }
                | HFError::Forbidden { context }
                | HFError::Conflict { context }
                | HFError::RateLimited { context, .. } => Some(context.as_ref()),
                HFError::RepoNotFound { context, .. }
                | HFError::RevisionNotFound { context, .. }
                | HFError::EntryNotFound { context, .. } => context.as_deref(),
                _ => None,
            }?;
            Some((
                ctx.status.as_u16(),
                ctx.error_code.clone(),
                ctx.server_message
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {}", ctx.status.as_u16())),
            ))
        };
        if let Some((status, code, message)) = ctx_of(&e) {
            // A 404 without the Hub's X-Error-Code: trust hf-hub's reading of the endpoint.
            let plain_404 = status == 404 && code.is_none();
            if !plain_404 {
                return self.map_status(
                    status,
                    code.as_deref(),
                    &message,
                    op,
                    repo,
                    revision,
                    file,
                );
            }
        }
        match e {
            HFError::RepoNotFound { .. } => HubError::NotFound { repo: repo.into() },
            HFError::RevisionNotFound { .. } => HubError::RevisionNotFound {
                repo: repo.into(),
                revision: revision.into(),
                reason: "no such revision".into(),
            },
            HFError::EntryNotFound { path, .. } => HubError::FileNotFound {
                repo: repo.into(),
                revision: revision.into(),
                file: file.map(str::to_string).unwrap_or(path),
            },
            HFError::LocalEntryNotFound { path } => HubError::OfflineMissing {
                repo: repo.into(),
                revision: revision.into(),
                file: path,
                cache_dir: self.cfg.cache_dir.display().to_string(),
            },
            HFError::Request { source, .. } => HubError::Io(format!(
                "{repo}@{revision}{}: network error after {} tries: {}",
                file.map(|f| format!(" {f}")).unwrap_or_default(),
                self.cfg.retry.retries + 1,
                error_chain(&source.without_url())
            )),
            other => HubError::Io(format!(
                "{repo}@{revision}{}: {other}",
                file.map(|f| format!(" {f}")).unwrap_or_default()
            )),
        }
    }

    /// An HTTP failure status in this crate's terms, using the Hub's `X-Error-Code`
    /// (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`) where it sent one.
    #[allow(clippy::too_many_arguments)]
    fn map_status(
        &self,
        status: u16,
        code: Option<&str>,
        message: &str,
        op: Op,
        repo: &str,
        revision: &str,
        file: Option<&str>,
    ) -> HubError {
        let has_token = self.cfg.token.is_some();
        match (status, code) {
            (401, _) if has_token => HubError::Unauthorized {
                repo: repo.into(),
                reason: format!("the token was refused: {message}"),
            },
            (401, _) if op == Op::Write => HubError::Unauthorized {
                repo: repo.into(),
                reason: format!("no token (set HF_TOKEN): {message}"),
            },
            (401, _) => HubError::Private {
                repo: repo.into(),
                reason: format!(
                    "no token was sent (set HF_TOKEN to read private repos): {message}"
                ),
            },
            (403, _) if op == Op::Write => HubError::Unauthorized {
                repo: repo.into(),
                reason: format!("the token may not write here: {message}"),
            },
            (403, _) => HubError::Private {
                repo: repo.into(),
                reason: message.into(),
            },
            (404, Some("RevisionNotFound")) => HubError::RevisionNotFound {
                repo: repo.into(),
                revision: revision.into(),
                reason: message.into(),
            },
            (404, Some("EntryNotFound")) => HubError::FileNotFound {
                repo: repo.into(),
                revision: revision.into(),
                file: file.unwrap_or("(unknown)").into(),
            },
            (404, Some("RepoNotFound")) => HubError::NotFound { repo: repo.into() },
            (404, _) => match file {
                Some(f) => HubError::FileNotFound {
                    repo: repo.into(),
                    revision: revision.into(),
                    file: f.into(),
                },
                None => HubError::NotFound { repo: repo.into() },
            },
            _ => HubError::Io(format!(
                "{repo}@{revision}{}: HTTP {status} after the retries: {message}",
                file.map(|f| format!(" {f}")).unwrap_or_default()
            )),
        }
    }
}

/// An error and its causes, `a: b: c` (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// A transport failure in the middle of a body (worth starting over).
struct Retryable(String);

/// Checks `bytes` against the Hub's ETag: 64 hex is the sha256 of the content (LFS/Xet files),
/// 40 hex the git blob sha1 (regular files); other ETags are not checked.
fn verify_etag(etag: &str, bytes: &[u8]) -> Result<(), String> {
    let etag_l = etag.to_ascii_lowercase();
    if etag_l.len() == 64 && etag_l.chars().all(|c| c.is_ascii_hexdigit()) {
        let got = hex::encode(sha2::Sha256::digest(bytes));
        if got != etag_l {
            return Err(format!(
                "content sha256 {got} differs from the ETag {etag_l}"
            ));
        }
    } else if is_sha40(&etag_l) {
        let got = git_blob_sha1(bytes);
        if got != etag_l {
            return Err(format!(
                "content git blob sha1 {got} differs from the ETag {etag_l}"
            ));
        }
    }
    Ok(())
}

/// The git blob id of `bytes`: sha1 of `"blob {len}\0"` followed by the content.
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    sha1::Digest::update(&mut h, format!("blob {}\0", bytes.len()).as_bytes());
    sha1::Digest::update(&mut h, bytes);
    hex::encode(sha1::Digest::finalize(h))
}

/// `"org/name"` or `"org/name@revision"`.
pub fn parse_spec(spec: &str) -> Result<(&str, Option<&str>), HubError> {
    let (repo, rev) = match spec.split_once('@') {
        Some((r, v)) => (r, Some(v)),
        None => (spec, None),
    };
    check_repo_id(repo)?;
    if rev == Some("") {
        return Err(HubError::RevisionNotFound {
            repo: repo.into(),
            revision: String::new(),
            reason: "empty revision after '@'".into(),
        });
    }
    Ok((repo, rev))
}

/// The shard files named in a `model.safetensors.index.json` (`weight_map` values), sorted and
/// deduplicated; each must be a safe relative path.
fn shard_names(repo: &str, sha: &str, index: &std::path::Path) -> Result<Vec<String>, HubError> {
    let bad = |reason: String| HubError::Corrupt {
        repo: repo.into(),
        revision: sha.into(),
        file: "model.safetensors.index.json".into(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no weight_map object".into()))?;
    let mut names: Vec<String> = map
        .values()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(bad("weight_map names no shard".into()));
    }
    if let Some(n) = names.iter().find(|n| !cache::is_safe_file_name(n)) {
        return Err(bad(format!("shard name {n:?} is not a relative path")));
    }
    Ok(names)
}

/// Percent-encodes what may not appear raw in a URL path (keeps `/`).
fn encode_path(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for b in file.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_checks() {
        let b = b"hello\n";
        // `git hash-object` of "hello\n".
        assert_eq!(git_blob_sha1(b), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert!(verify_etag("ce013625030ba8dba906f756967f9e9ca394464a", b).is_ok());
        assert!(verify_etag("ce013625030ba8dba906f756967f9e9ca394464b", b).is_err());
        let s = hex::encode(sha2::Sha256::digest(b));
        assert!(verify_etag(&s, b).is_ok());
        assert!(verify_etag(&s, b"other").is_err());
        assert!(verify_etag("not-a-hash", b).is_ok());
    }

    #[test]
    fn specs() {
        assert_eq!(parse_spec("a/b").unwrap(), ("a/b", None));
        assert_eq!(parse_spec("a/b@main").unwrap(), ("a/b", Some("main")));
        assert!(parse_spec("a/b@").is_err());
        assert!(matches!(parse_spec("../b"), Err(HubError::BadRepo { .. })));
    }
}
