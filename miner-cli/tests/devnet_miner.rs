//! miner-cli on the devnet with its local hub: register, submit, the validator scores the new
//! miner, status shows it, `eval` reproduces the validator's loss; validate names a bad line and
//! summarises a good file.

mod common;

use common::{config, demo, epoch, miner, ok, repo};

#[test]
fn submit_then_an_epoch_scores_the_new_miner_and_status_and_eval_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "");
    // The first run creates the devnet (no demo miners): an epoch with nobody to score.
    assert_eq!(epoch(&config).trained, 0);
    assert!(ok(&config, &["register"], None, &[]).contains("registered as uid 1"));
    let data = demo("on_topic");
    let out = ok(
        &config,
        &["submit", "--dataset_path", &data, "--hf_repo_id", "me/set"],
        None,
        &[],
    );
    assert!(
        out.contains("committed me/set:1:") && out.contains("validators read back: me/set:1:"),
        "{out}"
    );
    let competitions = ok(&config, &["--list-competitions"], None, &[]);
    assert!(
        competitions.contains("validator config knows: 1")
            && competitions.contains("competition 1: 1 commitment(s)"),
        "{competitions}"
    );
    let report = epoch(&config);
    assert_eq!(report.trained, 1, "{report}");
    let status = ok(&config, &["status"], None, &[]);
    assert!(
        status.contains("uid 1")
            && status.contains("commitment me/set:1:")
            && status.contains("win rate 1.000"),
        "{status}"
    );
    // Scoring locally gives the validator's loss; another wallet sees uid 1 as its competitor.
    let loss = report.miners[0].eval_loss.expect("scored");
    let eval = ok(
        &config,
        &["--wallet.name", "newcomer", "eval", &data],
        None,
        &[],
    );
    assert!(
        eval.contains(&format!("eval loss {loss:.5}")) && eval.contains("rank 1 of 2"),
        "validator {loss:.5}: {eval}"
    );
    // With the tiny model generated, validate counts tokens.
    let summary = ok(&config, &["validate", &data], None, &[]);
    assert!(
        summary.contains("tokens (") && summary.contains("trained on"),
        "{summary}"
    );
}

#[test]
fn validate_reports_the_bad_line_or_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "");
    let out = miner(&config, &["validate", &demo("malformed")], None, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 7")
            && stderr.contains("malformed.jsonl")
            && !stderr.contains("panick"),
        "{stderr}"
    );
    // Three rows of a demo file, one eval-set row, and the first row again.
    let on_topic = std::fs::read_to_string(demo("on_topic")).expect("demo");
    let eval = std::fs::read_to_string(repo().join("eval_data/data.jsonl")).expect("eval");
    let lines: Vec<&str> = on_topic.lines().take(3).collect();
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        lines[0],
        lines[1],
        lines[2],
        eval.lines().next().expect("eval row"),
        lines[0]
    );
    let file = dir.path().join("mine.jsonl");
    std::fs::write(&file, text).expect("write");
    let good = ok(
        &config,
        &["validate", file.to_str().expect("utf8")],
        None,
        &[],
    );
    assert!(
        good.contains("rows used: 5")
            && good.contains("duplicate rows inside the file: 1 (line 5 repeats line 1)")
            && good.contains("rows also in the eval set")
            && good.contains(": 1 of 5 (20.0 %), lines 4")
            && good.contains("tokens: not counted"),
        "{good}"
    );
    // A missing file names itself.
    let missing = miner(&config, &["validate", "/nonexistent/data.jsonl"], None, &[]);
    assert!(
        !missing.status.success()
            && String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/data.jsonl"),
    );
}
