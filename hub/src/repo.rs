//! Hub repositories: their kinds, ids and pinned revisions, checked under one rule.

use crate::error::HubError;

/// The default file name of a miner dataset inside its repo.
pub const DATASET_FILE: &str = "data.jsonl";

/// The kind of a Hub repository (the URL prefix and the cache folder prefix depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoKind {
    /// A model repo (`/api/models/...`, no URL prefix, cache folder `models--`).
    Model,
    /// A dataset repo (`/api/datasets/...`, URL prefix `datasets/`, cache folder `datasets--`).
    Dataset,
}

impl RepoKind {
    /// The plural used in API paths and cache folders: `models` or `datasets`.
    pub fn plural(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }

    /// The singular used in `POST /api/repos/create` bodies: `model` or `dataset`.
    pub fn singular(self) -> &'static str {
        match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        }
    }

    /// The prefix of web and resolve URLs: empty for models, `datasets/` for datasets.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
        }
    }
}

/// Splits and checks a repo id: `namespace/name` under the project's one rule
/// ([`protocol::commitment::split_repo_id`], the Hugging Face rules).
pub fn check_repo_id(repo: &str) -> Result<(&str, &str), HubError> {
    protocol::commitment::split_repo_id(repo).ok_or_else(|| HubError::BadRepo {
        repo: repo.to_string(),
        reason: "must be namespace/name (96 characters at most) of letters, digits, '.', '_', \
                 '-', not starting or ending with '.' or '-', without '..'"
            .into(),
    })
}

/// Checks a pinned revision: exactly 40 hex digits; returns it in lower case. A branch or tag
/// name (`main`, `v1`, `refs/pr/1`) is rejected because it can move after a commitment.
pub fn check_revision(repo: &str, revision: &str) -> Result<String, HubError> {
    if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(revision.to_ascii_lowercase())
    } else {
        Err(HubError::RevisionNotFound {
            repo: repo.to_string(),
            revision: revision.to_string(),
            reason: "a pinned revision must be a 40-hex commit sha; branch and tag names can move"
                .into(),
        })
    }
}

/// True when `s` is 40 hex digits (a git commit or blob sha).
pub fn is_sha40(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}
