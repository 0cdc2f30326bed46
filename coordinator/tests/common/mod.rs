//! Shared by the coordinator's integration tests: the repository's eval set and demo miners, the
//! `[training]` tables the tests run with, config files, and the real `coordinator` binary;
//! [`cluster`] adds what the cluster fault tests share.

#![allow(dead_code)] // each test file uses its own part

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use protocol::scoring::EpochReport;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The default eval set, `eval_data/data.jsonl`.
pub fn eval_set() -> PathBuf {
    repo().join("eval_data/data.jsonl")
}

/// The demo miners' datasets, `eval_data/demo`.
pub fn demo_dir() -> PathBuf {
    repo().join("eval_data/demo")
}

/// The shipped `cluster.toml`'s scaled-down training with `epochs` passes: a demo epoch takes
/// seconds per miner on a CPU.
pub fn demo_training(epochs: usize) -> String {
    format!(
        "[training]\nmicro_batch = 4\ngrad_accum = 2\nepochs = {epochs}\nmax_seq_len = 256\n\
         lr = 2e-3\nwarmup_steps = 2\nlora_rank = 8\nlora_alpha = 16.0\nmax_rows = 100\n\
         [dataset]\nmax_rows = 100\n"
    )
}

/// Less training still: one pass over at most 40 rows of 128 tokens, for tests about anything
/// but the losses.
pub const QUICK_TRAINING: &str = "[training]\nmicro_batch = 4\ngrad_accum = 2\nepochs = 1\n\
    max_seq_len = 128\nlr = 2e-3\nwarmup_steps = 1\nlora_rank = 4\nlora_alpha = 8.0\n\
    max_rows = 40\n[dataset]\nmax_rows = 100\n";

/// Writes `text` as `dir/cluster.toml`; its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `coordinator --config CONFIG` with warnings-only logs.
pub fn coordinator(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coordinator"));
    cmd.arg("--config").arg(config).env("RUST_LOG", "warn");
    cmd
}

/// The reports of a successful `coordinator run --json`, one per line of its output.
pub fn reports(out: &Output) -> Vec<EpochReport> {
    assert!(
        out.status.success(),
        "coordinator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON report per line"))
        .collect()
}

/// `coordinator run --json --epochs N` on `config`: the N reports.
pub fn run_epochs(config: &Path, epochs: u64) -> Vec<EpochReport> {
    let out = coordinator(config)
        .args(["run", "--json", "--epochs", &epochs.to_string()])
        .output()
        .expect("coordinator runs");
    reports(&out)
}

/// A file's text, or nothing when it cannot be read (yet).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits (up to `limit`) until `done` holds, failing with `what` and the process's stderr.
pub fn wait_until(limit: Duration, what: &str, stderr: &Path, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}; stderr:\n{}",
            read(stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the process to exit (up to `limit`), killing it otherwise.
pub fn wait_exit(child: &mut Child, limit: Duration, stderr: &Path) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "coordinator still running after {limit:?}; stderr:\n{}",
                read(stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends the signal `name` (`TERM`, `INT`, …) to `child` with kill(1).
pub fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}
