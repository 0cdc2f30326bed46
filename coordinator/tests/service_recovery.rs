//! The `coordinator run` service stays up (`docs/architecture.md`, "A service that stays up"):
//! the real binary against the subtensor crate's test node over a real WebSocket on 127.0.0.1
//! and the hub crate's local Hub server. The node goes away mid-epoch and comes back: the
//! process waits and sets the weights. The Hub answers 503 at start-up, then recovers: the
//! process waits and runs the epoch. A permanent refusal (no validator permit) is reported every
//! epoch while the loop keeps running, and SIGTERM or Ctrl-C end the run with status 0 and the
//! shutdown recorded in the state.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use hub::server::HubServer;
use hub::{Hub, LocalHub, RepoKind};
use protocol::scoring::EpochReport;
use subtensor::testnode::{SubnetConfig, TestNode};
use subtensor::wallet::{create_wallet, Signer, WalletPath};
use subxt_signer::sr25519::dev;

mod common;

use common::{
    coordinator, demo_dir, demo_training, eval_set, read, signal, wait_exit, wait_until,
    QUICK_TRAINING,
};

const NETUID: u16 = 5;

/// A cluster.toml for mode `local` at `endpoint` with the wallet `validator` under
/// `dir/wallets`, `hub` as the `[hub]` table (and anything else after it).
fn write_config(dir: &Path, endpoint: &str, hub: &str, training: &str) -> PathBuf {
    let text = format!(
        r#"
mode = "local"
netuid = {NETUID}
[coordinator]
state_dir = "state"
epoch_interval_secs = 1
[subtensor]
endpoint = "{endpoint}"
timeout_secs = 2
wallet_path = "{wallets}"
wallet_name = "validator"
{hub}
{training}"#,
        wallets = dir.join("wallets").display(),
    );
    common::write_config(dir, &text)
}

/// The `[hub]` and `[eval]` tables of the local directory hub and the repo's eval set.
fn local_hub() -> String {
    format!(
        "[hub]\nkind = \"local\"\n[eval]\nset = \"{}\"\n",
        eval_set().display()
    )
}

fn key(signer: &Signer) -> [u8; 32] {
    signer.account().0
}

/// A node with subnet `NETUID`, the validator wallet registered (with `permit`), and miner bob
/// registered. Returns the node and bob's uid.
fn subnet(dir: &Path, permit: bool) -> (TestNode, u16) {
    let node = TestNode::new();
    node.add_subnet(
        NETUID,
        SubnetConfig {
            tempo: 100,
            weights_rate_limit: 1,
            weights_version_key: 0,
            commit_reveal: false,
            reveal_period: 1,
        },
    );
    let validator = create_wallet(&WalletPath {
        root: dir.join("wallets"),
        name: "validator".into(),
        hotkey: "default".into(),
    })
    .unwrap();
    node.register(NETUID, key(&validator), key(&validator), 1_000_000, permit);
    let bob = dev::bob();
    let miner = node.register(NETUID, bob.public_key().0, bob.public_key().0, 0, false);
    (node, miner)
}

/// Bob commits `repo` at `revision`.
fn commit(node: &TestNode, repo: &str, revision: &str) {
    node.put_commitment(
        NETUID,
        dev::bob().public_key().0,
        format!("{repo}:1:{revision}").as_bytes(),
    );
}

/// Publishes the on-topic demo dataset to the local directory hub under `dir/state/hub`.
async fn publish_local(dir: &Path) -> String {
    let hub = LocalHub::new(&dir.join("state/hub"));
    let bytes = std::fs::read(demo_dir().join("on_topic.jsonl")).unwrap();
    hub.publish("miner/on-topic", &bytes).await.unwrap()
}

/// `coordinator run ARGS` in the background, stdout and stderr (warnings and up) to files.
fn spawn(config: &Path, args: &[&str]) -> (Child, PathBuf, PathBuf) {
    let dir = config.parent().unwrap();
    let (out, err) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    let child = coordinator(config)
        // the tiny model, the demo eval set and the CPU, on a `local` chain
        .args(["run", "--allow-demo-settings"])
        .args(args)
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .expect("coordinator starts");
    (child, out, err)
}

/// (jobs started, jobs finished) in the state database, read-only.
fn jobs(db: &Path) -> (u64, u64) {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0);
    };
    c.query_row(
        "SELECT COUNT(*), COUNT(finished_at) FROM job_runs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or((0, 0))
}

/// `meta.key` in the state database.
fn meta(db: &Path, key: &str) -> Option<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_goes_away_mid_epoch_and_the_weights_are_set_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (node, miner) = subnet(dir.path(), true);
    let revision = publish_local(dir.path()).await;
    commit(&node, "miner/on-topic", &revision);
    let (addr, server) = node.serve_ws().await.unwrap();
    let config = write_config(
        dir.path(),
        &format!("ws://{addr}"),
        &local_hub(),
        &demo_training(2),
    );
    let (mut child, stdout, stderr) = spawn(&config, &["--epochs", "1", "--json"]);
    let db = dir.path().join("state/validator.sqlite");

    // Mid-epoch: the miner's job has started. The node goes away until the job is done and the
    // epoch needs the chain again, and a few request timeouts longer.
    let err = stderr.clone();
    let db2 = db.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(300), "a job start", &err, || {
            jobs(&db2).0 > 0
        })
    })
    .await
    .unwrap();
    server.stop().unwrap();
    server.stopped().await;
    let (err, db2) = (stderr.clone(), db.clone());
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(300), "the job's end", &err, || {
            jobs(&db2).1 > 0
        })
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(child.try_wait().unwrap().is_none(), "{}", read(&stderr));
    assert_eq!(
        node.weights_of(NETUID, 0),
        None,
        "no weights while the node is away"
    );
    let (_, _server) = node.serve_ws_on(addr).await.unwrap();

    let err = stderr.clone();
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(120), &err))
            .await
            .unwrap();
    let log = read(&stderr);
    assert!(status.success(), "{log}");
    assert!(log.contains("chain read failed, retrying"), "{log}");
    assert!(log.contains("next_try_in_ms"), "{log}");
    let report: EpochReport =
        serde_json::from_str(read(&stdout).lines().next().expect("a report")).unwrap();
    assert!(report.weights_block.is_some(), "{report:?}");
    assert_eq!(node.weights_of(NETUID, 0), Some(vec![(miner, 65535)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_answering_503_at_start_up_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let (node, miner) = subnet(dir.path(), true);
    let server = HubServer::start().await.unwrap();
    // The base model, unpinned so that every start asks the Hub, and the miner's dataset.
    let model_dir = dir.path().join("tiny-model");
    worker::write_tiny_model(&model_dir, 7).unwrap();
    let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&model_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    server
        .create_repo(RepoKind::Model, "acme/tiny-qwen", false)
        .unwrap();
    server
        .commit(RepoKind::Model, "acme/tiny-qwen", &files)
        .unwrap();
    let data = std::fs::read(demo_dir().join("on_topic.jsonl")).unwrap();
    server
        .create_repo(RepoKind::Dataset, "miner/on-topic", false)
        .unwrap();
    let revision = server
        .commit(
            RepoKind::Dataset,
            "miner/on-topic",
            &[("data.jsonl", &data)],
        )
        .unwrap();
    commit(&node, "miner/on-topic", &revision);
    let (addr, _node_server) = node.serve_ws().await.unwrap();
    let hub = format!(
        "[hub]\nkind = \"huggingface\"\nendpoint = \"{}\"\ncache_dir = \"{}\"\n\
         [model]\nsource = \"acme/tiny-qwen\"\n[eval]\nset = \"{}\"\n",
        server.url(),
        dir.path().join("hf-cache").display(),
        eval_set().display()
    );
    let config = write_config(dir.path(), &format!("ws://{addr}"), &hub, QUICK_TRAINING);

    // More failures in a row than the client's own retries (1 + 4): the first tries fail.
    server.fail_next(12, 503);
    let mut out = coordinator(&config);
    out.args(["run", "--allow-demo-settings", "--epochs", "1", "--json"])
        .env("HF_HOME", dir.path().join("hf-home"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE");
    let out = tokio::task::spawn_blocking(move || out.output().unwrap())
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("start-up step failed, retrying"), "{log}");
    assert!(log.contains("503"), "the cause is logged: {log}");
    let report: EpochReport =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    let line = report.miners.iter().find(|m| m.uid == miner).unwrap();
    assert!(line.eval_loss.is_some_and(|l| l.is_finite()), "{line:?}");
    assert_eq!(node.weights_of(NETUID, 0), Some(vec![(miner, 65535)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_validator_permit_is_reported_every_epoch_and_sigterm_or_ctrl_c_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _miner) = subnet(dir.path(), false);
    let revision = publish_local(dir.path()).await;
    commit(&node, "miner/on-topic", &revision);
    let (addr, _server) = node.serve_ws().await.unwrap();
    let config = write_config(
        dir.path(),
        &format!("ws://{addr}"),
        &local_hub(),
        QUICK_TRAINING,
    );
    let db = dir.path().join("state/validator.sqlite");

    let (mut child, _, stderr) = spawn(&config, &[]);
    let failures = |log: &str| {
        log.matches("NeuronNoValidatorPermit").count()
            + log.matches("has no validator permit").count()
    };
    let err = stderr.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(
            Duration::from_secs(300),
            "two reported failures",
            &err,
            || failures(&read(&err)) >= 2,
        )
    })
    .await
    .unwrap();
    assert!(child.try_wait().unwrap().is_none(), "{}", read(&stderr));
    assert!(meta(&db, "last_epoch_error").is_some_and(|m| m.contains("permit")));
    signal(&child, "TERM");
    let err = stderr.clone();
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(60), &err))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "{}", read(&stderr));
    let shutdown = meta(&db, "last_shutdown").expect("the shutdown is recorded");
    assert!(shutdown.contains("SIGTERM"), "{shutdown}");

    // Ctrl-C (SIGINT) the same way, once the new process is running.
    let (mut child, _, stderr) = spawn(&config, &[]);
    let err = stderr.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(300), "a reported failure", &err, || {
            failures(&read(&err)) >= 1
        })
    })
    .await
    .unwrap();
    signal(&child, "INT");
    let err = stderr.clone();
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(60), &err))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "{}", read(&stderr));
    let shutdown = meta(&db, "last_shutdown").unwrap();
    assert!(shutdown.contains("Ctrl-C"), "{shutdown}");
}
