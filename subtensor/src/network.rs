//! Which subtensor node to talk to: `--subtensor.network finney|test|local` or a `ws://` /
//! `wss://` URL, as the bittensor CLI accepts them.

use std::fmt;

/// The public endpoint of mainnet (the bittensor SDK's `FINNEY_ENTRYPOINT`).
pub const FINNEY_ENDPOINT: &str = "wss://entrypoint-finney.opentensor.ai:443";
/// The public endpoint of the test network (`FINNEY_TEST_ENTRYPOINT`).
pub const TEST_ENDPOINT: &str = "wss://test.finney.opentensor.ai:443";
/// A node on this machine (`LOCAL_ENTRYPOINT`).
pub const LOCAL_ENDPOINT: &str = "ws://127.0.0.1:9944";

/// A resolved network: a name for messages and the WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// `finney`, `test`, `local`, or the URL itself.
    pub name: String,
    /// The WebSocket endpoint.
    pub url: String,
}

impl Network {
    /// Resolves a network name or URL. `Err` says what is accepted.
    pub fn parse(text: &str) -> Result<Network, String> {
        let text = text.trim();
        let url = match text {
            "finney" | "main" | "mainnet" => FINNEY_ENDPOINT,
            "test" | "testnet" => TEST_ENDPOINT,
            "local" => LOCAL_ENDPOINT,
            url if (url.starts_with("ws://") || url.starts_with("wss://"))
                && url.len() > "wss://".len()
                && !url.contains(char::is_whitespace) =>
            {
                url
            }
            other => {
                return Err(format!(
                    "--subtensor.network {other:?}: expected finney, test, local or a \
                     ws:// / wss:// URL"
                ))
            }
        };
        let name = if url == text { url } else { text };
        Ok(Network {
            name: name.to_string(),
            url: url.to_string(),
        })
    }

    /// Whether the URL uses TLS.
    pub fn is_secure(&self) -> bool {
        self.url.starts_with("wss://")
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.url {
            write!(f, "{}", self.url)
        } else {
            write!(f, "{} ({})", self.name, self.url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls_resolve() {
        assert_eq!(Network::parse("finney").unwrap().url, FINNEY_ENDPOINT);
        assert_eq!(Network::parse("test").unwrap().url, TEST_ENDPOINT);
        assert_eq!(Network::parse("local").unwrap().url, LOCAL_ENDPOINT);
        let custom = Network::parse("ws://10.0.0.2:9944").unwrap();
        assert_eq!(custom.url, "ws://10.0.0.2:9944");
        assert!(!custom.is_secure());
        assert_eq!(
            Network::parse("finney").unwrap().to_string(),
            format!("finney ({FINNEY_ENDPOINT})")
        );
        for bad in ["", "mainnet2", "http://x", "ws://", "ws://a b"] {
            let err = Network::parse(bad).unwrap_err();
            assert!(err.contains("expected finney, test, local"), "{err}");
        }
    }
}
