//! In-process workers: one ractor actor per device, each driving a [`DeviceRunner`] (the engine on
//! its own OS thread, since training blocks for minutes). The message enum is the worker API that
//! remote proxies ([`crate::remote::RemoteWorker`]) speak too.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::config::TrainingConfig;
use protocol::dataset::Row;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use worker::runner::{DeviceRunner, EvalRows};
use worker::{Device, EngineError, JobReport};

/// One miner's training job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Unique within the coordinator's lifetime.
    pub id: u64,
    /// The miner.
    pub uid: u16,
    /// The miner's validated rows.
    pub rows: Vec<Row>,
    /// How to train.
    pub config: TrainingConfig,
    /// Wall-clock limit; the job is cancelled at the next optimizer step after it.
    pub timeout: Duration,
}

/// How a job ended, as far as the miner is concerned (stored in the loss cache).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// Trained and evaluated.
    Done(JobReport),
    /// The engine refused or failed on this dataset; the reason is recorded for the miner.
    Failed(String),
    /// Ran past its timeout and was cancelled.
    TimedOut {
        /// The limit, in seconds.
        limit_secs: u64,
    },
}

/// What a worker is doing, for operators.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Name, e.g. `cpu#0` or a remote worker's id.
    pub name: String,
    /// The job in progress, if any: (job id, uid).
    pub current: Option<(u64, u16)>,
    /// Jobs finished since start.
    pub jobs_done: u64,
    /// SHA-256 of the loaded model.
    pub model_id: String,
    /// `in-process` or `remote`.
    pub kind: String,
    /// Whether the worker is reachable (always true in process).
    pub connected: bool,
    /// Its devices.
    pub devices: Vec<String>,
    /// Unix time of the last heartbeat or progress message (remote workers).
    pub last_heartbeat: Option<u64>,
}

/// Seconds since the Unix epoch, for status timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Messages a worker (in-process or remote proxy) understands.
pub enum WorkerMsg {
    /// Run a job. `Ok` is the miner's outcome; `Err` says the worker failed (the job goes to
    /// another worker and nothing is cached).
    Run(Job, RpcReplyPort<Result<JobOutcome, String>>),
    /// Reply with the worker's status.
    Status(RpcReplyPort<WorkerStatus>),
}

/// How to start an in-process worker.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Device to load the model on.
    pub device: Device,
    /// Model directory (config.json, safetensors, tokenizer.json).
    pub model_dir: PathBuf,
    /// The evaluation rows and their hash.
    pub eval: EvalRows,
    /// Where the worker publishes its status (shared with its [`crate::schedule::WorkerHandle`]).
    pub status: Arc<Mutex<WorkerStatus>>,
}

/// The in-process worker's state.
pub struct WorkerState {
    runner: DeviceRunner,
    eval: EvalRows,
    status: Arc<Mutex<WorkerStatus>>,
}

/// An in-process worker actor.
pub struct WorkerActor;

impl Actor for WorkerActor {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        args: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        let name = args.device.to_string();
        let (device, dir) = (args.device, args.model_dir.clone());
        let runner = tokio::task::spawn_blocking(move || DeviceRunner::start(device, &dir))
            .await?
            .map_err(|e| format!("worker {name}: {e}"))?;
        Ok(WorkerState {
            status: {
                if let Ok(mut s) = args.status.lock() {
                    s.name = name;
                    s.kind = "in-process".into();
                    s.connected = true;
                    s.devices = vec![args.device.to_string()];
                    s.model_id = runner.model_id.clone();
                }
                args.status.clone()
            },
            runner,
            eval: args.eval,
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: WorkerMsg,
        state: &mut WorkerState,
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
                let (id, uid, timeout) = (job.id, job.uid, job.timeout);
                let cancel = Arc::new(AtomicBool::new(false));
                let progress = Box::new(move |p: worker::JobProgress| {
                    tracing::debug!(
                        job = id,
                        uid,
                        step = p.step,
                        of = p.total_steps,
                        loss = p.loss,
                        "step"
                    );
                });
                let run = state.runner.run(
                    job.rows,
                    job.config,
                    state.eval.clone(),
                    cancel.clone(),
                    progress,
                );
                tokio::pin!(run);
                let result = match tokio::time::timeout(timeout, &mut run).await {
                    Ok(result) => result,
                    Err(_) => {
                        cancel.store(true, Ordering::Relaxed);
                        run.await
                    }
                };
                let outcome = match result {
                    Ok(report) => Ok(JobOutcome::Done(report)),
                    Err(EngineError::Cancelled) => Ok(JobOutcome::TimedOut {
                        limit_secs: timeout.as_secs(),
                    }),
                    Err(e @ EngineError::Device(_)) => Err(e.to_string()),
                    Err(e) => Ok(JobOutcome::Failed(e.to_string())),
                };
                if let Ok(mut s) = state.status.lock() {
                    s.current = None;
                    s.jobs_done += 1;
                }
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }
}
