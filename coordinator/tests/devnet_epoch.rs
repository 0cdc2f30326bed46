//! The validator end to end on the embedded devnet, through the real `coordinator` binary: a
//! whole epoch, the loss cache, a process killed mid-epoch and restarted, the scoring audit, and
//! configuration errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coordinator::State;
use protocol::scoring::EpochReport;
use subtensor::Chain;
use subtensor::DevnetChain;

mod common;

use common::{
    coordinator, demo_dir, demo_training, eval_set, read, run_epochs, signal, wait_until,
};

/// A cluster.toml in `dir` using the repo's eval set and demo miners; `training_epochs` sets
/// how long each job takes.
fn write_config(dir: &Path, training_epochs: usize) -> PathBuf {
    write_config_with(dir, training_epochs, 10)
}

/// [`write_config`] with the devnet's weights rate limit in blocks.
fn write_config_with(dir: &Path, training_epochs: usize, rate_limit: u64) -> PathBuf {
    let text = format!(
        r#"
[coordinator]
state_dir = "state"
epoch_interval_secs = 1
[eval]
set = "{eval}"
[devnet]
tempo = 10
weights_rate_limit = {rate_limit}
demo_dir = "{demo}"
{training}"#,
        eval = eval_set().display(),
        demo = demo_dir().display(),
        training = demo_training(training_epochs),
    );
    common::write_config(dir, &text)
}

/// Reads a running coordinator's database without writing to it (no schema creation race):
/// `(revision, finished)` of every job run, or `None` while the database is not ready.
fn job_runs_read_only(db: &Path) -> Option<Vec<(String, bool)>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    let mut stmt = conn
        .prepare("SELECT revision, finished_at IS NOT NULL FROM job_runs ORDER BY id")
        .ok()?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).ok()?;
    rows.collect::<Result<Vec<_>, _>>().ok()
}

/// Whether a running coordinator has finished an epoch (read-only).
fn has_report_read_only(db: &Path) -> bool {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM epochs WHERE finished_at IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .is_ok_and(|n| n > 0)
}

fn line(report: &EpochReport, uid: u16) -> &protocol::scoring::MinerLine {
    report
        .miners
        .iter()
        .find(|m| m.uid == uid)
        .expect("uid in report")
}

#[test]
fn a_devnet_epoch_ranks_the_demo_miners_and_sets_weights_on_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 2);
    let reports = run_epochs(&config, 2);
    let (first, second) = (&reports[0], &reports[1]);
    // Demo uids: 1 on_topic, 2 off_topic, 3 malformed, 4 partial, 5 duplicate (committed last).
    assert_eq!(first.trained, 3, "{first}");
    let best = first
        .miners
        .iter()
        .filter(|m| m.eval_loss.is_some())
        .min_by(|a, b| a.eval_loss.partial_cmp(&b.eval_loss).expect("finite"))
        .expect("scored miners");
    assert_eq!(
        best.uid, 1,
        "the on-distribution miner has the lowest loss:\n{first}"
    );
    assert_eq!(line(first, 1).weight_u16, 65535, "{first}");
    assert_eq!(line(first, 5).reason, "duplicate of uid 1");
    assert_eq!(line(first, 5).weight_u16, 0);
    let malformed = line(first, 3);
    assert!(
        malformed.reason.contains("line 7") && malformed.reason.contains("conversations[0].role"),
        "{}",
        malformed.reason
    );
    assert_eq!(malformed.weight_u16, 0);
    let block = first.weights_block.expect("weights set");

    // The second epoch trains nothing: every loss is cached under the same key.
    assert_eq!(second.trained, 0, "{second}");
    assert_eq!(second.cached, 3);
    assert_eq!(line(second, 1).eval_loss, line(first, 1).eval_loss);

    // The report file, which miner-cli reads instead of the database, holds the last report.
    let file = std::fs::read_to_string(dir.path().join("state/last_report.json")).expect("file");
    let published: EpochReport = serde_json::from_str(&file).expect("report JSON");
    assert_eq!(&published, second);

    // Weights are readable back from the devnet.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chain = DevnetChain::open(&dir.path().join("state/devnet.sqlite"), 12_000).expect("devnet");
    let (weights, set_at) = runtime.block_on(chain.weights(1, 0)).expect("weights");
    assert_eq!(set_at, Some(block));
    let on_chain: Vec<(u16, u16)> = first
        .miners
        .iter()
        .filter(|m| m.weight_u16 > 0)
        .map(|m| (m.uid, m.weight_u16))
        .collect();
    assert_eq!(weights, on_chain);

    // `coordinator score` agrees with the epoch it came from.
    let input: Vec<serde_json::Value> = first
        .miners
        .iter()
        .map(|m| serde_json::json!({"uid": m.uid, "block": m.commit_block.unwrap_or(0), "loss": m.eval_loss}))
        .collect();
    let mut child = coordinator(&config)
        .args(["score", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("score runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(serde_json::to_string(&input).expect("json").as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("score output");
    assert!(out.status.success());
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for m in audit["miners"].as_array().expect("miners") {
        let uid = m["uid"].as_u64().expect("uid") as u16;
        let l = line(first, uid);
        assert_eq!(m["win_rate"].as_f64(), l.win_rate, "uid {uid} win rate");
        assert!(
            (m["weight"].as_f64().expect("weight") - l.epoch_weight).abs() < 1e-12,
            "uid {uid} weight"
        );
        assert_eq!(
            m["u16"].as_u64().expect("u16") as u16,
            l.weight_u16,
            "uid {uid} u16 (first epoch: EMA ∝ epoch weights)"
        );
    }
}

#[test]
fn killed_mid_epoch_the_coordinator_resumes_without_training_anything_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 8);
    let mut child = coordinator(&config)
        .args(["run", "--epochs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("coordinator starts");
    let db = dir.path().join("state/validator.sqlite");
    let started = Instant::now();
    let finished_before_kill = loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no job finished in time"
        );
        let finished: Vec<String> = job_runs_read_only(&db)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, done)| *done)
            .map(|(revision, _)| revision)
            .collect();
        if !finished.is_empty() {
            break finished;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "coordinator exited before the kill"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().expect("kill -9");
    child.wait().expect("reaped");

    let reports = run_epochs(&config, 1);
    assert_eq!(
        reports[0].epoch, 1,
        "the unfinished epoch is resumed, not a new one"
    );
    let runs = State::open(&db).expect("state").job_runs().expect("runs");
    for revision in &finished_before_kill {
        let again = runs.iter().filter(|r| &r.revision == revision).count();
        assert_eq!(
            again, 1,
            "revision {revision} was trained again after the restart: {runs:?}"
        );
    }
    let mut finished: Vec<&str> = runs
        .iter()
        .filter(|r| r.finished)
        .map(|r| r.revision.as_str())
        .collect();
    let total = finished.len();
    finished.sort();
    finished.dedup();
    assert_eq!(finished.len(), total, "a revision finished twice: {runs:?}");
    assert_eq!(total, 3, "every valid, unique miner scored once: {runs:?}");
    assert!(
        reports[0]
            .miners
            .iter()
            .filter(|m| m.eval_loss.is_some())
            .count()
            == 3
    );
}

#[test]
fn an_epoch_resumed_after_a_failed_set_weights_applies_the_moving_average_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config_with(dir.path(), 2, 0);
    let first = run_epochs(&config, 1).remove(0);
    assert!(first.weights_block.is_some(), "{first}");

    // The devnet refuses every weight write from now on: epoch 2 stores its scores, then fails
    // at set_weights and stays open.
    let devnet = dir.path().join("state/devnet.sqlite");
    let db = rusqlite::Connection::open(&devnet).expect("devnet db");
    db.execute_batch(
        "CREATE TRIGGER refuse_weights BEFORE INSERT ON weights \
         BEGIN SELECT RAISE(ABORT, 'injected set_weights failure'); END;",
    )
    .expect("trigger");
    // The service does not give up on a failed epoch: it retries, so stop it with SIGTERM
    // once the failure is logged.
    let log = dir.path().join("stderr.txt");
    let mut child = coordinator(&config)
        .args(["run", "--json", "--epochs", "1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("coordinator starts");
    wait_until(
        Duration::from_secs(180),
        "the set_weights failure",
        &log,
        || {
            assert!(
                child.try_wait().expect("child").is_none(),
                "the process should retry, not exit: {}",
                read(&log)
            );
            read(&log).contains("injected set_weights failure")
        },
    );
    signal(&child, "TERM");
    let status = child.wait().expect("exit");
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let state = State::open(&dir.path().join("state/validator.sqlite")).expect("state");
    assert_eq!(
        state.open_epoch().expect("open").map(|(e, _)| e),
        Some(2),
        "epoch 2 is left open"
    );
    assert_eq!(state.scores_epoch().expect("scores epoch"), Some(2));
    drop(state);

    // The chain works again; the resumed epoch 2 must not apply its update a second time.
    db.execute_batch("DROP TRIGGER refuse_weights;")
        .expect("drop trigger");
    let second = run_epochs(&config, 1).remove(0);
    assert_eq!(second.epoch, 2, "{second}");
    assert!(second.weights_block.is_some(), "{second}");
    let alpha = protocol::config::ScoringConfig::default().alpha;
    let mut moved = 0;
    for m in &second.miners {
        let before = line(&first, m.uid).score;
        let once = (1.0 - alpha) * before + alpha * m.epoch_weight;
        assert!(
            (m.score - once).abs() < 1e-12,
            "uid {}: score {} after the resume, {once} applying epoch 2 once (epoch 1: {before})\n{second}",
            m.uid,
            m.score
        );
        moved += usize::from((m.score - before).abs() > 1e-6);
    }
    assert!(
        moved > 0,
        "epoch 2 should move some score:\n{first}\n{second}"
    );
}

#[test]
fn chain_commitments_are_printed_with_control_characters_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 1);
    let devnet = dir.path().join("state/devnet.sqlite");
    std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
    let chain = DevnetChain::open(&devnet, 12_000).expect("devnet");
    chain.create_subnet(1, 10, 10).expect("subnet");
    let hotkey = subtensor::AccountId([7; 32]);
    chain
        .register_neuron(1, hotkey, subtensor::AccountId([8; 32]), 0, false)
        .expect("neuron");
    drop(chain);
    // What a hostile miner can put on chain: a terminal title, a screen clear, a bidi override.
    let data = b"a/b:1:\x1b]0;pwned\x07\x1b[2J\xe2\x80\xaeevil";
    rusqlite::Connection::open(&devnet)
        .expect("devnet db")
        .execute(
            "INSERT INTO commitments (netuid, hotkey, data, block) VALUES (1, ?1, ?2, 5)",
            rusqlite::params![hotkey.0.to_vec(), data.to_vec()],
        )
        .expect("commitment");
    for json in [false, true] {
        let mut cmd = coordinator(&config);
        cmd.args(["chain", "commitments"]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("coordinator runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !stdout.contains('\u{1b}') && !stdout.contains('\u{7}') && !stdout.contains('\u{202e}'),
            "raw control characters reach the terminal: {stdout:?}"
        );
        assert!(stdout.contains("u{1b}[2J"), "{stdout}");
    }
}

#[test]
fn a_config_with_an_unknown_key_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, "[scoring]\ntemprature = 0.1\n").expect("write");
    let out = coordinator(&config)
        .args(["run", "--epochs", "1"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("temprature") && stderr.contains("cluster.toml"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_job_past_its_timeout_is_cancelled_and_recorded_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 40);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "epoch_interval_secs = 1",
            "epoch_interval_secs = 1\njob_timeout_secs = 1",
        ),
    )
    .expect("write");
    let report = &run_epochs(&config, 1)[0];
    for uid in [1, 2, 4] {
        let m = line(report, uid);
        assert_eq!(
            m.reason, "training timed out after 1 s",
            "uid {uid}:\n{report}"
        );
        assert_eq!(m.weight_u16, 0);
    }
}

#[test]
fn ctrl_c_shuts_a_continuous_run_down_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 1);
    let child = coordinator(&config)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("coordinator starts");
    let db = dir.path().join("state/validator.sqlite");
    let started = Instant::now();
    while !has_report_read_only(&db) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no epoch finished in time"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let out = child.wait_with_output().expect("exits");
    assert!(
        out.status.success(),
        "exit status after Ctrl-C: {:?}",
        out.status
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("epoch 1"));
}
