//! A hostile worker against the real `coordinator` binary. The worker here holds a pinned key
//! pair and speaks the protocol, but lies, stalls or floods; an honest in-process CPU worker runs
//! beside it. Every epoch must end, with the losses of an honest single-node epoch, nothing from
//! the hostile worker cached, and the hostile worker's job runs recorded as abandoned with a
//! short reason that names the problem and quotes nothing it sent.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::cluster::{job_runs, losses, run_epoch, write_cluster_config};
use protocol::dataset::{parse_dataset, DatasetLimits};
use protocol::transport::{self, Identity, Timeouts};
use protocol::wire::{
    DeviceInfo, EvalSetData, FailureKind, FrameDecoder, Heartbeat, Hello, JobOutcomeWire,
    JobRequest, JobResult, Message, Sender, PROTOCOL_VERSION,
};

/// What the hostile worker does with each job it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Reports `eval_loss = -5.0` with otherwise honest statistics.
    NegativeLoss,
    /// Reports a NaN loss.
    NanLoss,
    /// Reports a good loss with an impossible number of optimizer steps.
    WrongSteps,
    /// Reports the job cancelled, which the coordinator never asked for (the old wire's
    /// unasked `Timeout`).
    UnaskedCancel,
    /// Reports a device failure.
    WorkerFailure,
    /// Echoes heartbeats forever, ignores Cancel, never answers.
    HangAfterCancel,
    /// Never answers; sends heartbeats nobody asked for, every 100 ms.
    SpamHeartbeats,
    /// Sends an 8 MiB `EvalSet` frame full of text, a type only a coordinator sends.
    WrongSenderFrame,
    /// Tries to open streams of its own to the coordinator, then reports a failure.
    OpenStreams,
    /// Blames the miner's data with a reason full of terminal escape sequences.
    ControlCharsReason,
}

/// What the hostile worker saw.
#[derive(Debug, Default)]
struct Log {
    jobs: usize,
    cancels: usize,
    opened_unasked_stream: bool,
    closes: Vec<String>,
}

const ESCAPES: &str = "\u{1b}[2J\u{1b}]0;owned\u{7} row 3 \u{9b}31m";

struct Hostile {
    _runtime: tokio::runtime::Runtime,
    address: String,
    fingerprint: String,
    log: Arc<Mutex<Log>>,
}

impl Hostile {
    fn log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.log.lock().expect("log"))
    }
}

fn start_hostile(coordinator_fp: &str, model_id: &str, act: Act) -> Hostile {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let identity = Identity::generate("evil").expect("identity");
    let timeouts = Timeouts {
        keep_alive: Duration::from_millis(500),
        idle: Duration::from_secs(3),
    };
    let endpoint = runtime
        .block_on(async {
            transport::server_endpoint(
                &identity,
                "127.0.0.1:0".parse().expect("addr"),
                vec![coordinator_fp.to_string()],
                timeouts,
            )
        })
        .expect("endpoint");
    let address = endpoint.local_addr().expect("addr").to_string();
    let log = Arc::new(Mutex::new(Log::default()));
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_id: "evil".into(),
        devices: vec![DeviceInfo {
            name: "cuda:0".into(),
            memory_bytes: 80 << 30,
        }],
        model_id: Some(model_id.to_string()),
    };
    let accept_log = log.clone();
    runtime.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let Ok(conn) = incoming.await else { continue };
            let log = accept_log.clone();
            let watched = conn.clone();
            tokio::spawn(async move {
                let why = watched.closed().await;
                log.lock().expect("log").closes.push(why.to_string());
            });
            let (hello, log) = (hello.clone(), accept_log.clone());
            tokio::spawn(async move {
                while let Ok((send, recv)) = conn.accept_bi().await {
                    let (conn, hello, log) = (conn.clone(), hello.clone(), log.clone());
                    tokio::spawn(serve_stream(conn, send, recv, hello, act, log));
                }
            });
        }
    });
    Hostile {
        _runtime: runtime,
        address,
        fingerprint: identity.fingerprint(),
        log,
    }
}

/// An 8 MiB `EvalSet` frame full of text, built once, before any epoch runs.
fn wrong_sender_frame() -> &'static [u8] {
    static FRAME: OnceLock<Vec<u8>> = OnceLock::new();
    FRAME.get_or_init(|| {
        Message::EvalSet(EvalSetData {
            hash: "SECRET".into(),
            data: "SECRET ".repeat((8 << 20) / 7).into_bytes(),
        })
        .encode()
        .expect("encodes")
    })
}

/// A believable `Done` for `job` with `eval_loss`.
fn honest(job: &JobRequest, eval_rows: usize, eval_loss: f64) -> JobOutcomeWire {
    let rows = parse_dataset(&job.dataset, &job.limits).map_or(0, |d| d.rows.len());
    let train_rows = rows.min(job.config.max_rows);
    let steps = worker::train::steps_per_epoch(train_rows, &job.config) * job.config.epochs;
    JobOutcomeWire::Done {
        eval_loss,
        steps: steps as u32,
        train_rows: train_rows as u32,
        train_tokens: 2 * train_rows as u64,
        eval_rows: eval_rows as u32,
        eval_rows_skipped: 0,
        seconds: 0.5,
        peak_memory_bytes: 0,
    }
}

async fn serve_stream(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    hello: Hello,
    act: Act,
    log: Arc<Mutex<Log>>,
) {
    if transport::send(&mut send, &Message::Hello(hello))
        .await
        .is_err()
    {
        return;
    }
    let mut decoder = FrameDecoder::new(Sender::Coordinator);
    let mut eval_rows = 0;
    while let Ok(Some(message)) = transport::receive(&mut recv, &mut decoder).await {
        let reply = match message {
            Message::Heartbeat(h) => Message::Heartbeat(h),
            Message::EvalSet(EvalSetData { data, .. }) => {
                let limits = DatasetLimits {
                    max_rows: usize::MAX,
                    ..DatasetLimits::default()
                };
                eval_rows = parse_dataset(&data, &limits).map_or(0, |d| d.rows.len());
                continue;
            }
            Message::Cancel(_) => {
                log.lock().expect("log").cancels += 1;
                continue;
            }
            Message::Job(job) => {
                log.lock().expect("log").jobs += 1;
                let result = |outcome| {
                    Message::Result(JobResult {
                        job_id: job.job_id,
                        outcome,
                    })
                };
                let failed = |kind, reason: &str| {
                    result(JobOutcomeWire::Failed {
                        kind,
                        reason: reason.to_string(),
                    })
                };
                match act {
                    Act::NegativeLoss => result(honest(&job, eval_rows, -5.0)),
                    Act::NanLoss => result(honest(&job, eval_rows, f64::NAN)),
                    Act::WrongSteps => {
                        let mut done = honest(&job, eval_rows, 1.0);
                        if let JobOutcomeWire::Done { steps, .. } = &mut done {
                            *steps += 7;
                        }
                        result(done)
                    }
                    Act::UnaskedCancel => failed(FailureKind::Cancelled, "cancelled"),
                    Act::WorkerFailure => failed(
                        FailureKind::Worker,
                        "CUDA error: an illegal memory access was encountered",
                    ),
                    Act::HangAfterCancel => continue,
                    Act::SpamHeartbeats => {
                        for nonce in 1u64 << 40.. {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let spam = Message::Heartbeat(Heartbeat { nonce });
                            if transport::send(&mut send, &spam).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    Act::WrongSenderFrame => {
                        let _ = send.write_all(wrong_sender_frame()).await;
                        return;
                    }
                    Act::OpenStreams => {
                        let wait = Duration::from_millis(300);
                        if let Ok(Ok(mut uni)) = tokio::time::timeout(wait, conn.open_uni()).await {
                            log.lock().expect("log").opened_unasked_stream = true;
                            let _ =
                                tokio::time::timeout(wait, uni.write_all(&[0u8; 1 << 20])).await;
                        }
                        if let Ok(Ok((mut bi, _))) =
                            tokio::time::timeout(wait, conn.open_bi()).await
                        {
                            log.lock().expect("log").opened_unasked_stream = true;
                            let _ = tokio::time::timeout(wait, bi.write_all(&[0u8; 1 << 20])).await;
                        }
                        failed(FailureKind::Worker, "probed")
                    }
                    Act::ControlCharsReason => failed(FailureKind::MinerData, ESCAPES),
                }
            }
            _ => return,
        };
        if transport::send(&mut send, &reply).await.is_err() {
            return;
        }
    }
}

/// The coordinator config: the repository's demo miners, a 40-row eval set, a small training
/// run, an in-process CPU worker and `remote` workers.
fn config(dir: &Path, eval: &Path, job_timeout_secs: u64, remote: &str) -> PathBuf {
    write_cluster_config(
        dir,
        &format!(
            "[coordinator]\njob_timeout_secs = {job_timeout_secs}\n[eval]\nset = \"{}\"\n[devnet]\ndemo_dir = \"{}\"\n[training]\nmicro_batch = 4\ngrad_accum = 1\nepochs = 1\nmax_seq_len = 64\nlr = 2e-3\nwarmup_steps = 0\nlora_rank = 4\nlora_alpha = 8.0\nmax_rows = 20\n[dataset]\nmax_rows = 20\n{remote}",
            eval.display(),
            common::repo().join("eval_data/demo").display(),
        ),
    )
}

/// The honest single-node epoch every hostile run must reproduce (computed once).
fn reference() -> &'static Vec<(u16, Option<f64>, String)> {
    static REFERENCE: OnceLock<Vec<(u16, Option<f64>, String)>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let eval = common::cluster::small_eval_set(dir.path(), 40);
        let (report, _) = run_epoch(&config(dir.path(), &eval, 60, ""), Duration::from_secs(300));
        assert_eq!(report.trained, 4, "{report}");
        losses(&report)
    })
}

/// Runs an epoch with a hostile worker doing `act`; checks the epoch is the honest one and that
/// the hostile worker's runs were abandoned with reasons containing `expected`. Returns the
/// state directory and the hostile worker.
fn hostile_epoch(
    act: Act,
    job_timeout_secs: u64,
    expected: &[&str],
) -> (tempfile::TempDir, Hostile) {
    let reference = reference();
    let dir = tempfile::tempdir().expect("tempdir");
    let fp = common::cluster::coordinator_keygen(dir.path());
    let model = dir.path().join("state/tiny-model");
    worker::write_tiny_model(&model, 7).expect("tiny model");
    let model_id = worker::checkpoint::model_id(&model).expect("model id");
    if act == Act::WrongSenderFrame {
        wrong_sender_frame();
    }
    let hostile = start_hostile(&fp, &model_id, act);
    let eval = common::cluster::small_eval_set(dir.path(), 40);
    let remote = common::cluster::remote_worker("evil", &hostile.address, &hostile.fingerprint);
    let (report, _) = run_epoch(
        &config(dir.path(), &eval, job_timeout_secs, &remote),
        Duration::from_secs(120),
    );
    assert!(
        hostile.log(|l| l.jobs) >= 1,
        "{act:?}: the hostile worker got no job"
    );
    if act != Act::ControlCharsReason {
        assert_eq!(
            &losses(&report),
            reference,
            "{act:?}: the epoch differs from the honest one:\n{report}"
        );
    }
    let runs = job_runs(dir.path());
    let evil: Vec<_> = runs
        .iter()
        .filter(|r| r.worker.as_deref() == Some("evil"))
        .collect();
    assert!(
        !evil.is_empty(),
        "{act:?}: no job run on the hostile worker: {runs:?}"
    );
    for run in &evil {
        let outcome = run.outcome.clone().unwrap_or_default();
        if act == Act::ControlCharsReason {
            assert_eq!(outcome, "done");
            continue;
        }
        assert!(
            outcome.len() <= 1024,
            "{act:?}: {} bytes stored for one job run",
            outcome.len()
        );
        assert!(
            expected.iter().all(|e| outcome.contains(e)),
            "{act:?}: {outcome:?} should say {expected:?}"
        );
        assert!(!outcome.contains("SECRET"), "{act:?}: {outcome:.200}");
    }
    for (worker, outcome) in common::cluster::cached(dir.path()) {
        if act != Act::ControlCharsReason {
            assert_ne!(worker.as_deref(), Some("evil"), "{act:?}: cached {outcome}");
        }
    }
    (dir, hostile)
}

#[test]
fn a_negative_loss_is_refused() {
    hostile_epoch(Act::NegativeLoss, 60, &["evil", "eval loss -5"]);
}

#[test]
fn a_nan_loss_is_refused_and_never_cached_as_null() {
    let (dir, _) = hostile_epoch(Act::NanLoss, 60, &["eval loss NaN"]);
    for (_, outcome) in common::cluster::cached(dir.path()) {
        assert!(!outcome.contains("null"), "{outcome}");
    }
}

#[test]
fn impossible_statistics_are_refused() {
    hostile_epoch(Act::WrongSteps, 60, &["optimizer steps"]);
}

#[test]
fn a_timeout_the_coordinator_did_not_measure_is_refused() {
    hostile_epoch(Act::UnaskedCancel, 60, &["did not cancel"]);
}

#[test]
fn a_device_failure_is_not_charged_to_the_miner() {
    hostile_epoch(Act::WorkerFailure, 60, &["CUDA error"]);
}

#[test]
fn a_worker_that_ignores_cancel_is_abandoned_and_dropped() {
    let (_dir, hostile) = hostile_epoch(
        Act::HangAfterCancel,
        4,
        &["did not end within 3.0 s of its cancel"],
    );
    assert!(hostile.log(|l| l.cancels) >= 1);
    // Heartbeats kept coming, and the coordinator still hung up.
    assert!(
        hostile.log(|l| l.closes.iter().any(|c| c.contains("presumed dead"))),
        "{:?}",
        hostile.log(|l| l.closes.clone())
    );
}

#[test]
fn heartbeats_nobody_asked_for_are_not_signs_of_life() {
    hostile_epoch(Act::SpamHeartbeats, 4, &["heartbeat nonce", "was not sent"]);
}

#[test]
fn a_frame_only_a_coordinator_sends_is_refused_by_type_and_size() {
    let (dir, _) = hostile_epoch(
        Act::WrongSenderFrame,
        60,
        &["EvalSet", "bytes", "from a worker"],
    );
    let db = std::fs::metadata(dir.path().join("state/validator.sqlite"))
        .expect("state")
        .len();
    assert!(db < 4 << 20, "the state grew to {db} bytes");
}

#[test]
fn a_worker_cannot_open_streams_to_the_coordinator() {
    let (_dir, hostile) = hostile_epoch(Act::OpenStreams, 60, &["probed"]);
    assert!(!hostile.log(|l| l.opened_unasked_stream));
}

#[test]
fn text_from_a_worker_is_stored_escaped() {
    let (dir, _) = hostile_epoch(Act::ControlCharsReason, 60, &[]);
    let stored: Vec<String> = common::cluster::cached(dir.path())
        .into_iter()
        .filter(|(w, _)| w.as_deref() == Some("evil"))
        .map(|(_, o)| o)
        .collect();
    assert!(!stored.is_empty());
    for outcome in stored {
        let value: serde_json::Value = serde_json::from_str(&outcome).expect("json");
        let reason = value["Failed"].as_str().expect("a failure");
        assert!(
            reason.contains("row 3") && !reason.chars().any(char::is_control),
            "{reason:?}"
        );
    }
}
