//! Shared by the miner-cli integration tests: a temporary devnet config, running the real
//! `miner-cli` binary, and one validator epoch through the real `coordinator` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use protocol::scoring::EpochReport;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn demo(name: &str) -> String {
    repo()
        .join(format!("eval_data/demo/{name}.jsonl"))
        .to_str()
        .expect("utf8")
        .to_string()
}

/// A devnet config in `dir` (no demo miners, short training), with `extra` TOML appended.
pub fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("cluster.toml");
    let text = format!(
        "[eval]\nset = \"{}\"\n[devnet]\ndemo_miners = false\nweights_rate_limit = 1\n[training]\nepochs = 1\nmax_seq_len = 256\nlr = 2e-3\nlora_rank = 4\nlora_alpha = 8.0\nmax_rows = 40\n[dataset]\nmax_rows = 40\n{extra}",
        repo().join("eval_data/data.jsonl").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// `BINARY --config CONFIG ARGS` with `envs`, in `cwd` (default: the test's), without any
/// Hugging Face or wallet settings from the environment of whoever runs the tests.
fn command(
    binary: &Path,
    config: &Path,
    args: &[&str],
    cwd: Option<&Path>,
    envs: &[(&str, &str)],
) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn");
    for var in [
        "HF_TOKEN",
        "HUGGINGFACE_TOKEN",
        "HF_ACCESS_TOKEN",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "HF_TOKEN_PATH",
        "BT_WALLET_NAME",
        "BT_WALLET_HOTKEY",
        "BT_WALLET_PATH",
    ] {
        cmd.env_remove(var);
    }
    let home = config.parent().expect("dir").join("hf-home");
    cmd.env("HF_HOME", &home);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// `miner-cli --config CONFIG ARGS` with `envs`, in `cwd` (default: the test's), without any
/// Hugging Face or wallet settings from the environment of whoever runs the tests.
pub fn miner(config: &Path, args: &[&str], cwd: Option<&Path>, envs: &[(&str, &str)]) -> Output {
    let binary = Path::new(env!("CARGO_BIN_EXE_miner-cli"));
    command(binary, config, args, cwd, envs)
        .output()
        .expect("miner-cli runs")
}

/// [`miner`] that must succeed; its stdout.
pub fn ok(config: &Path, args: &[&str], cwd: Option<&Path>, envs: &[(&str, &str)]) -> String {
    let out = miner(config, args, cwd, envs);
    assert!(
        out.status.success(),
        "miner-cli {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `coordinator` binary beside `miner-cli`. miner-cli does not depend on the validator, so
/// cargo builds it for the coordinator package's own tests: `cargo test --workspace` (what CI
/// runs) has it; a run of this package alone needs `cargo build -p murmuration-coordinator` first.
pub fn coordinator_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_miner-cli"))
        .with_file_name(format!("coordinator{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{}: no coordinator binary; build it first (cargo build -p murmuration-coordinator), as \
         cargo test --workspace does",
        bin.display()
    );
    bin
}

/// One validator epoch: `coordinator --config CONFIG run --epochs 1 --json`, its report.
pub fn epoch(config: &Path) -> EpochReport {
    let out = command(
        &coordinator_bin(),
        config,
        &["run", "--epochs", "1", "--json"],
        None,
        &[],
    )
    .output()
    .expect("coordinator runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "coordinator run failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("one report line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("report {line:?}: {e}"))
}
