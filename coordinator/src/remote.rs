//! `RemoteWorker`: the coordinator's proxy for one `worker serve` process. It speaks the same
//! [`WorkerMsg`] API as an in-process worker, so the epoch's scheduler treats both alike. It owns
//! the QUIC connection (reconnecting with backoff), runs one job per stream, sends heartbeats and
//! presumes the worker dead when they stop; a lost worker answers `Err`, and the scheduler gives
//! the job to another worker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::transport::{self, Identity, Timeouts, SERVER_NAME};
use protocol::wire::{
    Cancel, EvalSetData, FailureKind, FrameDecoder, Heartbeat, JobOutcomeWire, JobRequest, Message,
    ALPN, PROTOCOL_VERSION,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use worker::JobReport;

use crate::worker_actor::{unix_now, Job, JobOutcome, WorkerMsg, WorkerStatus};

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
    /// The eval set (hash and bytes) every job is scored on.
    pub eval: Arc<EvalSetData>,
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
    /// The connection (by `stable_id`) the eval set was last sent on; workers cache it by hash.
    eval_sent_on: Option<usize>,
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
            eval_sent_on: None,
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

fn outcome(wire: JobOutcomeWire, timed_out: bool, limit: Duration) -> Result<JobOutcome, String> {
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
        } => Ok(JobOutcome::Done(JobReport {
            eval_loss,
            train_losses: Vec::new(),
            steps: steps as usize,
            train_rows: train_rows as usize,
            train_tokens: train_tokens as usize,
            eval_rows: eval_rows as usize,
            eval_rows_skipped: eval_rows_skipped as usize,
            seconds,
        })),
        JobOutcomeWire::Failed { kind, reason } => match kind {
            FailureKind::InvalidDataset | FailureKind::Engine => Ok(JobOutcome::Failed(reason)),
            FailureKind::Cancelled | FailureKind::Timeout if timed_out => {
                Ok(JobOutcome::TimedOut {
                    limit_secs: limit.as_secs(),
                })
            }
            FailureKind::Timeout => Ok(JobOutcome::TimedOut {
                limit_secs: limit.as_secs(),
            }),
            FailureKind::Cancelled | FailureKind::Unavailable => Err(reason),
        },
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
        Err(format!(
            "cannot connect to worker {} at {}: {last}",
            self.args.id, self.args.address
        ))
    }

    /// Runs a job on the remote worker; `Err` means the worker (not the miner) failed.
    async fn run(&mut self, job: Job) -> Result<JobOutcome, String> {
        let id = self.args.id.clone();
        let connection = self.connect().await?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| format!("worker {id}: {e}"))?;
        // A QUIC stream becomes visible to the peer with its first bytes: open with a heartbeat,
        // the worker answers with its Hello.
        transport::send(&mut send, &Message::Heartbeat(Heartbeat { nonce: 0 }))
            .await
            .map_err(|e| format!("worker {id}: {e}"))?;
        let mut decoder = FrameDecoder::new();
        let hello = tokio::time::timeout(
            self.args.worker_timeout,
            transport::receive(&mut recv, &mut decoder),
        )
        .await
        .map_err(|_| format!("worker {id}: no Hello"))?
        .map_err(|e| format!("worker {id}: {e}"))?;
        let Some(Message::Hello(hello)) = hello else {
            return Err(format!("worker {id}: expected Hello, got {hello:?}"));
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(format!(
                "worker {id} speaks protocol {}, we speak {PROTOCOL_VERSION}",
                hello.protocol_version
            ));
        }
        if let Some(expected) = &self.args.expected_model {
            if hello.model_id.as_deref() != Some(expected.as_str()) {
                return Err(format!(
                    "worker {id} has model {:?}, the validator uses {expected}",
                    hello.model_id
                ));
            }
        }
        if let Ok(mut s) = self.status.lock() {
            s.connected = true;
            s.devices = hello.devices.iter().map(|d| d.name.clone()).collect();
            s.last_heartbeat = Some(unix_now());
        }
        let dataset: String = job
            .rows
            .iter()
            .filter_map(|r| serde_json::to_string(r).ok())
            .map(|l| l + "\n")
            .collect();
        let io = |e: protocol::transport::TransportError| format!("worker {id}: {e}");
        if self.eval_sent_on != Some(connection.stable_id()) {
            transport::send(&mut send, &Message::EvalSet((*self.args.eval).clone()))
                .await
                .map_err(io)?;
            self.eval_sent_on = Some(connection.stable_id());
        }
        transport::send(
            &mut send,
            &Message::Job(JobRequest {
                job_id: job.id,
                dataset: dataset.into_bytes(),
                config: job.config.clone(),
                eval_set_hash: self.args.eval.hash.clone(),
            }),
        )
        .await
        .map_err(io)?;

        let started = Instant::now();
        let mut last_seen = Instant::now();
        let mut timed_out = false;
        let mut tick = tokio::time::interval(self.args.heartbeat);
        loop {
            tokio::select! {
                message = transport::receive(&mut recv, &mut decoder) => match message.map_err(io)? {
                    Some(Message::Result(r)) if r.job_id == job.id => {
                        let _ = send.finish();
                        return outcome(r.outcome, timed_out, job.timeout);
                    }
                    Some(Message::Progress(p)) if p.job_id == job.id => {
                        last_seen = Instant::now();
                        self.beat();
                        tracing::debug!(worker = %id, job = job.id, step = p.step, of = p.total_steps, loss = p.loss, "progress");
                    }
                    Some(Message::Heartbeat(_)) => {
                        last_seen = Instant::now();
                        self.beat();
                    }
                    Some(other) => return Err(format!("worker {id}: unexpected {other:?}")),
                    None => return Err(format!("worker {id} closed the stream during job {}", job.id)),
                },
                _ = tick.tick() => {
                    if last_seen.elapsed() > self.args.worker_timeout {
                        return Err(format!("worker {id}: no heartbeat for {:.1} s", last_seen.elapsed().as_secs_f64()));
                    }
                    if !timed_out && started.elapsed() > job.timeout {
                        timed_out = true;
                        transport::send(&mut send, &Message::Cancel(Cancel { job_id: job.id })).await.map_err(io)?;
                    }
                    let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
                    transport::send(&mut send, &Message::Heartbeat(Heartbeat { nonce })).await.map_err(io)?;
                }
            }
        }
    }
}
