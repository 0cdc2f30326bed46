//! `miner-cli status`, `submit` and `fetch-all` against an endpoint that refuses or does not
//! resolve fail within 10 s, with one line naming the endpoint and the cause (real binary).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use subtensor::wallet::{create_wallet, WalletPath};

fn miner(dir: &Path, endpoint: &str, args: &[&str]) -> (bool, String, Duration) {
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        "mode = \"local\"\n[coordinator]\nstate_dir = \"state\"\n",
    )
    .unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_miner-cli"))
        .arg("--config")
        .arg(&config)
        .args(["--subtensor.network", endpoint])
        .arg("--wallet.path")
        .arg(dir.join("wallets"))
        .args(["--wallet.name", "miner"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("HF_HOME", dir.join("hf-home"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env_remove("BT_WALLET_NAME")
        .env_remove("BT_WALLET_PATH")
        .env_remove("BT_WALLET_HOTKEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn status_submit_and_fetch_all_fail_fast_naming_the_endpoint_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    create_wallet(&WalletPath {
        root: dir.path().join("wallets"),
        name: "miner".into(),
        hotkey: "default".into(),
    })
    .unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval_data/demo/on_topic.jsonl");
    let data = data.to_str().unwrap();
    let out = dir.path().join("fetched");
    let out = out.to_str().unwrap();
    let commands: [&[&str]; 3] = [
        &["status"],
        &["submit", "--dataset_path", data, "--hf_repo_id", "me/set"],
        &["fetch-all", "--out", out],
    ];
    for (endpoint, cause) in [
        ("ws://127.0.0.1:9", "connection refused"),
        ("ws://nonexistent.invalid:9944", "DNS"),
    ] {
        for args in commands {
            let (ok, stderr, elapsed) = miner(dir.path(), endpoint, args);
            assert!(!ok, "{args:?}: {stderr}");
            assert!(elapsed < Duration::from_secs(10), "{args:?}: {elapsed:?}");
            let last = stderr.trim().lines().last().unwrap_or_default();
            assert!(
                last.contains(&format!("cannot connect to subtensor at {endpoint}"))
                    && last.contains(cause),
                "{args:?}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}
