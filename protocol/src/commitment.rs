//! The on-chain commitment string `namespace/name:competition_id:sha` that a miner writes with
//! `Commitments.set_commitment` and a validator reads back (flock.md §2).

use std::fmt;
use std::str::FromStr;

/// The chain stores at most this many bytes in one `Raw` field.
pub const MAX_COMMITMENT_BYTES: usize = 128;

/// A parsed commitment: which dataset repo, for which competition, at which immutable revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Commitment {
    /// Hub repo id `namespace/name`.
    pub repo: String,
    /// The competition the dataset is entered in.
    pub competition_id: String,
    /// The 40-hex (lowercase) revision of the repo.
    pub revision: String,
}

/// Why a commitment string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("commitment rejected: {0}")]
pub struct CommitmentError(pub String);

impl Commitment {
    /// Parses raw chain bytes: they must be UTF-8.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CommitmentError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| CommitmentError(format!("not UTF-8 (byte {})", e.valid_up_to())))?;
        text.parse()
    }
}

/// Whether `repo` is a valid `namespace/name` repo id: each part of `[A-Za-z0-9._-]`, not
/// starting or ending with `.` or `-`, no `..`, 96 characters in all (the Hugging Face rules;
/// nothing that passes can leave a directory). Returns the two parts.
pub fn split_repo_id(repo: &str) -> Option<(&str, &str)> {
    match repo.split('/').collect::<Vec<_>>().as_slice() {
        [ns, name] if valid_repo_part(ns) && valid_repo_part(name) && repo.len() <= 96 => {
            Some((ns, name))
        }
        _ => None,
    }
}

fn valid_repo_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !part.starts_with(['.', '-'])
        && !part.ends_with(['.', '-'])
        && !part.contains("..")
}

impl FromStr for Commitment {
    type Err = CommitmentError;

    /// Accepts `namespace/name:competition:sha`: at most 128 bytes; namespace and name of
    /// `[A-Za-z0-9._-]` (not starting or ending with `.` or `-`, no `..`), 96 characters in all;
    /// competition `[A-Za-z0-9_-]{1,12}`; sha exactly 40 hex digits (upper case is lowered).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| Err(CommitmentError(reason));
        if s.len() > MAX_COMMITMENT_BYTES {
            return fail(format!(
                "{} bytes exceeds the chain limit of {MAX_COMMITMENT_BYTES}",
                s.len()
            ));
        }
        if s.trim_start().starts_with('{') {
            return fail(
                "a JSON record, not a dataset commitment (the subnet owner's record?)".into(),
            );
        }
        let parts: Vec<&str> = s.split(':').collect();
        let [repo, competition_id, revision] = parts.as_slice() else {
            return fail(format!(
                "expected namespace/name:competition_id:sha (3 parts separated by ':'), found {} part(s)",
                parts.len()
            ));
        };
        if split_repo_id(repo).is_none() {
            return fail(format!(
                "repo {repo:?} is not namespace/name of letters, digits, '.', '_', '-'"
            ));
        }
        if competition_id.is_empty()
            || competition_id.len() > 12
            || !competition_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return fail(format!(
                "competition id {competition_id:?} must be 1-12 letters, digits, '_' or '-'"
            ));
        }
        if revision.len() != 40 || !revision.chars().all(|c| c.is_ascii_hexdigit()) {
            return fail(format!(
                "revision {revision:?} must be a 40-hex commit sha (not a branch name)"
            ));
        }
        Ok(Commitment {
            repo: repo.to_string(),
            competition_id: competition_id.to_string(),
            revision: revision.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.repo, self.competition_id, self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "3f2a9c1e0b7d4a5f6e8c9b0a1d2e3f4a5b6c7d8e";

    #[test]
    fn round_trips() {
        let text = format!("alice/my-data.v2:1:{SHA}");
        let c: Commitment = text.parse().expect("valid");
        assert_eq!(c.repo, "alice/my-data.v2");
        assert_eq!(c.competition_id, "1");
        assert_eq!(c.to_string(), text);
        let upper: Commitment = format!("alice/d:1:{}", SHA.to_uppercase())
            .parse()
            .expect("valid");
        assert_eq!(upper.revision, SHA);
    }

    #[test]
    fn rejects_junk_with_a_reason() {
        let cases = [
            ("", "3 parts"),
            ("alice/data", "3 parts"),
            (&format!("alice/data:1:{SHA}:extra") as &str, "3 parts"),
            (&format!("alice:1:{SHA}"), "namespace/name"),
            (&format!("a/b/c:1:{SHA}"), "namespace/name"),
            (&format!("../etc:1:{SHA}"), "namespace/name"),
            (&format!("alice/da ta:1:{SHA}"), "namespace/name"),
            (&format!("alice/data::{SHA}"), "competition id"),
            (&format!("alice/data:thirteen-char:{SHA}"), "competition id"),
            ("alice/data:1:main", "40-hex"),
            (
                "alice/data:1:zz2a9c1e0b7d4a5f6e8c9b0a1d2e3f4a5b6c7d8e",
                "40-hex",
            ),
            (r#"{"id":"1","repo":"x"}"#, "JSON record"),
        ];
        for (text, reason) in cases {
            let e = text.parse::<Commitment>().expect_err(text);
            assert!(e.0.contains(reason), "{text:?}: {e}");
        }
        let long = format!("{}/{}:1:{SHA}", "a".repeat(60), "b".repeat(60));
        assert!(long
            .parse::<Commitment>()
            .expect_err("long")
            .0
            .contains("exceeds the chain limit"));
        assert!(Commitment::from_bytes(b"alice/\xff:1:x")
            .expect_err("utf8")
            .0
            .contains("UTF-8"));
    }
}
