//! One-shot commands fail fast where a person waits: `coordinator chain ...` against an endpoint
//! that refuses or does not resolve ends within 10 s with one line naming the endpoint and the
//! cause, through the real binary.

use std::process::Command;
use std::time::{Duration, Instant};

/// `coordinator chain WHAT --subtensor.network ENDPOINT` with an empty config directory;
/// returns (success, stderr, elapsed).
fn chain(what: &[&str], endpoint: &str) -> (bool, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, "[coordinator]\nstate_dir = \"state\"\n").unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--config")
        .arg(&config)
        .arg("chain")
        .args(what)
        .args(["--subtensor.network", endpoint])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn a_refused_endpoint_fails_within_10_s_naming_it_and_the_cause() {
    for what in [
        &["metagraph"][..],
        &["commitments"],
        &["weights", "--uid", "0"],
    ] {
        let (ok, stderr, elapsed) = chain(what, "ws://127.0.0.1:9");
        assert!(!ok, "{stderr}");
        assert!(elapsed < Duration::from_secs(10), "{what:?}: {elapsed:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("cannot connect to subtensor at ws://127.0.0.1:9")
                && stderr.contains("connection refused"),
            "{stderr}"
        );
    }
}

#[test]
fn an_unresolvable_host_fails_within_10_s_naming_dns() {
    let (ok, stderr, elapsed) = chain(&["metagraph"], "ws://nonexistent.invalid:9944");
    assert!(!ok, "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot connect to subtensor at ws://nonexistent.invalid:9944")
            && stderr.contains("DNS"),
        "{stderr}"
    );
}
