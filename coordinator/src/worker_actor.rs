//! In-process GPU/CPU workers: one ractor actor per device, each owning an [`Engine`] on a
//! dedicated OS thread (training blocks for minutes; the async runtime must not). The actor's
//! message enum is its API: run a job, describe yourself.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::config::TrainingConfig;
use protocol::dataset::Row;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use worker::{Device, Engine, EngineError, EvalSet, JobReport};

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

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// Trained and evaluated.
    Done(JobReport),
    /// The engine refused or failed; the reason is recorded for the miner.
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
    /// Name, e.g. `cpu` or `cuda:0`.
    pub name: String,
    /// The job in progress, if any: (job id, uid).
    pub current: Option<(u64, u16)>,
    /// Jobs finished since start.
    pub jobs_done: u64,
    /// SHA-256 of the loaded model.
    pub model_id: String,
}

/// Messages a worker actor understands.
pub enum WorkerMsg {
    /// Run a job and reply with its outcome.
    Run(Job, RpcReplyPort<JobOutcome>),
    /// Reply with the worker's status.
    Status(RpcReplyPort<WorkerStatus>),
}

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Device to load the model on.
    pub device: Device,
    /// Model directory (config.json, safetensors, tokenizer.json).
    pub model_dir: PathBuf,
    /// The evaluation rows, tokenised once on the worker.
    pub eval_rows: Arc<Vec<Row>>,
    /// Training config whose `max_seq_len` applies to the eval set.
    pub config: TrainingConfig,
}

/// A request to the engine thread.
struct EngineRequest {
    job: Job,
    cancel: Arc<AtomicBool>,
    reply: tokio::sync::oneshot::Sender<Result<JobReport, EngineError>>,
}

/// The actor's state: a channel to the engine thread and the shared status.
pub struct WorkerState {
    requests: mpsc::Sender<EngineRequest>,
    status: Arc<Mutex<WorkerStatus>>,
    model_id: String,
}

impl WorkerState {
    /// SHA-256 of the model this worker loaded.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }
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
        let (requests, inbox) = mpsc::channel::<EngineRequest>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<String, String>>();
        let name = args.device.to_string();
        std::thread::Builder::new()
            .name(format!("engine-{name}"))
            .spawn(move || engine_thread(args, inbox, ready_tx))?;
        let model_id = ready_rx
            .await
            .map_err(|_| "the engine thread exited while loading")?
            .map_err(|e| format!("worker {name}: {e}"))?;
        Ok(WorkerState {
            requests,
            status: Arc::new(Mutex::new(WorkerStatus {
                name,
                model_id: model_id.clone(),
                ..WorkerStatus::default()
            })),
            model_id,
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
                let (id, uid, timeout) = (job.id, job.uid, job.timeout);
                if let Ok(mut s) = state.status.lock() {
                    s.current = Some((id, uid));
                }
                let cancel = Arc::new(AtomicBool::new(false));
                let (tx, rx) = tokio::sync::oneshot::channel();
                let outcome = if state
                    .requests
                    .send(EngineRequest {
                        job,
                        cancel: cancel.clone(),
                        reply: tx,
                    })
                    .is_err()
                {
                    JobOutcome::Failed("the engine thread has stopped".into())
                } else {
                    run_with_timeout(rx, cancel, timeout).await
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

/// Waits for the engine's answer; past `timeout` it raises the cancel flag and waits for the
/// engine to stop at its next step.
async fn run_with_timeout(
    mut rx: tokio::sync::oneshot::Receiver<Result<JobReport, EngineError>>,
    cancel: Arc<AtomicBool>,
    timeout: Duration,
) -> JobOutcome {
    let answer = match tokio::time::timeout(timeout, &mut rx).await {
        Ok(answer) => answer,
        Err(_) => {
            cancel.store(true, Ordering::Relaxed);
            rx.await
        }
    };
    match answer {
        Ok(Ok(report)) => JobOutcome::Done(report),
        Ok(Err(EngineError::Cancelled)) => JobOutcome::TimedOut {
            limit_secs: timeout.as_secs(),
        },
        Ok(Err(e)) => JobOutcome::Failed(e.to_string()),
        Err(_) => JobOutcome::Failed("the engine thread stopped during the job".into()),
    }
}

/// Owns the engine: loads the model and the eval set once, then runs jobs until the actor goes.
fn engine_thread(
    args: WorkerArgs,
    inbox: mpsc::Receiver<EngineRequest>,
    ready: tokio::sync::oneshot::Sender<Result<String, String>>,
) {
    let loaded = Engine::load(&args.model_dir, &args.device).and_then(|engine| {
        let eval = engine.prepare_eval(&args.eval_rows, &args.config)?;
        Ok((engine, eval))
    });
    let (engine, mut eval): (Engine, EvalSet) = match loaded {
        Ok(pair) => {
            let _ = ready.send(Ok(pair.0.model_id().to_string()));
            pair
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut eval_seq_len = args.config.max_seq_len;
    while let Ok(request) = inbox.recv() {
        let job = request.job;
        if job.config.max_seq_len != eval_seq_len {
            match engine.prepare_eval(&args.eval_rows, &job.config) {
                Ok(set) => {
                    eval = set;
                    eval_seq_len = job.config.max_seq_len;
                }
                Err(e) => {
                    let _ = request.reply.send(Err(e));
                    continue;
                }
            }
        }
        let started = Instant::now();
        let result = engine.run_job(&job.rows, &eval, &job.config, &request.cancel, &mut |p| {
            tracing::debug!(
                job = job.id,
                uid = job.uid,
                step = p.step,
                of = p.total_steps,
                loss = p.loss,
                "step"
            );
        });
        match &result {
            Ok(r) => tracing::info!(
                job = job.id,
                uid = job.uid,
                eval_loss = r.eval_loss,
                steps = r.steps,
                seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                "job done"
            ),
            Err(e) => tracing::warn!(job = job.id, uid = job.uid, error = %e, "job failed"),
        }
        let _ = request.reply.send(result);
    }
}
