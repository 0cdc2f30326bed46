//! The QUIC cluster on one machine: `worker serve` processes on 127.0.0.1 with the tiny model on
//! CPU. Results equal single-node mode; a worker killed mid-job loses nothing; a garbage frame
//! closes that connection and nothing else.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::scoring::EpochReport;
use protocol::transport::{self, Identity, Timeouts, SERVER_NAME};
use protocol::wire::{FrameDecoder, Message, ALPN};

mod common;

use common::{
    coordinator, demo_dir, demo_training, eval_set, run_epochs, write_config, QUICK_TRAINING,
};

/// The `worker` binary of this workspace (built by `cargo test --workspace`; built here otherwise).
fn worker_bin() -> PathBuf {
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

const CLUSTER: &str = "[cluster]\npki_dir = \"pki\"\nkeep_alive_ms = 500\nidle_timeout_ms = 3000\nheartbeat_ms = 300\nworker_timeout_ms = 3000\n";

/// A coordinator config in `dir`: in-process CPU worker when `remote` is empty.
fn coordinator_config(dir: &Path, remote: &[(String, String, String)], epochs: usize) -> PathBuf {
    let mut text = format!(
        "[eval]\nset = \"{}\"\n[devnet]\ndemo_dir = \"{}\"\n{}{}",
        eval_set().display(),
        demo_dir().display(),
        demo_training(epochs),
        CLUSTER
    );
    if !remote.is_empty() {
        text = format!("workers = []\n{text}");
        for (id, address, fingerprint) in remote {
            text.push_str(&format!("[[remote_workers]]\nid = \"{id}\"\naddress = \"{address}\"\nfingerprint = \"{fingerprint}\"\n"));
        }
    }
    write_config(dir, &text)
}

fn coordinator_keygen(dir: &Path) -> String {
    let out = coordinator(&write_config(dir, CLUSTER))
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

/// Starts `worker serve` pinned to `coordinator_fp`; returns the process, address and fingerprint.
fn start_worker(dir: &Path, id: &str, coordinator_fp: &str) -> (Child, String, String) {
    std::fs::create_dir_all(dir).expect("dir");
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "{CLUSTER}[worker_node]\nid = \"{id}\"\nlisten = \"127.0.0.1:0\"\ncoordinator_fingerprint = \"{coordinator_fp}\"\ndevices = [\"cpu\"]\n"
        ),
    )
    .expect("config");
    let keygen = Command::new(worker_bin())
        .args(["keygen", "--config"])
        .arg(&config)
        .output()
        .expect("keygen");
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let mut child = Command::new(worker_bin())
        .args(["serve", "--config"])
        .arg(&config)
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

fn run_epoch(config: &Path) -> EpochReport {
    run_epochs(config, 1).pop().expect("one report")
}

fn losses(report: &EpochReport) -> Vec<(u16, Option<f64>, String)> {
    report
        .miners
        .iter()
        .map(|m| (m.uid, m.eval_loss, m.reason.clone()))
        .collect()
}

struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn two_remote_workers_give_the_single_node_result() {
    let single = tempfile::tempdir().expect("tempdir");
    let expected = run_epoch(&coordinator_config(single.path(), &[], 2));

    let dir = tempfile::tempdir().expect("tempdir");
    let fp = coordinator_keygen(dir.path());
    let (a, addr_a, fp_a) = start_worker(&dir.path().join("wa"), "wa", &fp);
    let (b, addr_b, fp_b) = start_worker(&dir.path().join("wb"), "wb", &fp);
    let _workers = Workers(vec![a, b]);
    let remote = [
        ("wa".to_string(), addr_a, fp_a),
        ("wb".to_string(), addr_b, fp_b),
    ];
    let report = run_epoch(&coordinator_config(dir.path(), &remote, 2));
    assert_eq!(
        losses(&report),
        losses(&expected),
        "cluster:\n{report}\nsingle node:\n{expected}"
    );
    let used: std::collections::BTreeSet<_> = report
        .miners
        .iter()
        .filter_map(|m| m.worker.clone())
        .collect();
    assert!(
        used.iter().all(|w| w == "wa" || w == "wb") && !used.is_empty(),
        "{used:?}"
    );
    let workers = coordinator(&dir.path().join("cluster.toml"))
        .arg("workers")
        .output()
        .expect("coordinator workers");
    let listing = String::from_utf8_lossy(&workers.stdout);
    assert!(
        workers.status.success(),
        "{}",
        String::from_utf8_lossy(&workers.stderr)
    );
    assert!(
        listing.contains("status published")
            && listing.contains("wa")
            && listing.contains("remote"),
        "{listing}"
    );
}

/// The `miner-cli` binary beside `coordinator` (built by `cargo test --workspace`).
fn miner_cli(config: &Path, args: &[&str]) -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_coordinator")).with_file_name("miner-cli");
    assert!(
        bin.exists(),
        "{}: build it first (cargo build --workspace)",
        bin.display()
    );
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("BT_WALLET_NAME")
        .env_remove("BT_WALLET_PATH")
        .output()
        .expect("miner-cli");
    assert!(
        out.status.success(),
        "miner-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two competitions with their own eval sets, trained on one remote worker: each job is
/// evaluated on its competition's set, which the proxy sends over the connection it needs it on
/// (both sets over one connection here), and the losses equal miner-cli's local scoring on the
/// same set.
#[test]
fn a_remote_worker_evaluates_each_competition_on_its_own_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fp = coordinator_keygen(dir.path());
    let (a, addr_a, fp_a) = start_worker(&dir.path().join("wa"), "wa", &fp);
    let _workers = Workers(vec![a]);
    let demo_eval = std::fs::read_to_string(eval_set()).expect("eval set");
    let lines: Vec<&str> = demo_eval.lines().collect();
    let second = dir.path().join("eval-two.jsonl");
    std::fs::write(&second, lines[lines.len() - 40..].join("\n") + "\n").expect("write");
    let config = write_config(
        dir.path(),
        &format!(
            "workers = []\n[eval]\nset = \"{}\"\n[devnet]\ndemo_miners = false\n{QUICK_TRAINING}{CLUSTER}\
             [[remote_workers]]\nid = \"wa\"\naddress = \"{addr_a}\"\nfingerprint = \"{fp_a}\"\n\
             [[competitions]]\nid = \"1\"\n\n[[competitions]]\nid = \"2\"\neval_set = \"{}\"\n",
            eval_set().display(),
            second.display()
        ),
    );
    assert_eq!(run_epoch(&config).trained, 0);
    for (name, data, competition) in [("alice", "on_topic", "1"), ("bob", "off_topic", "2")] {
        miner_cli(&config, &["--wallet.name", name, "register"]);
        let file = demo_dir().join(format!("{data}.jsonl"));
        let repo = format!("{name}/set");
        miner_cli(
            &config,
            &[
                "--wallet.name",
                name,
                "submit",
                "--dataset_path",
                file.to_str().expect("utf8"),
                "--hf_repo_id",
                &repo,
                "--competition",
                competition,
            ],
        );
    }
    let report = run_epoch(&config);
    assert_eq!(report.trained, 2, "{report}");
    for (competition, data) in [("1", "on_topic"), ("2", "off_topic")] {
        let line = report
            .miners
            .iter()
            .find(|m| m.competition.as_deref() == Some(competition))
            .unwrap_or_else(|| panic!("no miner of competition {competition}: {report}"));
        assert_eq!(line.worker.as_deref(), Some("wa"), "{report}");
        let remote = line.eval_loss.expect("scored");
        let file = demo_dir().join(format!("{data}.jsonl"));
        let local = miner_cli(
            &config,
            &[
                "eval",
                file.to_str().expect("utf8"),
                "--competition",
                competition,
            ],
        );
        let rows = if competition == "2" { 40 } else { lines.len() };
        assert!(
            local.contains(&format!("eval loss {remote:.5}"))
                && local.contains(&format!(" {rows} eval rows")),
            "competition {competition}: remote {remote:.5}, local: {local}"
        );
    }
}

#[test]
fn a_worker_killed_mid_job_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fp = coordinator_keygen(dir.path());
    let (a, addr_a, fp_a) = start_worker(&dir.path().join("wa"), "wa", &fp);
    let (b, addr_b, fp_b) = start_worker(&dir.path().join("wb"), "wb", &fp);
    let mut workers = Workers(vec![a, b]);
    let remote = [
        ("wa".to_string(), addr_a, fp_a),
        ("wb".to_string(), addr_b, fp_b),
    ];
    let config = coordinator_config(dir.path(), &remote, 12);
    let coordinator = coordinator(&config)
        .args(["run", "--json", "--epochs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("coordinator");
    // Kill worker A once both workers have a job.
    let db = dir.path().join("state/validator.sqlite");
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "jobs never started"
        );
        let running =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| {
                    c.query_row(
                        "SELECT COUNT(*) FROM job_runs WHERE finished_at IS NULL",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .unwrap_or(0);
        if running >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    workers.0[0].kill().expect("kill worker A");
    let out = coordinator.wait_with_output().expect("coordinator");
    assert!(out.status.success());
    let report: EpochReport = serde_json::from_slice(&out.stdout).expect("report");
    let scored: Vec<_> = report
        .miners
        .iter()
        .filter(|m| m.eval_loss.is_some())
        .collect();
    assert_eq!(
        scored.len(),
        3,
        "every valid, unique miner scored:\n{report}"
    );
    assert!(
        scored.iter().all(|m| m.worker.as_deref() == Some("wb"))
            || scored.iter().any(|m| m.worker.as_deref() == Some("wb"))
    );
    let conn = rusqlite::Connection::open(&db).expect("db");
    let finished: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM job_runs WHERE finished_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    let distinct: i64 = conn
        .query_row(
            "SELECT COUNT(DISTINCT revision) FROM job_runs WHERE finished_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        (finished, distinct),
        (3, 3),
        "each miner trained to completion exactly once"
    );
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_the_connection_but_not_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = Identity::generate("coordinator").expect("identity");
    let (child, address, fp) = start_worker(&dir.path().join("w"), "w", &coordinator.fingerprint());
    let _workers = Workers(vec![child]);
    let timeouts = Timeouts {
        keep_alive: Duration::from_millis(500),
        idle: Duration::from_secs(3),
    };
    let endpoint = transport::client_endpoint().expect("endpoint");
    let config = transport::client_config(&coordinator, &fp, timeouts, ALPN).expect("config");
    let addr = address.parse().expect("addr");
    for bad in [
        vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3],
        (u32::MAX).to_be_bytes().to_vec(),
        vec![0, 0, 0, 9, 99, 1, 2, 3, 4, 5, 6, 7, 8],
    ] {
        let conn = endpoint
            .connect_with(config.clone(), addr, SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake");
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        send.write_all(&bad).await.expect("write");
        // The worker may greet first, but it closes the connection on the bad frame.
        let mut decoder = FrameDecoder::new(protocol::wire::Sender::Worker);
        let _ = transport::receive(&mut recv, &mut decoder).await;
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        assert!(
            closed.is_ok(),
            "the worker should close the connection after {bad:?}"
        );
    }
    // Still serving: a clean connection gets its Hello.
    let conn = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    transport::send(
        &mut send,
        &Message::Heartbeat(protocol::wire::Heartbeat { nonce: 1 }),
    )
    .await
    .expect("heartbeat");
    let mut decoder = FrameDecoder::new(protocol::wire::Sender::Worker);
    let hello = transport::receive(&mut recv, &mut decoder)
        .await
        .expect("hello");
    assert!(matches!(hello, Some(Message::Hello(_))), "{hello:?}");
}
