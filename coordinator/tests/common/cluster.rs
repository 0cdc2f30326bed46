//! What the cluster fault tests share: the `coordinator` and `worker` binaries, key pairs,
//! configs, running an epoch under a deadline, and reading the validator's state afterwards.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::scoring::EpochReport;

use super::repo;

/// The `worker` binary of this workspace (built by `cargo test --workspace`; built here
/// otherwise).
pub fn worker_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_coordinator")).with_file_name("worker");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "murmuration-worker", "--bin", "worker"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the worker binary failed");
    }
    bin
}

/// Child processes killed when dropped.
#[derive(Default)]
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `[cluster]` table of every test: short timeouts, so faults show within seconds.
pub const CLUSTER: &str = "[cluster]\npki_dir = \"pki\"\nkeep_alive_ms = 500\nidle_timeout_ms = 5000\nheartbeat_ms = 250\nworker_timeout_ms = 3000\n";

/// `coordinator keygen` in `dir`; returns the fingerprint.
pub fn coordinator_keygen(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("cluster.toml"), CLUSTER).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--config")
        .arg(dir.join("cluster.toml"))
        .arg("keygen")
        .output()
        .expect("keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Starts `worker serve` in `dir` pinned to `coordinator_fp`, with `extra` lines in its
/// `[worker_node]` table and `config` (other tables) before it; returns the process, its address
/// and its fingerprint.
pub fn start_worker(
    dir: &Path,
    id: &str,
    coordinator_fp: &str,
    config: &str,
    extra: &str,
) -> (Child, String, String) {
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join("cluster.toml");
    std::fs::write(
        &path,
        format!(
            "{config}{CLUSTER}[worker_node]\nid = \"{id}\"\nlisten = \"127.0.0.1:0\"\ncoordinator_fingerprint = \"{coordinator_fp}\"\ndevices = [\"cpu\"]\n{extra}"
        ),
    )
    .expect("config");
    let keygen = Command::new(worker_bin())
        .args(["keygen", "--config"])
        .arg(&path)
        .output()
        .expect("keygen");
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let mut child = Command::new(worker_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"listening"), "{line}");
    (child, words[2].to_string(), words[4].to_string())
}

/// A `[[remote_workers]]` entry.
pub fn remote_worker(id: &str, address: &str, fingerprint: &str) -> String {
    format!("[[remote_workers]]\nid = \"{id}\"\naddress = \"{address}\"\nfingerprint = \"{fingerprint}\"\n")
}

/// Writes `text` as `dir/cluster.toml`, with the test `[cluster]` table added.
pub fn write_cluster_config(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    super::write_config(dir, &format!("{text}{CLUSTER}"))
}

/// The first `n` rows of the repository's eval set, written to `dir/eval.jsonl`.
pub fn small_eval_set(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("eval_data/data.jsonl")).expect("eval set");
    let rows: String = text.lines().take(n).map(|l| format!("{l}\n")).collect();
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join("eval.jsonl");
    std::fs::write(&path, rows).expect("eval set");
    path
}

/// Runs `coordinator run --json --epochs 1` and returns its report and how long it took; fails
/// the test when the process is still running after `limit` (it is killed then).
pub fn run_epoch(config: &Path, limit: Duration) -> (EpochReport, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--config")
        .arg(config)
        .args(["run", "--json", "--epochs", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coordinator");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the epoch did not end within {limit:?}:\n{}",
                tail(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "{}", tail(&out.stderr));
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report: {e}\n{}\n{}", tail(&out.stdout), tail(&out.stderr)));
    (report, took)
}

/// The last 4,000 characters of a process's output.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let chars: Vec<char> = text.chars().collect();
    chars[chars.len().saturating_sub(4000)..].iter().collect()
}

/// `(uid, loss, reason)` of every miner.
pub fn losses(report: &EpochReport) -> Vec<(u16, Option<f64>, String)> {
    report
        .miners
        .iter()
        .map(|m| (m.uid, m.eval_loss, m.reason.clone()))
        .collect()
}

/// One row of `job_runs`.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// The miner.
    pub uid: u16,
    /// The worker that had it.
    pub worker: Option<String>,
    /// `done`, or why it was abandoned.
    pub outcome: Option<String>,
}

/// Every job run of the state in `dir`.
pub fn job_runs(dir: &Path) -> Vec<JobRun> {
    let conn = rusqlite::Connection::open(dir.join("state/validator.sqlite")).expect("state");
    let mut stmt = conn
        .prepare("SELECT uid, worker, outcome FROM job_runs ORDER BY id")
        .expect("query");
    stmt.query_map([], |r| {
        Ok(JobRun {
            uid: r.get(0)?,
            worker: r.get(1)?,
            outcome: r.get(2)?,
        })
    })
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// `(worker, outcome JSON)` of every cached loss of the state in `dir`.
pub fn cached(dir: &Path) -> Vec<(Option<String>, String)> {
    let conn = rusqlite::Connection::open(dir.join("state/validator.sqlite")).expect("state");
    let mut stmt = conn
        .prepare("SELECT worker, outcome FROM losses")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}
