//! miner-cli on the devnet: register, submit, the validator scores the new miner, status shows it;
//! validate names a bad line.

use std::path::{Path, PathBuf};
use std::process::Command;

use coordinator::report::EpochReport;
use protocol::config::ClusterConfig;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("cluster.toml");
    let text = format!(
        "[eval]\nset = \"{}\"\n[devnet]\ndemo_miners = false\nweights_rate_limit = 1\n[training]\nepochs = 1\nmax_seq_len = 256\nlr = 2e-3\nlora_rank = 4\nlora_alpha = 8.0\nmax_rows = 40\n[dataset]\nmax_rows = 40\n",
        repo().join("eval_data/data.jsonl").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn run(bin: &str, config: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn submit_then_an_epoch_scores_the_new_miner_and_status_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    // The first run creates the devnet (no demo miners): an epoch with nobody to score.
    let epoch = |config: &Path| -> Vec<EpochReport> {
        let cluster = ClusterConfig::load(config).expect("config");
        let mut reports = Vec::new();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime
            .block_on(coordinator::service::run_validator(
                cluster,
                config,
                Some(1),
                |r| reports.push(r.clone()),
            ))
            .expect("epoch");
        reports
    };
    assert_eq!(epoch(&config)[0].trained, 0);
    let miner = env!("CARGO_BIN_EXE_miner-cli");
    assert!(run(miner, &config, &["register"]).contains("registered as uid 1"));
    let data = repo().join("eval_data/demo/on_topic.jsonl");
    let out = run(
        miner,
        &config,
        &[
            "submit",
            "--dataset_path",
            data.to_str().expect("utf8"),
            "--hf_repo_id",
            "me/set",
        ],
    );
    assert!(out.contains("committed me/set:1:"), "{out}");
    let report = &epoch(&config)[0];
    assert_eq!(report.trained, 1, "{report}");
    let status = run(miner, &config, &["status"]);
    assert!(
        status.contains("uid 1")
            && status.contains("commitment me/set:1:")
            && status.contains("win rate 1.000"),
        "{status}"
    );
}

#[test]
fn validate_reports_the_bad_line_or_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let miner = env!("CARGO_BIN_EXE_miner-cli");
    let out = Command::new(miner)
        .arg("--config")
        .arg(&config)
        .args(["validate"])
        .arg(repo().join("eval_data/demo/malformed.jsonl"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 7") && stderr.contains("malformed.jsonl"),
        "{stderr}"
    );
    let good = run(
        miner,
        &config,
        &[
            "validate",
            repo()
                .join("eval_data/demo/duplicate.jsonl")
                .to_str()
                .expect("utf8"),
        ],
    );
    assert!(
        good.contains("rows used: 40") && good.contains("rows also in the eval set"),
        "{good}"
    );
}
