//! The on-chain commitment string `namespace/name:competition_id:sha` that a miner writes with
//! `Commitments.set_commitment` and a validator reads back (`docs/subtensor.md`).
//!
//! Parsing is stricter than FLock's Python (which ignores extra parts and accepts branch names):
//! a commitment names one immutable revision of one dataset repo, or it is rejected with a reason.

use std::fmt;
use std::str::FromStr;

use crate::json::preview;

/// A part of a rejected commitment, quoted and escaped for the message (a whole commitment fits).
fn quoted(part: &str) -> String {
    preview(part, MAX_COMMITMENT_BYTES)
}

/// The chain stores at most this many bytes in one `Raw` field: the whole string's limit.
pub const MAX_COMMITMENT_BYTES: usize = 128;
/// Longest repo id `namespace/name`, in characters (the Hugging Face limit).
pub const MAX_REPO_ID_CHARS: usize = 96;
/// Longest competition id, in characters (FLock's `MAX_COMPETITION_ID_LENGTH`).
pub const MAX_COMPETITION_ID_CHARS: usize = 12;
/// Length of a git commit sha in hex digits.
pub const REVISION_HEX_DIGITS: usize = 40;

/// A parsed commitment: which dataset repo, for which competition, at which immutable revision.
///
/// Build one with [`Commitment::new`], `str::parse` or [`Commitment::from_bytes`]; `Display`
/// writes the chain string back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Commitment {
    /// Hub repo id `namespace/name`.
    pub repo: String,
    /// The competition the dataset is entered in.
    pub competition_id: String,
    /// The 40-hex (lowercase) revision of the repo.
    pub revision: String,
}

/// Why a commitment string was refused. Untrusted text in a message is quoted, escaped and cut
/// short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentError {
    /// The chain bytes are not UTF-8.
    #[error("commitment rejected: not UTF-8 (at byte {byte})")]
    NotUtf8 {
        /// 1-based position of the first invalid byte.
        byte: usize,
    },
    /// The string is empty.
    #[error("commitment rejected: empty")]
    Empty,
    /// A JSON object, such as the subnet owner's competition record, not a dataset commitment.
    #[error(
        "commitment rejected: a JSON record (such as the subnet owner's competition record), \
         not a dataset commitment namespace/name:competition_id:sha"
    )]
    JsonRecord,
    /// Longer than the chain's field.
    #[error(
        "commitment rejected: {len} bytes exceeds the chain limit of {MAX_COMMITMENT_BYTES} bytes"
    )]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not three `:`-separated parts.
    #[error(
        "commitment rejected: expected namespace/name:competition_id:sha \
         (3 parts separated by ':'), found {parts} part(s)"
    )]
    Parts {
        /// How many parts there were.
        parts: usize,
    },
    /// The repo id is not `namespace/name`.
    #[error(
        "commitment rejected: repo {repo} is not namespace/name (letters, digits, '.', '_', '-'; \
         neither part starting or ending with '.' or '-', no '..'; at most {MAX_REPO_ID_CHARS} \
         characters)"
    )]
    Repo {
        /// The repo part, quoted.
        repo: String,
    },
    /// The competition id is not `[A-Za-z0-9_-]{1,12}`.
    #[error(
        "commitment rejected: competition id {competition_id} must be 1-{MAX_COMPETITION_ID_CHARS} \
         letters, digits, '_' or '-'"
    )]
    CompetitionId {
        /// The competition part, quoted.
        competition_id: String,
    },
    /// The revision is not a 40-hex commit sha.
    #[error(
        "commitment rejected: revision {revision} must be a {REVISION_HEX_DIGITS}-hex commit sha \
         (not a branch name or a short sha)"
    )]
    Revision {
        /// The revision part, quoted.
        revision: String,
    },
}

impl Commitment {
    /// Builds a commitment from its parts, checking each as [`FromStr`] does (the revision is
    /// lowercased).
    pub fn new(repo: &str, competition_id: &str, revision: &str) -> Result<Self, CommitmentError> {
        if split_repo_id(repo).is_none() {
            return Err(CommitmentError::Repo { repo: quoted(repo) });
        }
        if !valid_competition_id(competition_id) {
            return Err(CommitmentError::CompetitionId {
                competition_id: quoted(competition_id),
            });
        }
        if revision.len() != REVISION_HEX_DIGITS || !revision.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(CommitmentError::Revision {
                revision: quoted(revision),
            });
        }
        let commitment = Commitment {
            repo: repo.to_string(),
            competition_id: competition_id.to_string(),
            revision: revision.to_ascii_lowercase(),
        };
        let len = commitment.to_string().len();
        if len > MAX_COMMITMENT_BYTES {
            return Err(CommitmentError::TooLong { len });
        }
        Ok(commitment)
    }

    /// Parses raw chain bytes: they must be UTF-8 (no Latin-1 guessing), then as [`FromStr`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CommitmentError> {
        let text = std::str::from_utf8(bytes).map_err(|e| CommitmentError::NotUtf8 {
            byte: e.valid_up_to() + 1,
        })?;
        text.parse()
    }
}

/// Whether `repo` is a valid `namespace/name` repo id: each part of `[A-Za-z0-9._-]`, not
/// starting or ending with `.` or `-`, no `..`, 96 characters in all (the Hugging Face rules;
/// nothing that passes can leave a directory). Returns the two parts.
pub fn split_repo_id(repo: &str) -> Option<(&str, &str)> {
    let (namespace, name) = repo.split_once('/')?;
    (valid_repo_part(namespace) && valid_repo_part(name) && repo.len() <= MAX_REPO_ID_CHARS)
        .then_some((namespace, name))
}

fn valid_repo_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !part.starts_with(['.', '-'])
        && !part.ends_with(['.', '-'])
        && !part.contains("..")
}

/// Whether `id` can be a commitment's competition id: 1 to 32 ASCII letters, digits, `_` or `-`.
pub fn valid_competition_id(id: &str) -> bool {
    (1..=MAX_COMPETITION_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl FromStr for Commitment {
    type Err = CommitmentError;

    /// Accepts exactly `namespace/name:competition_id:sha`, at most 128 bytes: namespace and name
    /// of `[A-Za-z0-9._-]` (neither starting nor ending with `.` or `-`, no `..`), 96 characters
    /// in all; competition id `[A-Za-z0-9_-]{1,12}`; sha exactly 40 hex digits. Upper-case hex is
    /// accepted and lowercased (git and the Hub treat a sha case-insensitively), so `Display` may
    /// differ from the chain string in case only. Nothing is trimmed: surrounding whitespace is
    /// an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(CommitmentError::Empty);
        }
        // Before the length check: the owner's record can be longer than a commitment.
        if s.trim_start().starts_with('{') {
            return Err(CommitmentError::JsonRecord);
        }
        if s.len() > MAX_COMMITMENT_BYTES {
            return Err(CommitmentError::TooLong { len: s.len() });
        }
        let parts: Vec<&str> = s.split(':').collect();
        let [repo, competition_id, revision] = parts.as_slice() else {
            return Err(CommitmentError::Parts { parts: parts.len() });
        };
        Commitment::new(repo, competition_id, revision)
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
        assert_eq!(c.revision, SHA);
        assert_eq!(c.to_string(), text);
        assert_eq!(Commitment::from_bytes(text.as_bytes()), Ok(c.clone()));
        assert_eq!(Commitment::new("alice/my-data.v2", "1", SHA), Ok(c));
        let c: Commitment = format!("A_b/C_d:comp_2-x:{SHA}").parse().expect("valid");
        assert_eq!(c.competition_id, "comp_2-x");
    }

    #[test]
    fn upper_case_revision_is_lowercased() {
        let upper: Commitment = format!("alice/d:1:{}", SHA.to_uppercase())
            .parse()
            .expect("valid");
        assert_eq!(upper.revision, SHA);
        assert_eq!(upper.to_string(), format!("alice/d:1:{SHA}"));
    }

    #[test]
    fn limits_are_inclusive() {
        // 96-character repo id, 12-character competition id: 96 + 1 + 12 + 1 + 40 = 150 bytes,
        // over the chain limit although each part is fine.
        let repo96 = format!("{}/{}", "a".repeat(47), "b".repeat(48));
        assert!(split_repo_id(&repo96).is_some());
        assert!(split_repo_id(&format!("{repo96}c")).is_none());
        assert_eq!(
            Commitment::new(&repo96, "abcdefghijkl", SHA),
            Err(CommitmentError::TooLong { len: 150 })
        );
        // Exactly 128 bytes is accepted.
        let repo = format!("{}/{}", "a".repeat(40), "b".repeat(33));
        let text = format!("{repo}:abcdefghijkl:{SHA}");
        assert_eq!(text.len(), 128);
        assert!(text.parse::<Commitment>().is_ok());
        let e = format!("{text}x")
            .parse::<Commitment>()
            .expect_err("129 bytes");
        assert_eq!(e, CommitmentError::TooLong { len: 129 });
    }

    #[test]
    fn rejects_junk_with_a_typed_reason() {
        use CommitmentError as E;
        let repo = |r: &str| E::Repo {
            repo: format!("{r:?}"),
        };
        let comp = |c: &str| E::CompetitionId {
            competition_id: format!("{c:?}"),
        };
        let rev = |r: &str| E::Revision {
            revision: format!("{r:?}"),
        };
        let cases: Vec<(String, E)> = vec![
            (String::new(), E::Empty),
            ("alice/data".into(), E::Parts { parts: 1 }),
            (format!("alice/data:1:{SHA}:extra"), E::Parts { parts: 4 }),
            (format!("hf://alice/data:1:{SHA}"), E::Parts { parts: 4 }),
            (format!("alice:1:{SHA}"), repo("alice")),
            (format!("a/b/c:1:{SHA}"), repo("a/b/c")),
            (format!("../etc:1:{SHA}"), repo("../etc")),
            (format!("alice/..:1:{SHA}"), repo("alice/..")),
            (format!("alice/a..b:1:{SHA}"), repo("alice/a..b")),
            (format!("-alice/data:1:{SHA}"), repo("-alice/data")),
            (format!("alice/data.:1:{SHA}"), repo("alice/data.")),
            (format!("/data:1:{SHA}"), repo("/data")),
            (format!("alice/:1:{SHA}"), repo("alice/")),
            (format!("alice/da ta:1:{SHA}"), repo("alice/da ta")),
            (format!("alicé/data:1:{SHA}"), repo("alicé/data")),
            (format!(" alice/data:1:{SHA}"), repo(" alice/data")),
            (format!("alice/data::{SHA}"), comp("")),
            (
                format!("alice/data:thirteen-char:{SHA}"),
                comp("thirteen-char"),
            ),
            (format!("alice/data:a.b:{SHA}"), comp("a.b")),
            ("alice/data:1:main".into(), rev("main")),
            ("alice/data:1:None".into(), rev("None")),
            ("alice/data:1:3f2a9c1".into(), rev("3f2a9c1")),
            (format!("alice/data:1:{SHA}0"), rev(&format!("{SHA}0"))),
            (format!("alice/data:1:{SHA}\n"), rev(&format!("{SHA}\n"))),
            (
                "alice/data:1:zz2a9c1e0b7d4a5f6e8c9b0a1d2e3f4a5b6c7d8e".into(),
                rev("zz2a9c1e0b7d4a5f6e8c9b0a1d2e3f4a5b6c7d8e"),
            ),
            (r#"{"id":"1","repo":"x"}"#.into(), E::JsonRecord),
            (
                format!(
                    r#"  {{"id":"1","repo":"flock/eval","bench":0.157,"minb":0.14,"maxb":0.165,"bheight":0.05,"pow":2,"rows":250,"pad":"{}"}}"#,
                    "x".repeat(200)
                ),
                E::JsonRecord,
            ),
        ];
        for (text, want) in cases {
            let e = text.parse::<Commitment>().expect_err(&text);
            assert_eq!(e, want, "{text:?}");
            assert!(e.to_string().starts_with("commitment rejected: "), "{e}");
        }
        let long = format!("{}/{}:1:{SHA}", "a".repeat(60), "b".repeat(60));
        assert_eq!(
            long.parse::<Commitment>(),
            Err(E::TooLong { len: long.len() })
        );
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = r#"{"id":"1"}"#.parse::<Commitment>().expect_err("json");
        assert!(
            e.to_string().contains("subnet owner's competition record"),
            "{e}"
        );
        let e = "alice/data:1:main"
            .parse::<Commitment>()
            .expect_err("branch");
        assert_eq!(
            e.to_string(),
            "commitment rejected: revision \"main\" must be a 40-hex commit sha (not a branch name or a short sha)"
        );
        // Untrusted parts are cut short in messages.
        let e =
            Commitment::new(&format!("{}/x", "y".repeat(10_000)), "1", SHA).expect_err("long repo");
        assert!(matches!(e, CommitmentError::Repo { .. }), "{e}");
        assert!(e.to_string().len() < 400, "{e}");
    }

    #[test]
    fn non_utf8_bytes_are_rejected() {
        assert_eq!(
            Commitment::from_bytes(b"alice/\xff:1:x"),
            Err(CommitmentError::NotUtf8 { byte: 7 })
        );
        // Latin-1 is not guessed.
        assert!(Commitment::from_bytes(b"alic\xe9/data:1:x").is_err());
        assert_eq!(Commitment::from_bytes(b""), Err(CommitmentError::Empty));
    }
}
