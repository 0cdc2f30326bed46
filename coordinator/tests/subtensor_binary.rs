//! The `coordinator` binary on a subtensor network: a full epoch against the subtensor crate's
//! in-memory node served over a real WebSocket on 127.0.0.1 (`--subtensor.network ws://…`), and
//! the one-line errors for an unreachable endpoint, a netuid that does not exist and a hotkey
//! that is not registered.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hub::{Hub, LocalHub};
use protocol::scoring::EpochReport;
use subtensor::testnode::{SubnetConfig, TestNode};
use subtensor::wallet::{create_wallet, Signer, WalletPath};
use subxt_signer::sr25519::dev;

mod common;

use common::{coordinator, demo_dir, eval_set, QUICK_TRAINING};

const NETUID: u16 = 5;

/// A cluster.toml for mode `local` at `endpoint`, the wallet `validator` under `dir/wallets`,
/// the local directory hub and the repo's eval set.
fn write_config(dir: &Path, endpoint: &str) -> PathBuf {
    let text = format!(
        r#"
mode = "local"
netuid = {NETUID}
[coordinator]
state_dir = "state"
[subtensor]
endpoint = "{endpoint}"
timeout_secs = 5
wallet_path = "{wallets}"
wallet_name = "validator"
[hub]
kind = "local"
[eval]
set = "{eval}"
{QUICK_TRAINING}"#,
        wallets = dir.join("wallets").display(),
        eval = eval_set().display(),
    );
    common::write_config(dir, &text)
}

/// Runs the binary; returns (success, stdout, stderr, elapsed).
fn run(mut cmd: Command) -> (bool, String, String, Duration) {
    let start = Instant::now();
    let out = cmd.output().expect("coordinator runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

fn key(signer: &Signer) -> [u8; 32] {
    signer.account().0
}

/// A node with subnet `NETUID` (`config`), the validator wallet `validator` under `dir/wallets`
/// registered with a permit, and miner bob committing the on-topic demo dataset published to
/// the local hub. Returns the node, the validator, bob's uid and the dataset's revision.
async fn subnet_with_a_miner(dir: &Path, config: SubnetConfig) -> (TestNode, Signer, u16, String) {
    let node = TestNode::new();
    node.add_subnet(NETUID, config);
    let validator = create_wallet(&WalletPath {
        root: dir.join("wallets"),
        name: "validator".into(),
        hotkey: "default".into(),
    })
    .unwrap();
    node.register(NETUID, key(&validator), key(&validator), 1_000_000, true);
    let hub = LocalHub::new(&dir.join("state/hub"));
    let on_topic = std::fs::read(demo_dir().join("on_topic.jsonl")).unwrap();
    let revision = hub.publish("miner/on-topic", &on_topic).await.unwrap();
    let bob = dev::bob();
    let miner = node.register(NETUID, bob.public_key().0, bob.public_key().0, 0, false);
    node.put_commitment(
        NETUID,
        bob.public_key().0,
        format!("miner/on-topic:1:{revision}").as_bytes(),
    );
    (node, validator, miner, revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_epoch_on_subtensor_sets_weights_and_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _validator, miner, revision) = subnet_with_a_miner(
        dir.path(),
        SubnetConfig {
            tempo: 100,
            weights_rate_limit: 1,
            weights_version_key: 0,
            commit_reveal: false,
            reveal_period: 1,
        },
    )
    .await;
    // A second miner whose commitment is not a dataset commitment.
    let charlie = dev::charlie();
    let other = node.register(
        NETUID,
        charlie.public_key().0,
        charlie.public_key().0,
        0,
        false,
    );
    node.put_commitment(NETUID, charlie.public_key().0, b"not a commitment");

    let (addr, server) = node.serve_ws().await.unwrap();
    let endpoint = format!("ws://{addr}");
    let config = write_config(dir.path(), &endpoint);

    // What the validator sees, through the binary.
    let mut cmd = coordinator(&config);
    cmd.args(["chain", "commitments", "--json"]);
    let (ok, stdout, stderr, _) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(ok, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{stdout}");
    assert!(stdout.contains(&revision));

    // One epoch: the miner is trained and scored, weights land on the node.
    let mut cmd = coordinator(&config);
    cmd.args(["run", "--epochs", "1", "--json", "--allow-demo-settings"]);
    let (ok, stdout, stderr, _) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(ok, "coordinator failed: {stderr}");
    let report: EpochReport = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let line = report.miners.iter().find(|m| m.uid == miner).unwrap();
    assert!(line.eval_loss.is_some_and(|l| l.is_finite()), "{line:?}");
    let bad = report.miners.iter().find(|m| m.uid == other).unwrap();
    assert!(bad.reason.contains("commitment rejected"), "{bad:?}");
    assert!(report.weights_block.is_some(), "{stdout}");
    let row = node.weights_of(NETUID, 0).expect("weights on chain");
    assert_eq!(row, vec![(miner, 65535)]);

    // A netuid that does not exist: one line, naming it.
    let mut cmd = coordinator(&config);
    cmd.args(["chain", "metagraph", "--netuid", "99"]);
    let (ok, _, stderr, _) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("netuid 99 does not exist"), "{stderr}");

    // A hotkey that is not registered: one line, naming it.
    let stranger = create_wallet(&WalletPath {
        root: dir.path().join("wallets"),
        name: "stranger".into(),
        hotkey: "default".into(),
    })
    .unwrap();
    let mut cmd = coordinator(&config);
    cmd.args([
        "run",
        "--epochs",
        "1",
        "--wallet.name",
        "stranger",
        "--allow-demo-settings",
    ]);
    let (ok, _, stderr, _) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(!ok);
    let last = stderr.trim().lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains(&format!(
            "hotkey {} is not registered on netuid {NETUID}",
            stranger.account()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // An endpoint nobody listens on: one line within the timeout.
    server.stop().unwrap();
    server.stopped().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().port();
    drop(listener);
    let mut cmd = coordinator(&config);
    cmd.args([
        "chain",
        "metagraph",
        "--subtensor.network",
        &format!("ws://127.0.0.1:{closed}"),
    ]);
    let (ok, _, stderr, elapsed) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(!ok);
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to subtensor at ws://127.0.0.1:{closed}"
        )),
        "{stderr}"
    );
}

#[test]
fn a_wss_endpoint_that_fails_the_handshake_is_one_line_and_no_panic() {
    // Accepts TCP connections and closes them: the TLS handshake (built from the process's
    // rustls provider) starts and fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("wss://127.0.0.1:{port}"));
    let mut cmd = coordinator(&config);
    cmd.args(["chain", "metagraph"]);
    let (ok, _, stderr, elapsed) = run(cmd);
    assert!(!ok);
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to subtensor at wss://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_reveal_weights_survive_a_restart_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (node, validator, miner, _) = subnet_with_a_miner(
        dir.path(),
        SubnetConfig {
            tempo: 20,
            weights_rate_limit: 1,
            weights_version_key: 0,
            commit_reveal: true,
            reveal_period: 1,
        },
    )
    .await;
    let (addr, _server) = node.serve_ws().await.unwrap();
    let config = write_config(dir.path(), &format!("ws://{addr}"));

    // First run: the epoch commits (plain set_weights would be refused on this subnet).
    let mut cmd = coordinator(&config);
    cmd.args(["run", "--epochs", "1", "--json", "--allow-demo-settings"]);
    let (ok, stdout, stderr, _) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(ok, "coordinator failed: {stderr}");
    let report: EpochReport = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert!(report.weights_block.is_some(), "{stdout}");
    assert!(report.weights_note.contains("committed"), "{stdout}");
    let commits = node.pending_commits(NETUID, &key(&validator));
    assert_eq!(commits.len(), 1);
    assert_eq!(node.weights_of(NETUID, 0), None, "nothing revealed yet");

    // The process is gone; the chain moves into the reveal epoch; a new process reveals.
    node.advance_to_epoch(NETUID, commits[0].1 + 1);
    let mut cmd = coordinator(&config);
    cmd.args(["run", "--epochs", "1", "--json", "--allow-demo-settings"]);
    let (ok, stdout, stderr, _) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(ok, "coordinator failed: {stderr}");
    assert!(
        node.pending_commits(NETUID, &key(&validator)).is_empty(),
        "{stdout}"
    );
    let row = node
        .weights_of(NETUID, 0)
        .expect("revealed weights on chain");
    assert_eq!(row, vec![(miner, 65535)]);
}
