//! Reaching a subtensor node: a first attempt that fails fast and says why (refused, DNS, TLS,
//! timeout), then a connection that reconnects for as long as the process lives.
//!
//! The first attempt resolves the host and opens a TCP connection itself, so a refused port
//! or an unknown host is named as such within [`CONNECT_TIMEOUT`] instead of a bare "no
//! connection"; a one-shot command fails there. Once connected, subxt-rpcs' reconnecting client
//! retries a dropped connection with exponential backoff without end (a policy that gives up
//! would leave a dead client behind in a long-running service).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use subxt::rpcs::client::reconnecting_rpc_client::ExponentialBackoff;

/// The longest one step of a first connection attempt (DNS, TCP, handshake) may take, whatever
/// the request timeout: a person waiting on a one-shot command has an answer within 10 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// The reconnecting client's retry policy: no retry for the first connection (its error is
/// reported as it is), exponential backoff up to 10 s without end once connected.
#[derive(Clone)]
pub(crate) struct ReconnectPolicy {
    connected: Arc<AtomicBool>,
    backoff: ExponentialBackoff,
}

impl ReconnectPolicy {
    /// A policy for a connection not yet made.
    pub(crate) fn new() -> Self {
        ReconnectPolicy {
            connected: Arc::new(AtomicBool::new(false)),
            backoff: ExponentialBackoff::from_millis(100).max_delay(Duration::from_secs(10)),
        }
    }

    /// Marks the first connection made: from now on drops are retried.
    pub(crate) fn set_connected(&self) {
        self.connected.store(true, Ordering::SeqCst);
    }
}

impl Iterator for ReconnectPolicy {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.connected.load(Ordering::SeqCst) {
            self.backoff.next()
        } else {
            None
        }
    }
}

/// Host and port of a `ws://` / `wss://` URL (default ports 80 and 443).
pub fn host_and_port(url: &str) -> Result<(String, u16), String> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("wss://") {
        (rest, 443)
    } else if let Some(rest) = url.strip_prefix("ws://") {
        (rest, 80)
    } else {
        return Err(format!("{url}: not a ws:// or wss:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url}: unclosed '[' in the host"))?;
        (host, tail.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("{url}: port {p:?} is not a number from 0 to 65535"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

/// Resolves the host of `url` and opens a TCP connection to it within `timeout`; the error
/// names the cause: `DNS`, `connection refused`, `timeout` or the system's words.
pub async fn reach(url: &str, timeout: Duration) -> Result<(), String> {
    let (host, port) = host_and_port(url)?;
    let seconds = timeout.as_secs_f64();
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Err(_) => {
                return Err(format!(
                    "timeout: DNS lookup of {host} took over {seconds} s"
                ))
            }
            Ok(Err(e)) => return Err(format!("DNS: cannot resolve host {host}: {e}")),
            Ok(Ok(addrs)) => addrs.collect(),
        };
    if addrs.is_empty() {
        return Err(format!("DNS: host {host} has no address"));
    }
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addrs[..])).await {
        Err(_) => Err(format!(
            "timeout: no TCP connection to {host}:{port} within {seconds} s"
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(format!(
            "connection refused by {host}:{port} (is the node running and listening there?)"
        )),
        Ok(Err(e)) => Err(format!(
            "cannot open a TCP connection to {host}:{port}: {e}"
        )),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Words for a WebSocket connection that failed after TCP connected: on `wss://` the TLS
/// handshake comes first, so that is what failed unless the server answered over HTTP.
pub fn handshake_cause(secure: bool, error: &str) -> String {
    let http = ["HTTP", "status code", "Upgrade", "upgrade"];
    if secure && !http.iter().any(|w| error.contains(w)) {
        format!("TLS handshake failed: {error}")
    } else {
        format!("WebSocket handshake failed: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_of_urls() {
        let ok = |u: &str| host_and_port(u).unwrap();
        assert_eq!(ok("ws://127.0.0.1:9944"), ("127.0.0.1".into(), 9944));
        assert_eq!(
            ok("wss://entrypoint-finney.opentensor.ai:443"),
            ("entrypoint-finney.opentensor.ai".into(), 443)
        );
        assert_eq!(ok("wss://node.example/ws"), ("node.example".into(), 443));
        assert_eq!(ok("ws://[::1]:9944/x"), ("::1".into(), 9944));
        assert!(host_and_port("ws://h:99999").is_err());
        assert!(host_and_port("http://h").is_err());
    }

    #[tokio::test]
    async fn a_closed_port_is_named_refused_and_an_unknown_host_dns() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = reach(&format!("ws://127.0.0.1:{port}"), CONNECT_TIMEOUT)
            .await
            .unwrap_err();
        assert!(e.starts_with("connection refused"), "{e}");
        let e = reach("ws://nonexistent.invalid:9944", CONNECT_TIMEOUT)
            .await
            .unwrap_err();
        assert!(e.starts_with("DNS"), "{e}");
    }

    #[test]
    fn the_policy_retries_only_once_connected() {
        let mut p = ReconnectPolicy::new();
        assert_eq!(p.clone().next(), None);
        p.set_connected();
        assert!(p.next().is_some());
        assert!(p.clone().take(100).count() == 100, "reconnects without end");
    }
}
