//! Client configuration: endpoint, token, cache directory, offline mode and retry policy, given
//! explicitly or read from the environment the way the Python `huggingface_hub` reads it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The public Hugging Face Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A Hub access token. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token; `None` when it is empty after trimming.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into().trim().to_string();
        (!token.is_empty()).then_some(Token(token))
    }

    /// The secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How often and how fast to retry a request that failed transiently (HTTP 408, 429, 500, 502,
/// 503, 504, connection errors, timeouts): `retries` more tries after the first, sleeping about
/// `base_delay * 2^k` (with jitter) before try `k + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after the first one.
    pub retries: usize,
    /// The base of the exponential backoff.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 4,
            base_delay: Duration::from_millis(500),
        }
    }
}

/// Everything the client needs to know. Build it with [`ClientConfig::new`] (explicit, for tests)
/// or [`ClientConfig::from_env`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of the Hub, without a trailing slash (`HF_ENDPOINT`).
    pub endpoint: String,
    /// The access token, if any (`HF_TOKEN`, `.env`, the token file).
    pub token: Option<Token>,
    /// The hub cache directory in the Python layout (`HF_HUB_CACHE`, `$HF_HOME/hub`).
    pub cache_dir: PathBuf,
    /// Cache only, never the network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Retries on transient failures.
    pub retry: RetryPolicy,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for any single read from the server (a stalled transfer fails and is
    /// retried).
    pub read_timeout: Duration,
    /// Limit on fetching one dataset file (an eval set or a miner's `data.jsonl`) from the
    /// network, retries included: a server that trickles bytes just fast enough to beat
    /// `read_timeout` still cannot hold an epoch longer than this (default 300 s).
    pub download_deadline: Duration,
}

impl ClientConfig {
    /// A configuration with every field given; default retry policy and timeouts.
    pub fn new(
        endpoint: impl Into<String>,
        token: Option<Token>,
        cache_dir: impl Into<PathBuf>,
        offline: bool,
    ) -> Self {
        ClientConfig {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            token,
            cache_dir: cache_dir.into(),
            offline,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            download_deadline: Duration::from_secs(300),
        }
    }

    /// Replaces the per-file download deadline.
    pub fn with_download_deadline(mut self, deadline: Duration) -> Self {
        self.download_deadline = deadline;
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the connect and read timeouts.
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// Reads the process environment and `.env` in the current directory (see
    /// [`ClientConfig::from_vars`]).
    pub fn from_env() -> Self {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Self::from_vars(|k| std::env::var(k).ok(), &cwd)
    }

    /// The configuration the Python `huggingface_hub` would use, with `var` as the environment
    /// and `dir` as the directory holding an optional `.env` file:
    /// * endpoint: `HF_ENDPOINT`, else <https://huggingface.co>;
    /// * token: the first of [`TOKEN_VARS`] set (`HF_TOKEN`, `HUGGINGFACE_TOKEN`,
    ///   `HF_ACCESS_TOKEN`), else the first of them in `dir/.env`, else the file `HF_TOKEN_PATH`, else
    ///   `$HF_HOME/token` (`HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`, then
    ///   `~/.cache/huggingface`); none when `HF_HUB_DISABLE_IMPLICIT_TOKEN` is set;
    /// * cache: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`;
    /// * offline: `HF_HUB_OFFLINE` is `1`, `ON`, `YES` or `TRUE`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, dir: &Path) -> Self {
        let nonempty = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let endpoint = nonempty("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let hf_home = nonempty("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| nonempty("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("huggingface")))
            .unwrap_or_else(|| {
                PathBuf::from(nonempty("HOME").unwrap_or_else(|| "/tmp".into()))
                    .join(".cache")
                    .join("huggingface")
            });
        let cache_dir = nonempty("HF_HUB_CACHE")
            .or_else(|| nonempty("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = if nonempty("HF_HUB_DISABLE_IMPLICIT_TOKEN").is_some() {
            None
        } else {
            TOKEN_VARS
                .iter()
                .find_map(|name| nonempty(name).and_then(Token::new))
                .or_else(|| dotenv_token(&dir.join(".env")))
                .or_else(|| {
                    nonempty("HF_TOKEN_PATH")
                        .and_then(|p| std::fs::read_to_string(p).ok())
                        .and_then(Token::new)
                })
                .or_else(|| {
                    std::fs::read_to_string(hf_home.join("token"))
                        .ok()
                        .and_then(Token::new)
                })
        };
        let offline = var("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_uppercase().as_str(),
                    "1" | "ON" | "YES" | "TRUE"
                )
            })
            .unwrap_or(false);
        ClientConfig::new(endpoint, token, cache_dir, offline)
    }
}

/// The environment variables a Hub token is read from, in this order: `HF_TOKEN` (what
/// `huggingface_hub` reads), then `HUGGINGFACE_TOKEN` and `HF_ACCESS_TOKEN` (what the subnet's
/// miner guides set).
pub const TOKEN_VARS: [&str; 3] = ["HF_TOKEN", "HUGGINGFACE_TOKEN", "HF_ACCESS_TOKEN"];

/// The token of a `.env` file: the first of [`TOKEN_VARS`] assigned there (`export ` prefix and
/// quotes allowed, `#` comments ignored).
fn dotenv_token(path: &Path) -> Option<Token> {
    let text = std::fs::read_to_string(path).ok()?;
    TOKEN_VARS.iter().find_map(|name| dotenv_value(&text, name))
}

/// `NAME=value` from the text of a `.env` file.
fn dotenv_value(text: &str, name: &str) -> Option<Token> {
    text.lines().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let value = line.strip_prefix(name)?.trim_start().strip_prefix('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        Token::new(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)], dir: &Path) -> ClientConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ClientConfig::from_vars(|k| map.get(k).cloned(), dir)
    }

    #[test]
    fn token_order_env_then_dotenv_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("hfhome");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("token"), "hf_file\n").unwrap();
        let h = home.to_str().unwrap();
        let c = cfg(&[("HF_HOME", h)], dir.path());
        assert_eq!(c.token.unwrap().expose(), "hf_file");
        assert_eq!(c.cache_dir, home.join("hub"));
        std::fs::write(dir.path().join(".env"), "# x\nexport HF_TOKEN=\"hf_dot\"\n").unwrap();
        let c = cfg(&[("HF_HOME", h)], dir.path());
        assert_eq!(c.token.unwrap().expose(), "hf_dot");
        let c = cfg(&[("HF_HOME", h), ("HF_TOKEN", "hf_env")], dir.path());
        assert_eq!(c.token.unwrap().expose(), "hf_env");
        // The miner guides' names, after HF_TOKEN and in this order.
        let c = cfg(
            &[("HF_HOME", h), ("HF_ACCESS_TOKEN", "hf_access")],
            dir.path(),
        );
        assert_eq!(c.token.unwrap().expose(), "hf_access");
        let c = cfg(
            &[
                ("HF_HOME", h),
                ("HF_ACCESS_TOKEN", "hf_access"),
                ("HUGGINGFACE_TOKEN", "hf_huggingface"),
            ],
            dir.path(),
        );
        assert_eq!(c.token.unwrap().expose(), "hf_huggingface");
        let c = cfg(
            &[
                ("HF_HOME", h),
                ("HF_ACCESS_TOKEN", "hf_access"),
                ("HUGGINGFACE_TOKEN", "hf_huggingface"),
                ("HF_TOKEN", "hf_env"),
            ],
            dir.path(),
        );
        assert_eq!(c.token.unwrap().expose(), "hf_env");
        std::fs::write(dir.path().join(".env"), "HF_ACCESS_TOKEN=hf_dot_access\n").unwrap();
        let c = cfg(&[("HF_HOME", h)], dir.path());
        assert_eq!(c.token.unwrap().expose(), "hf_dot_access");
        let c = cfg(
            &[("HF_HOME", h), ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")],
            dir.path(),
        );
        assert!(c.token.is_none());
    }

    #[test]
    fn endpoint_cache_offline() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            &[
                ("HF_ENDPOINT", "http://127.0.0.1:9/"),
                ("HF_HUB_CACHE", "/x/cache"),
                ("HF_HUB_OFFLINE", "1"),
                ("HOME", "/home/u"),
            ],
            dir.path(),
        );
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert_eq!(c.cache_dir, PathBuf::from("/x/cache"));
        assert!(c.offline);
        let c = cfg(&[("HOME", "/home/u")], dir.path());
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(!c.offline);
        assert!(c.token.is_none());
    }

    #[test]
    fn token_is_redacted() {
        let t = Token::new("hf_secret123").unwrap();
        let c = ClientConfig::new("http://x", Some(t.clone()), "/c", false);
        assert!(!format!("{c:?}").contains("hf_secret123"));
        assert!(!format!("{t} {t:?}").contains("hf_secret123"));
    }
}
