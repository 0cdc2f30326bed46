//! `RemoteWorker`: the coordinator's proxy for one `worker serve` process. It speaks the same
//! [`WorkerMsg`] API as an in-process worker, so the epoch's scheduler treats both alike. It owns
//! the QUIC connection (reconnecting with backoff), runs one job per stream, sends heartbeats and
//! presumes the worker dead when they stop; a lost worker answers `Err`, and the scheduler gives
//! the job to another worker.
//!
//! Nothing a worker says is taken on trust beyond what it must be trusted with (computing the
//! loss): a heartbeat counts only as the echo of a nonce this proxy sent; a result must be
//! plausible ([`check_report`]); a failure is the miner's only when the worker says the miner's
//! data caused it; a timeout is one only when this proxy measured it and sent `Cancel`; and a
//! worker that has not answered within `worker_timeout` of that `Cancel` has its job abandoned
//! and its connection dropped, heartbeats or not. Whatever a worker writes is stored or logged
//! cut short and with control characters escaped.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::transport::{self, Identity, Timeouts, SERVER_NAME};
use protocol::wire::{
    bounded, Cancel, FailureKind, FrameDecoder, Heartbeat, JobOutcomeWire, JobRequest, Message,
    Sender, ALPN, PROTOCOL_VERSION,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use worker::JobReport;

use crate::worker_actor::{check_report, unix_now, Job, JobOutcome, WorkerMsg, WorkerStatus};

/// The longest text from a worker that is stored or logged.
const MAX_WORKER_TEXT: usize = 512;

/// How to reach and judge one remote worker.
#[derive(Clone)]
pub struct RemoteArgs {
    /// Its name in reports.
    pub id: String,
    /// Its QUIC address.
    pub address: SocketAddr,
    /// SHA-256 of its certificate.
    pub fingerprint: String,
    /// Our identity.
    pub identity: Identity,
    /// Keep-alive and idle timeout.
    pub timeouts: Timeouts,
    /// Heartbeat interval during a job.
    pub heartbeat: Duration,
    /// Silence after which the worker is presumed dead.
    pub worker_timeout: Duration,
    /// The model the worker must have loaded; `None` skips the check.
    pub expected_model: Option<String>,
    /// Where the proxy publishes the worker's status.
    pub status: Arc<Mutex<WorkerStatus>>,
}

/// The proxy's state.
pub struct RemoteState {
    args: RemoteArgs,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    connection: Option<quinn::Connection>,
    /// The eval sets (by hash) sent on the current connection (by `stable_id`); the worker
    /// keeps the `MAX_EVAL_SETS` most recently used by hash, as many as a config may name.
    eval_sent: (Option<usize>, HashSet<String>),
    status: Arc<Mutex<WorkerStatus>>,
    nonce: AtomicU64,
}

/// The proxy actor.
pub struct RemoteWorker;

impl Actor for RemoteWorker {
    type Msg = WorkerMsg;
    type State = RemoteState;
    type Arguments = RemoteArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<WorkerMsg>,
        args: RemoteArgs,
    ) -> Result<RemoteState, ActorProcessingErr> {
        let config =
            transport::client_config(&args.identity, &args.fingerprint, args.timeouts, ALPN)?;
        let endpoint = transport::client_endpoint()?;
        Ok(RemoteState {
            status: {
                if let Ok(mut s) = args.status.lock() {
                    s.name = args.id.clone();
                    s.kind = "remote".into();
                    s.model_id = args.expected_model.clone().unwrap_or_default();
                }
                args.status.clone()
            },
            args,
            endpoint,
            config,
            connection: None,
            eval_sent: (None, HashSet::new()),
            nonce: AtomicU64::new(1),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        state: &mut RemoteState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Status(reply) => {
                let status = state.status.lock().map(|s| s.clone()).unwrap_or_default();
                let _ = reply.send(status);
            }
            WorkerMsg::Run(job, reply) => {
                if let Ok(mut s) = state.status.lock() {
                    s.current = Some((job.id, job.uid));
                }
                let result = state.run(job).await;
                if result.is_err() {
                    if let Ok(mut s) = state.status.lock() {
                        s.connected = false;
                    }
                    if let Some(c) = state.connection.take() {
                        c.close(quinn::VarInt::from_u32(2), b"presumed dead");
                    }
                }
                if let Ok(mut s) = state.status.lock() {
                    s.current = None;
                    s.jobs_done += u64::from(result.is_ok());
                }
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _me: ActorRef<WorkerMsg>,
        state: &mut RemoteState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(c) = state.connection.take() {
            c.close(quinn::VarInt::from_u32(0), b"coordinator stopping");
        }
        Ok(())
    }
}

/// Text a worker wrote, fit to store and log: control characters and bidi overrides escaped
/// ([`protocol::text::printable`]), cut short.
fn clean(text: &str) -> String {
    let head: String = text.chars().take(MAX_WORKER_TEXT).collect();
    bounded(&protocol::text::printable(&head), MAX_WORKER_TEXT)
}

/// The miner's outcome of a job from the worker's result, or `Err` when the result is the
/// worker's failure or not believable. `cancelled` says whether this proxy sent `Cancel` after
/// measuring the job's timeout.
fn outcome(wire: JobOutcomeWire, job: &Job, cancelled: bool) -> Result<JobOutcome, String> {
    match wire {
        JobOutcomeWire::Done {
            eval_loss,
            steps,
            train_rows,
            train_tokens,
            eval_rows,
            eval_rows_skipped,
            seconds,
            ..
        } => {
            let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
            let report = JobReport {
                eval_loss,
                train_losses: Vec::new(),
                steps: size(steps.into()),
                train_rows: size(train_rows.into()),
                train_tokens: size(train_tokens),
                eval_rows: size(eval_rows.into()),
                eval_rows_skipped: size(eval_rows_skipped.into()),
                seconds,
            };
            check_report(&report, job.rows.len(), &job.config, job.eval.row_count())
                .map_err(|e| format!("implausible result for job {}: {e}", job.id))?;
            Ok(JobOutcome::Done(report))
        }
        JobOutcomeWire::Failed { kind, reason } => match kind {
            FailureKind::MinerData => Ok(JobOutcome::Failed(clean(&reason))),
            FailureKind::Cancelled if cancelled => Ok(JobOutcome::TimedOut {
                limit_secs: job.timeout.as_secs(),
            }),
            FailureKind::Cancelled => Err(format!(
                "reported job {} cancelled, which the coordinator did not cancel",
                job.id
            )),
            FailureKind::Worker | FailureKind::Unavailable => Err(clean(&reason)),
        },
    }
}

/// The heartbeat nonces sent and not yet echoed. Only their echoes count as signs of life.
#[derive(Debug, Default)]
struct Outstanding(VecDeque<u64>);

impl Outstanding {
    /// At most this many are remembered; a worker that far behind is silent anyway.
    const KEEP: usize = 64;

    fn sent(&mut self, nonce: u64) {
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back(nonce);
    }

    /// Whether `nonce` was sent and not yet echoed (it and every older nonce are then done).
    fn echoed(&mut self, nonce: u64) -> bool {
        match self.0.iter().position(|n| *n == nonce) {
            Some(at) => {
                self.0.drain(..=at);
                true
            }
            None => false,
        }
    }
}

impl RemoteState {
    /// Records a sign of life in the published status.
    fn beat(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.last_heartbeat = Some(unix_now());
        }
    }

    async fn connect(&mut self) -> Result<quinn::Connection, String> {
        if let Some(c) = &self.connection {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let mut delay = Duration::from_millis(250);
        let mut last = String::new();
        for _ in 0..3 {
            let attempt = async {
                self.endpoint
                    .connect_with(self.config.clone(), self.args.address, SERVER_NAME)
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(self.args.timeouts.idle, attempt).await {
                Ok(Ok(c)) => {
                    self.connection = Some(c.clone());
                    return Ok(c);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = "timed out".into(),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(format!("cannot connect to {}: {last}", self.args.address))
    }

    /// Runs a job on the remote worker; `Err` means the worker (not the miner) failed.
    async fn run(&mut self, job: Job) -> Result<JobOutcome, String> {
        let id = self.args.id.clone();
        let result = self.exchange(&job).await;
        result.map_err(|e| format!("worker {id}: {}", clean(&e)))
    }

    async fn exchange(&mut self, job: &Job) -> Result<JobOutcome, String> {
        let connection = self.connect().await?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let io = |e: protocol::transport::TransportError| e.to_string();
        // A QUIC stream becomes visible to the peer with its first bytes: open with a heartbeat,
        // the worker answers with its Hello (and the echo).
        let mut outstanding = Outstanding::default();
        let first = self.nonce.fetch_add(1, Ordering::Relaxed);
        outstanding.sent(first);
        transport::send(&mut send, &Message::Heartbeat(Heartbeat { nonce: first }))
            .await
            .map_err(io)?;
        let mut decoder = FrameDecoder::new(Sender::Worker);
        let hello = tokio::time::timeout(
            self.args.worker_timeout,
            transport::receive(&mut recv, &mut decoder),
        )
        .await
        .map_err(|_| "no Hello".to_string())?
        .map_err(io)?;
        let hello = match hello {
            Some(Message::Hello(hello)) => hello,
            Some(other) => return Err(format!("expected Hello, got a {} frame", other.kind())),
            None => return Err("closed the stream before its Hello".into()),
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(format!(
                "speaks protocol {}, we speak {PROTOCOL_VERSION}",
                hello.protocol_version
            ));
        }
        if let Some(expected) = &self.args.expected_model {
            if hello.model_id.as_deref() != Some(expected.as_str()) {
                return Err(format!(
                    "has model {}, the validator uses {expected}",
                    hello.model_id.as_deref().map_or("(none)".into(), clean)
                ));
            }
        }
        if let Ok(mut s) = self.status.lock() {
            s.connected = true;
            s.devices = hello.devices.iter().map(|d| clean(&d.name)).collect();
            s.last_heartbeat = Some(unix_now());
        }
        if self.eval_sent.0 != Some(connection.stable_id()) {
            self.eval_sent = (Some(connection.stable_id()), HashSet::new());
        }
        if !self.eval_sent.1.contains(job.eval.hash()) {
            tracing::debug!(worker = %self.args.id, eval_set = %job.eval.spec, "sending the eval set");
            transport::send(&mut send, &Message::EvalSet((*job.eval.file).clone()))
                .await
                .map_err(io)?;
            self.eval_sent.1.insert(job.eval.hash().to_string());
        }
        transport::send(
            &mut send,
            &Message::Job(JobRequest {
                job_id: job.id,
                dataset: job.file.bytes.clone(),
                dataset_hash: job.file.content_hash.clone(),
                limits: job.file.limits.clone(),
                config: job.config.clone(),
                eval_set_hash: job.eval.hash().to_string(),
            }),
        )
        .await
        .map_err(io)?;

        let started = Instant::now();
        let mut last_seen = Instant::now();
        let mut cancelled_at: Option<Instant> = None;
        let mut tick = tokio::time::interval(self.args.heartbeat);
        loop {
            tokio::select! {
                message = transport::receive(&mut recv, &mut decoder) => match message.map_err(io)? {
                    Some(Message::Result(r)) if r.job_id == job.id => {
                        let _ = send.finish();
                        return outcome(r.outcome, job, cancelled_at.is_some());
                    }
                    Some(Message::Progress(p)) if p.job_id == job.id => {
                        last_seen = Instant::now();
                        self.beat();
                        tracing::debug!(worker = %self.args.id, job = job.id, step = p.step, of = p.total_steps, loss = p.loss, "progress");
                    }
                    Some(Message::Heartbeat(h)) => {
                        if !outstanding.echoed(h.nonce) {
                            return Err(format!("echoed heartbeat nonce {}, which was not sent or was already echoed", h.nonce));
                        }
                        last_seen = Instant::now();
                        self.beat();
                    }
                    Some(Message::Result(r)) => return Err(format!("sent a Result for job {} during job {}", r.job_id, job.id)),
                    Some(Message::Progress(p)) => return Err(format!("sent Progress for job {} during job {}", p.job_id, job.id)),
                    Some(other) => return Err(format!("sent an unexpected {} frame during job {}", other.kind(), job.id)),
                    None => return Err(format!("closed the stream during job {}", job.id)),
                },
                _ = tick.tick() => {
                    if last_seen.elapsed() > self.args.worker_timeout {
                        return Err(format!("no heartbeat for {:.1} s", last_seen.elapsed().as_secs_f64()));
                    }
                    match cancelled_at {
                        None if started.elapsed() > job.timeout => {
                            cancelled_at = Some(Instant::now());
                            transport::send(&mut send, &Message::Cancel(Cancel { job_id: job.id })).await.map_err(io)?;
                        }
                        Some(at) if at.elapsed() > self.args.worker_timeout => {
                            return Err(format!(
                                "job {} did not end within {:.1} s of its cancel (sent {:.0} s after the job, its timeout); abandoned",
                                job.id,
                                self.args.worker_timeout.as_secs_f64(),
                                job.timeout.as_secs_f64()
                            ));
                        }
                        _ => {}
                    }
                    let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
                    outstanding.sent(nonce);
                    transport::send(&mut send, &Message::Heartbeat(Heartbeat { nonce })).await.map_err(io)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval_sets::EvalSet;
    use crate::worker_actor::ValidatedFile;
    use protocol::config::TrainingConfig;
    use protocol::dataset::DatasetLimits;

    fn job() -> Job {
        Job {
            id: 5,
            uid: 1,
            rows: Vec::new(),
            file: Arc::new(ValidatedFile {
                bytes: Vec::new(),
                limits: DatasetLimits::default(),
                content_hash: String::new(),
            }),
            config: TrainingConfig {
                epochs: 0,
                ..TrainingConfig::default()
            },
            // Three rows: what `done` reports.
            eval: Arc::new(EvalSet::new(
                "eval.jsonl",
                vec![
                    protocol::dataset::Row {
                        system: None,
                        conversations: Vec::new(),
                    };
                    3
                ],
                "e".repeat(64),
                Vec::new(),
            )),
            timeout: Duration::from_secs(60),
        }
    }

    fn done(eval_loss: f64) -> JobOutcomeWire {
        JobOutcomeWire::Done {
            eval_loss,
            steps: 0,
            train_rows: 0,
            train_tokens: 0,
            eval_rows: 3,
            eval_rows_skipped: 0,
            seconds: 0.1,
            peak_memory_bytes: 0,
        }
    }

    #[test]
    fn only_the_miners_data_and_a_measured_timeout_reach_the_miner() {
        let failed = |kind| JobOutcomeWire::failed(kind, "why");
        assert_eq!(
            outcome(failed(FailureKind::MinerData), &job(), false),
            Ok(JobOutcome::Failed("why".into()))
        );
        assert_eq!(
            outcome(failed(FailureKind::Cancelled), &job(), true),
            Ok(JobOutcome::TimedOut { limit_secs: 60 })
        );
        assert!(outcome(failed(FailureKind::Cancelled), &job(), false).is_err());
        assert!(outcome(failed(FailureKind::Worker), &job(), false).is_err());
        assert!(outcome(failed(FailureKind::Unavailable), &job(), true).is_err());
        assert!(matches!(
            outcome(done(1.5), &job(), false),
            Ok(JobOutcome::Done(_))
        ));
        for bad in [-5.0, f64::NAN, f64::NEG_INFINITY] {
            let e = outcome(done(bad), &job(), false).expect_err("refused");
            assert!(e.contains("implausible"), "{e}");
        }
    }

    #[test]
    fn worker_text_is_escaped_and_cut_short() {
        let reason = format!("\u{1b}[2J{}", "x".repeat(5000));
        let JobOutcome::Failed(stored) = outcome(
            JobOutcomeWire::Failed {
                kind: FailureKind::MinerData,
                reason,
            },
            &job(),
            false,
        )
        .expect("the miner's") else {
            panic!("not a failure")
        };
        assert!(
            !stored.contains('\u{1b}') && stored.starts_with("\\u{1b}[2J"),
            "{stored:.40}"
        );
        assert!(stored.len() <= MAX_WORKER_TEXT, "{}", stored.len());
    }

    #[test]
    fn only_echoes_of_sent_nonces_count() {
        let mut o = Outstanding::default();
        for n in 1..=3 {
            o.sent(n);
        }
        assert!(!o.echoed(7), "never sent");
        assert!(o.echoed(2));
        assert!(!o.echoed(1), "older than an echoed one");
        assert!(!o.echoed(2), "echoed twice");
        assert!(o.echoed(3));
        for n in 0..1000 {
            o.sent(n);
        }
        assert!(!o.echoed(0), "forgotten");
        assert!(o.echoed(999));
    }
}
