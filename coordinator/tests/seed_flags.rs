//! The Python validator's flags through the real `coordinator` binary: `--subtensor.chain_endpoint`
//! reaches the node it names (the subtensor crate's in-memory node on a real WebSocket),
//! `--logging.debug` wins over `RUST_LOG`, and `--log-format json` writes one JSON object per
//! log line.

use subtensor::testnode::{SubnetConfig, TestNode};

mod common;

use common::{coordinator, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_endpoint_logging_flags_and_json_logs_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::new();
    node.add_subnet(96, SubnetConfig::default());
    let (addr, _server) = node.serve_ws().await.unwrap();
    // The shipped devnet config shape: mode devnet, netuid 1; the flags move it to the node.
    let config = write_config(dir.path(), "[subtensor]\ntimeout_secs = 5\n");
    let mut cmd = coordinator(&config); // RUST_LOG=warn, which --logging.debug overrides
    cmd.args([
        "chain",
        "metagraph",
        "--json",
        "--netuid",
        "96",
        "--subtensor.chain_endpoint",
        &format!("ws://{addr}"),
        "--logging.debug",
        "--log-format",
        "json",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let metagraph: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(metagraph["netuid"], 96);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let connected = logs
        .iter()
        .find(|l| l["fields"]["message"] == "connected to subtensor")
        .unwrap_or_else(|| panic!("no 'connected' line at info level: {stderr}"));
    assert_eq!(connected["level"], "INFO");
    assert_eq!(connected["fields"]["netuid"], 96);

    // Without the flags the same command logs text, and RUST_LOG=warn hides the info line.
    let mut cmd = coordinator(&config);
    cmd.args([
        "chain",
        "metagraph",
        "--netuid",
        "96",
        "--subtensor.chain_endpoint",
        &format!("ws://{addr}"),
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("connected to subtensor"), "{stderr}");
}
