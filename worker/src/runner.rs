//! One device, one thread: a [`DeviceRunner`] owns an [`Engine`] (or, for the scale benchmark, a
//! cost simulator) on a dedicated OS thread and runs jobs one at a time, so the async runtime never
//! blocks on training. Eval sets are tokenised once per (hash, max_seq_len) and cached.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use protocol::config::TrainingConfig;
use protocol::dataset::Row;

use crate::{Device, Engine, EngineError, EvalSet, JobProgress, JobReport};

/// An eval set as rows with the hash that names it.
#[derive(Debug, Clone)]
pub struct EvalRows {
    /// SHA-256 of the canonical rows.
    pub hash: String,
    /// The rows.
    pub rows: Arc<Vec<Row>>,
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
    pub reply: tokio::sync::oneshot::Sender<Result<JobReport, EngineError>>,
}

/// What a runner runs jobs with.
enum Backend {
    Engine(Box<Engine>),
    /// Sleeps `us_per_token` per training token (bytes / 4) and reports a loss derived from the
    /// rows, for scheduling benchmarks without training.
    Simulated {
        us_per_token: u64,
    },
}

/// A handle to a device thread.
#[derive(Clone)]
pub struct DeviceRunner {
    requests: mpsc::Sender<RunRequest>,
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
        ))
    }

    /// A runner that simulates training cost instead of training.
    pub fn simulated(us_per_token: u64) -> Self {
        Self::spawn(
            "simulated".into(),
            "simulated".into(),
            Backend::Simulated { us_per_token },
        )
    }

    fn spawn(name: String, model_id: String, backend: Backend) -> Self {
        let (requests, inbox) = mpsc::channel::<RunRequest>();
        let thread_name = format!("device-{name}");
        let _ = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || run_thread(backend, inbox));
        Self {
            requests,
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
    ) -> Result<JobReport, EngineError> {
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
            .map_err(|_| {
                EngineError::Device(format!("the {} device thread has stopped", self.name))
            })?;
        answer.await.map_err(|_| {
            EngineError::Device(format!(
                "the {} device thread stopped during the job",
                self.name
            ))
        })?
    }
}

fn run_thread(backend: Backend, inbox: mpsc::Receiver<RunRequest>) {
    let mut eval_cache: HashMap<(String, usize), EvalSet> = HashMap::new();
    while let Ok(mut request) = inbox.recv() {
        let result = match &backend {
            Backend::Engine(engine) => {
                let key = (request.eval.hash.clone(), request.config.max_seq_len);
                let eval = match eval_cache.get(&key) {
                    Some(set) => Ok(set.clone()),
                    None => engine
                        .prepare_eval(&request.eval.rows, &request.config)
                        .inspect(|set| {
                            eval_cache.insert(key.clone(), set.clone());
                        }),
                };
                eval.and_then(|eval| {
                    engine.run_job(
                        &request.rows,
                        &eval,
                        &request.config,
                        &request.cancel,
                        &mut *request.progress,
                    )
                })
            }
            Backend::Simulated { us_per_token } => simulate(&request, *us_per_token),
        };
        let _ = request.reply.send(result);
    }
}

fn simulate(request: &RunRequest, us_per_token: u64) -> Result<JobReport, EngineError> {
    let started = Instant::now();
    let rows = &request.rows[..request.rows.len().min(request.config.max_rows)];
    let text: Vec<String> = rows.iter().map(protocol::dataset::canonical_row).collect();
    let tokens: usize = text.iter().map(|t| t.len() / 4).sum();
    let deadline = Duration::from_micros(us_per_token.saturating_mul(tokens as u64));
    while started.elapsed() < deadline {
        if request.cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
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
        steps: 0,
        train_rows: rows.len(),
        train_tokens: tokens,
        eval_rows: request.eval.rows.len(),
        eval_rows_skipped: 0,
        seconds: started.elapsed().as_secs_f64(),
    })
}
