//! One device, one thread: a [`DeviceRunner`] owns an [`Engine`] (or, for the scale benchmark, a
//! cost simulator) on a dedicated OS thread and runs jobs one at a time, so the async runtime never
//! blocks on training. Eval sets are tokenised once per (hash, max_seq_len) and cached.
//!
//! A job that fails is classified once, here, by [`JobFailure::from_engine`], for the in-process
//! and the remote path alike: only the miner's data makes a miner fail. A panic on the device
//! thread is caught, answered as a worker failure, and ends the thread (the engine may be in any
//! state); the owner sees [`DeviceRunner::is_alive`] turn false and starts a fresh one with
//! [`DeviceRunner::restart`].

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use protocol::config::TrainingConfig;
use protocol::dataset::Row;

use crate::recent::Recent;
use crate::{Device, Engine, EngineError, EvalSet, JobProgress, JobReport};

/// Tokenised eval sets a device keeps (by hash and sequence length, the most recently used).
const MAX_TOKENISED_EVAL_SETS: usize = 8;

/// An eval set as rows with the hash that names it.
#[derive(Debug, Clone)]
pub struct EvalRows {
    /// SHA-256 of the canonical rows.
    pub hash: String,
    /// The rows.
    pub rows: Arc<Vec<Row>>,
}

/// Why a job ended without a report, and so who it is charged to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    /// The miner's data: a training row the tokenizer cannot encode, or training on the rows
    /// diverged (with the validator's fixed model and config, only the data varies). Recorded
    /// against the miner.
    #[error("{0}")]
    MinerData(String),
    /// The caller cancelled the job.
    #[error("cancelled")]
    Cancelled,
    /// The worker failed: its device, files, tokenizer, the eval set on this worker, a panic, a
    /// stopped device thread. Not the miner's fault: the job runs elsewhere.
    #[error("{0}")]
    Worker(String),
}

impl JobFailure {
    /// The one rule for every path: which engine errors are the miner's.
    ///
    /// | `EngineError` | charged to |
    /// |---|---|
    /// | `Data` (a training row cannot be tokenised), `Diverged` | the miner |
    /// | `Cancelled` | nobody (the caller decides: a timeout it measured, or a lost worker) |
    /// | `Io`, `Checkpoint`, `Tokenizer`, `Config`, `Device` | the worker |
    ///
    /// Eval-set errors never reach this function as `Data`: the runner prepares the eval set
    /// before the job and reports its problems as worker failures.
    pub fn from_engine(error: EngineError) -> Self {
        match error {
            EngineError::Data(_) | EngineError::Diverged(_) => {
                JobFailure::MinerData(error.to_string())
            }
            EngineError::Cancelled => JobFailure::Cancelled,
            EngineError::Io { .. }
            | EngineError::Checkpoint(_)
            | EngineError::Tokenizer(_)
            | EngineError::Config(_)
            | EngineError::Device(_) => JobFailure::Worker(error.to_string()),
        }
    }
}

/// One job for a runner.
pub struct RunRequest {
    /// Training rows.
    pub rows: Vec<Row>,
    /// How to train.
    pub config: TrainingConfig,
    /// What to evaluate on.
    pub eval: EvalRows,
    /// Raised to stop at the next optimizer step.
    pub cancel: Arc<AtomicBool>,
    /// Called after every optimizer step.
    pub progress: Box<dyn FnMut(JobProgress) + Send>,
    /// Where the outcome goes.
    pub reply: tokio::sync::oneshot::Sender<Result<JobReport, JobFailure>>,
}

/// What a runner runs jobs with.
enum Backend {
    Engine(Box<Engine>),
    /// Sleeps `us_per_token` per training token (bytes / 4) and reports a loss derived from the
    /// rows, for scheduling benchmarks without training.
    Simulated {
        us_per_token: u64,
    },
    /// Panics on the jobs whose number (1-based) is listed, simulates the others: the device
    /// fault of this module's and `serve`'s tests.
    #[cfg(test)]
    Faulty {
        panic_on: Vec<usize>,
        done: usize,
    },
}

/// How to start a runner again.
#[derive(Debug, Clone)]
enum Recipe {
    Engine {
        device: Device,
        model_dir: PathBuf,
    },
    Simulated {
        us_per_token: u64,
    },
    #[cfg(test)]
    Faulty,
}

/// What the device thread tells its handles.
#[derive(Debug, Default)]
struct Health {
    /// False once the thread has ended (after a panic).
    dead: AtomicBool,
    /// True while a job is on the device.
    busy: AtomicBool,
}

/// A handle to a device thread.
#[derive(Clone)]
pub struct DeviceRunner {
    requests: mpsc::Sender<RunRequest>,
    health: Arc<Health>,
    recipe: Recipe,
    /// `cpu`, `cuda:0`, ... or `simulated`.
    pub name: String,
    /// SHA-256 of the loaded model ("simulated" when simulating).
    pub model_id: String,
}

impl DeviceRunner {
    /// Loads the model on `device` on a new thread; returns when it is resident.
    pub fn start(device: Device, model_dir: &Path) -> Result<Self, EngineError> {
        let engine = Engine::load(model_dir, &device)?;
        let model_id = engine.model_id().to_string();
        Ok(Self::spawn(
            device.to_string(),
            model_id,
            Backend::Engine(Box::new(engine)),
            Recipe::Engine {
                device,
                model_dir: model_dir.to_path_buf(),
            },
        ))
    }

    /// A runner that simulates training cost instead of training.
    pub fn simulated(us_per_token: u64) -> Self {
        Self::spawn(
            "simulated".into(),
            "simulated".into(),
            Backend::Simulated { us_per_token },
            Recipe::Simulated { us_per_token },
        )
    }

    /// A simulating runner whose device thread panics on the listed jobs (1-based).
    #[cfg(test)]
    pub(crate) fn faulty(panic_on: Vec<usize>) -> Self {
        Self::spawn(
            "faulty".into(),
            "simulated".into(),
            Backend::Faulty { panic_on, done: 0 },
            Recipe::Faulty,
        )
    }

    /// A fresh runner for the same device (the model loaded again): what replaces a runner
    /// whose thread died. Blocks while the model loads.
    pub fn restart(&self) -> Result<Self, EngineError> {
        match &self.recipe {
            Recipe::Engine { device, model_dir } => Self::start(*device, model_dir),
            Recipe::Simulated { us_per_token } => Ok(Self::simulated(*us_per_token)),
            // A replaced faulty device is a sound one.
            #[cfg(test)]
            Recipe::Faulty => Ok(Self::faulty(Vec::new())),
        }
    }

    /// Whether the device thread still runs (false after a panic).
    pub fn is_alive(&self) -> bool {
        !self.health.dead.load(Ordering::Acquire)
    }

    /// Whether a job is on the device now (a cancelled job stays there until the engine notices).
    pub fn is_busy(&self) -> bool {
        self.health.busy.load(Ordering::Acquire)
    }

    fn spawn(name: String, model_id: String, backend: Backend, recipe: Recipe) -> Self {
        let (requests, inbox) = mpsc::channel::<RunRequest>();
        let health = Arc::new(Health::default());
        let thread_name = format!("device-{name}");
        let (thread_health, thread_device) = (health.clone(), name.clone());
        let spawned = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || run_thread(backend, inbox, &thread_health, &thread_device));
        if spawned.is_err() {
            health.dead.store(true, Ordering::Release);
        }
        Self {
            requests,
            health,
            recipe,
            name,
            model_id,
        }
    }

    /// Runs a job; resolves when the device has finished it.
    pub async fn run(
        &self,
        rows: Vec<Row>,
        config: TrainingConfig,
        eval: EvalRows,
        cancel: Arc<AtomicBool>,
        progress: Box<dyn FnMut(JobProgress) + Send>,
    ) -> Result<JobReport, JobFailure> {
        let stopped = || JobFailure::Worker(format!("the {} device thread has stopped", self.name));
        if !self.is_alive() {
            return Err(stopped());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests
            .send(RunRequest {
                rows,
                config,
                eval,
                cancel,
                progress,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| {
            JobFailure::Worker(format!(
                "the {} device thread stopped during the job",
                self.name
            ))
        })?
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn run_thread(
    mut backend: Backend,
    inbox: mpsc::Receiver<RunRequest>,
    health: &Health,
    device: &str,
) {
    let mut eval_cache: Recent<(String, usize), EvalSet> = Recent::new(MAX_TOKENISED_EVAL_SETS);
    while let Ok(mut request) = inbox.recv() {
        health.busy.store(true, Ordering::Release);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_one(&mut backend, &mut eval_cache, &mut request)
        }));
        let panicked = outcome.is_err();
        let result = outcome.unwrap_or_else(|payload| {
            let message = panic_message(payload.as_ref());
            tracing::error!(device, panic = %message, "the device thread panicked; it stops");
            Err(JobFailure::Worker(format!(
                "the {device} device panicked: {message}"
            )))
        });
        if panicked {
            // The engine may be left in any state: this thread ends and drops it.
            health.dead.store(true, Ordering::Release);
        }
        health.busy.store(false, Ordering::Release);
        let _ = request.reply.send(result);
        if panicked {
            break;
        }
    }
    health.dead.store(true, Ordering::Release);
}

fn run_one(
    backend: &mut Backend,
    eval_cache: &mut Recent<(String, usize), EvalSet>,
    request: &mut RunRequest,
) -> Result<JobReport, JobFailure> {
    match backend {
        Backend::Engine(engine) => {
            let key = (request.eval.hash.clone(), request.config.max_seq_len);
            let eval = match eval_cache.get(&key) {
                Some(set) => set.clone(),
                None => {
                    // The eval set is the validator's, not the miner's: its problems are the
                    // worker's failures.
                    let set = engine
                        .prepare_eval(&request.eval.rows, &request.config)
                        .map_err(|e| {
                            JobFailure::Worker(format!("eval set {}: {e}", request.eval.hash))
                        })?;
                    eval_cache.insert(key, set.clone());
                    set
                }
            };
            if eval.rows() == 0 {
                return Err(JobFailure::Worker(format!(
                    "eval set {}: no row has a supervised token within max_seq_len {}",
                    request.eval.hash, request.config.max_seq_len
                )));
            }
            engine
                .run_job(
                    &request.rows,
                    &eval,
                    &request.config,
                    &request.cancel,
                    &mut *request.progress,
                )
                .map_err(JobFailure::from_engine)
        }
        Backend::Simulated { us_per_token } => simulate(request, *us_per_token),
        #[cfg(test)]
        Backend::Faulty { panic_on, done } => {
            *done += 1;
            if panic_on.contains(done) {
                panic!("simulated device fault on job {done}");
            }
            simulate(request, 0)
        }
    }
}

fn simulate(request: &RunRequest, us_per_token: u64) -> Result<JobReport, JobFailure> {
    let started = Instant::now();
    let config = &request.config;
    let rows = &request.rows[..request.rows.len().min(config.max_rows)];
    let text: Vec<String> = rows.iter().map(protocol::dataset::canonical_row).collect();
    let tokens: usize = text.iter().map(|t| t.len() / 4).sum();
    let deadline = Duration::from_micros(us_per_token.saturating_mul(tokens as u64));
    while started.elapsed() < deadline {
        if request.cancel.load(Ordering::Relaxed) {
            return Err(JobFailure::Cancelled);
        }
        std::thread::sleep(
            Duration::from_millis(1).min(deadline.saturating_sub(started.elapsed())),
        );
    }
    let digest = protocol::dataset::content_hash(&text);
    let spread = u64::from_str_radix(&digest[..8], 16).unwrap_or(0) % 10_000;
    Ok(JobReport {
        eval_loss: 1.0 + spread as f64 / 10_000.0,
        train_losses: Vec::new(),
        steps: crate::train::steps_per_epoch(rows.len(), config) * config.epochs,
        train_rows: rows.len(),
        train_tokens: text
            .iter()
            .map(|t| (t.len() / 4).clamp(1, config.max_seq_len))
            .sum(),
        eval_rows: request.eval.rows.len(),
        eval_rows_skipped: 0,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::dataset::{Message as Turn, Role};

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                system: None,
                conversations: vec![
                    Turn {
                        role: Role::User,
                        content: format!("question {i}"),
                    },
                    Turn {
                        role: Role::Assistant,
                        content: format!("answer {i}"),
                    },
                ],
            })
            .collect()
    }

    async fn run(runner: &DeviceRunner) -> Result<JobReport, JobFailure> {
        let eval = EvalRows {
            hash: "e".into(),
            rows: Arc::new(rows(3)),
        };
        runner
            .run(
                rows(5),
                TrainingConfig::default(),
                eval,
                Arc::new(AtomicBool::new(false)),
                Box::new(|_| {}),
            )
            .await
    }

    #[tokio::test]
    async fn a_panic_on_the_device_is_a_worker_failure_and_the_runner_restarts() {
        let runner = DeviceRunner::faulty(vec![2]);
        assert!(run(&runner).await.is_ok());
        match run(&runner).await {
            Err(JobFailure::Worker(reason)) => {
                assert!(
                    reason.contains("panicked") && reason.contains("simulated device fault"),
                    "{reason}"
                )
            }
            other => panic!("expected a worker failure, got {other:?}"),
        }
        // The thread is gone: the handle says so, and says it again without hanging.
        assert!(!runner.is_alive());
        assert!(matches!(run(&runner).await, Err(JobFailure::Worker(_))));
        let fresh = runner.restart().expect("restart");
        assert!(fresh.is_alive());
        let report = run(&fresh).await.expect("the restarted device works");
        assert_eq!(report.train_rows, 5);
    }

    #[test]
    fn only_the_miners_data_is_charged_to_the_miner() {
        let miner = [
            EngineError::Data("train row 3: cannot encode".into()),
            EngineError::Diverged("step 2 loss is NaN".into()),
        ];
        for e in miner {
            assert!(matches!(
                JobFailure::from_engine(e),
                JobFailure::MinerData(_)
            ));
        }
        let worker = [
            EngineError::Io {
                path: "adapter".into(),
                reason: "disk full".into(),
            },
            EngineError::Checkpoint("tensor missing".into()),
            EngineError::Tokenizer("unreadable".into()),
            EngineError::Config("bad".into()),
            EngineError::Device("CUDA out of memory".into()),
        ];
        for e in worker {
            assert!(matches!(JobFailure::from_engine(e), JobFailure::Worker(_)));
        }
        assert_eq!(
            JobFailure::from_engine(EngineError::Cancelled),
            JobFailure::Cancelled
        );
    }

    #[tokio::test]
    async fn an_eval_set_without_supervised_tokens_is_the_workers_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::write_tiny_model(dir.path(), 7).expect("tiny model");
        let runner = DeviceRunner::start(Device::Cpu, dir.path()).expect("runner");
        // Four tokens hold no more than the user prefix: no eval row keeps an assistant token.
        let config = TrainingConfig {
            max_seq_len: 4,
            epochs: 0,
            ..TrainingConfig::default()
        };
        let eval = EvalRows {
            hash: "e".into(),
            rows: Arc::new(rows(3)),
        };
        let result = runner
            .run(
                rows(2),
                config,
                eval,
                Arc::new(AtomicBool::new(false)),
                Box::new(|_| {}),
            )
            .await;
        match result {
            Err(JobFailure::Worker(reason)) => {
                assert!(reason.contains("no row has a supervised token"), "{reason}")
            }
            other => panic!("expected a worker failure, got {other:?}"),
        }
        assert!(runner.is_alive());
    }
}
