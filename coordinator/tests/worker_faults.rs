//! The same rules on both worker paths, with the real engine: an in-process CPU worker and a
//! `worker serve` process on 127.0.0.1.
//!
//! - A dataset at every `[dataset]` limit scores the same in process and remotely (jobs carry the
//!   validator's bytes and limits).
//! - A failure that is not the miner's data (here: an eval set with no supervised token under the
//!   validator's `max_seq_len`) is never cached against the miner.
//! - A job that does not stop after its cancel (the engine only checks between optimizer steps,
//!   and an evaluation-only job has none) is abandoned past a grace period, and the epoch ends.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{
    cached, coordinator_keygen, job_runs, losses, remote_worker, run_epoch, start_worker,
    write_cluster_config, Processes,
};
use coordinator::DEMO_MINERS;
use protocol::scoring::EpochReport;

/// Where the validator's workers are.
enum Workers {
    InProcess,
    /// One `worker serve` process.
    Remote,
}

/// Runs one epoch in a fresh directory with `tables` (TOML) and the given workers; returns the
/// directory, the report and how long the epoch took.
fn epoch(tables: &str, workers: Workers) -> (tempfile::TempDir, EpochReport, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut _processes = Processes::default();
    let text = match workers {
        Workers::InProcess => tables.to_string(),
        Workers::Remote => {
            let fp = coordinator_keygen(dir.path());
            let (child, address, worker_fp) =
                start_worker(&dir.path().join("worker"), "w", &fp, "", "");
            _processes.0.push(child);
            format!(
                "workers = []\n{tables}{}",
                remote_worker("w", &address, &worker_fp)
            )
        }
    };
    let config = write_cluster_config(dir.path(), &text);
    let (report, took) = run_epoch(&config, Duration::from_secs(300));
    (dir, report, took)
}

/// A `[training]` table for fast jobs.
fn training(extra: &str) -> String {
    format!("[training]\nmicro_batch = 4\ngrad_accum = 1\nepochs = 1\nlr = 2e-3\nwarmup_steps = 0\nlora_rank = 4\nlora_alpha = 8.0\nmax_rows = 20\n{extra}")
}

/// The first `n` lines of `file`.
fn lines(file: &Path, n: usize) -> String {
    std::fs::read_to_string(file)
        .expect("read")
        .lines()
        .take(n)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn a_dataset_at_every_limit_scores_the_same_in_process_and_remote() {
    // Miner "on_topic" commits 20 rows (max_rows) of nesting depth 3 (max_json_depth), the
    // first one a line of exactly max_line_bytes without a system prompt (the coordinator used
    // to add `"system":null` to such rows), and the file is exactly max_file_bytes long.
    let data = tempfile::tempdir().expect("tempdir");
    let demo = common::repo().join("eval_data/demo");
    let max_line_bytes = 1_100_000; // over the 1 MiB default, which workers used to apply
    let head = r#"{"conversations":[{"role":"user","content":"Say the word many times."},{"role":"assistant","content":""#;
    let tail = r#""}]}"#;
    let filler = max_line_bytes - head.len() - tail.len();
    let long_row = format!(
        "{head}{}{tail}",
        "word ".repeat(filler / 5) + &"x".repeat(filler % 5)
    );
    assert_eq!(long_row.len(), max_line_bytes);
    let file = format!("{long_row}\n{}", lines(&demo.join("on_topic.jsonl"), 19));
    let dir = data.path().join("demo");
    std::fs::create_dir_all(&dir).expect("dir");
    for name in DEMO_MINERS {
        let text = if name == "on_topic" {
            file.clone()
        } else {
            std::fs::read_to_string(demo.join(format!("{name}.jsonl"))).expect("demo")
        };
        std::fs::write(dir.join(format!("{name}.jsonl")), text).expect("write");
    }
    let eval = common::cluster::small_eval_set(data.path(), 40);
    let tables = format!(
        "[eval]\nset = \"{}\"\n[devnet]\ndemo_dir = \"{}\"\n{}[dataset]\nmax_rows = 20\nmax_line_bytes = {max_line_bytes}\nmax_file_bytes = {}\nmax_json_depth = 3\n",
        eval.display(),
        dir.display(),
        training("max_seq_len = 64\n"),
        file.len(),
    );
    let (_a, in_process, _) = epoch(&tables, Workers::InProcess);
    let on_topic = &in_process.miners[0];
    assert!(
        on_topic.eval_loss.is_some() && on_topic.rows == Some(20),
        "the dataset at the limits is valid:\n{in_process}"
    );
    let (_b, remote, _) = epoch(&tables, Workers::Remote);
    assert_eq!(
        losses(&remote),
        losses(&in_process),
        "remote:\n{remote}\nin process:\n{in_process}"
    );
}

/// Checks that an epoch scored nobody, cached nothing, and abandoned its job runs with a reason
/// containing `expected`.
fn nothing_charged(dir: &Path, report: &EpochReport, expected: &str) {
    let valid: Vec<_> = report.miners.iter().filter(|m| m.rows.is_some()).collect();
    assert!(!valid.is_empty());
    for m in valid {
        assert!(
            m.eval_loss.is_none()
                && (m.reason == "waiting in the EvalQueue"
                    || m.reason.starts_with("not trained this epoch (not charged")),
            "uid {} was charged:\n{report}",
            m.uid
        );
    }
    assert_eq!(cached(dir), vec![], "nothing is cached");
    let runs = job_runs(dir);
    assert!(!runs.is_empty());
    assert!(
        runs.iter().all(|r| r
            .outcome
            .as_deref()
            .is_some_and(|o| o.starts_with("abandoned"))),
        "{runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.outcome.as_deref().is_some_and(|o| o.contains(expected))),
        "no run says {expected:?}: {runs:?}"
    );
}

fn eval_and_demo(dir: &Path, eval: &Path) -> String {
    format!(
        "[eval]\nset = \"{}\"\n[devnet]\ndemo_dir = \"{}\"\n",
        eval.display(),
        dir.display()
    )
}

/// An epoch whose eval set has no supervised token under the validator's `max_seq_len`: four
/// tokens hold only the start of a user turn.
fn eval_set_without_supervised_tokens(workers: Workers) {
    let data = tempfile::tempdir().expect("tempdir");
    let eval = common::cluster::small_eval_set(data.path(), 40);
    let tables = format!(
        "{}{}[dataset]\nmax_rows = 20\n",
        eval_and_demo(&common::repo().join("eval_data/demo"), &eval),
        training("max_seq_len = 4\n")
    );
    let (dir, report, _) = epoch(&tables, workers);
    nothing_charged(dir.path(), &report, "no row has a supervised token");
}

#[test]
fn a_failure_that_is_not_the_miners_is_not_charged_to_the_miner_in_process() {
    eval_set_without_supervised_tokens(Workers::InProcess);
}

#[test]
fn a_failure_that_is_not_the_miners_is_not_charged_to_the_miner_remotely() {
    eval_set_without_supervised_tokens(Workers::Remote);
}

/// An eval set of `rows` rows (the repository's, repeated).
fn big_eval_set(dir: &Path, rows: usize) -> PathBuf {
    let base = std::fs::read_to_string(common::repo().join("eval_data/data.jsonl")).expect("eval");
    let text: String = base
        .lines()
        .cycle()
        .take(rows)
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join("big_eval.jsonl");
    std::fs::write(&path, text).expect("eval");
    path
}

/// Evaluation only (epochs = 0), on 100,000 rows: about 20 s of work on two cores (tokenising
/// and evaluating) that never looks at the cancel flag, against a 3 s job timeout and the 3 s
/// grace (worker_timeout_ms). (20,000 rows took 25 s before the CPU eval kernels; they now end
/// within the grace.) The timeout leaves a remote worker time to parse the 20 MB eval set: a
/// cancel that arrives before the job took its device ends it at once, which is not this test.
fn a_job_deaf_to_its_cancel(workers: Workers, expected: &str) {
    let data = tempfile::tempdir().expect("tempdir");
    let eval = big_eval_set(data.path(), 100_000);
    let tables = format!(
        "[coordinator]\njob_timeout_secs = 3\n{}[training]\nepochs = 0\nmax_seq_len = 128\nmax_rows = 20\n[dataset]\nmax_rows = 20\n",
        eval_and_demo(&common::repo().join("eval_data/demo"), &eval),
    );
    let (dir, report, took) = epoch(&tables, workers);
    nothing_charged(dir.path(), &report, expected);
    // Measured: about 9 s in process and 16 s remotely (three jobs, each cancelled at 3 s; the
    // first abandoned 3 s later). Waiting out the deaf jobs instead would take over a minute.
    assert!(took < Duration::from_secs(40), "the epoch took {took:?}");
}

#[test]
fn a_job_deaf_to_its_cancel_is_abandoned_in_process_and_the_epoch_ends() {
    a_job_deaf_to_its_cancel(
        Workers::InProcess,
        "did not stop within 3.0 s of its cancel",
    );
}

#[test]
fn a_job_deaf_to_its_cancel_is_abandoned_remotely_and_the_epoch_ends() {
    a_job_deaf_to_its_cancel(Workers::Remote, "did not end within 3.0 s of its cancel");
}
