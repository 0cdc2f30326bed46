//! In-process workers: one ractor actor per device, each driving a [`DeviceRunner`] (the engine on
//! its own OS thread, since training blocks for minutes). The message enum is the worker API that
//! remote proxies ([`crate::remote::RemoteWorker`]) speak too.
//!
//! Both kinds apply the same rules to what a job returns: a failure is the miner's only when the
//! miner's data caused it ([`JobFailure`]); a report must be plausible ([`check_report`]); a
//! timeout counts only when this coordinator measured it; and a job that has not stopped within a
//! grace period after it was cancelled is abandoned as the worker's failure.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::config::TrainingConfig;
use protocol::dataset::{DatasetLimits, Row};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::eval_sets::EvalSet;
use worker::runner::{DeviceRunner, JobFailure};
use worker::{Device, JobReport};

/// A miner's `data.jsonl` as the validator read it: what a remote worker parses again, with the
/// same limits, and must find the same rows in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedFile {
    /// The file through its last used row (`Dataset::used_bytes`).
    pub bytes: Vec<u8>,
    /// The `[dataset]` limits it was read with.
    pub limits: DatasetLimits,
    /// The content hash of its rows.
    pub content_hash: String,
}

/// One miner's training job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Unique within the coordinator's lifetime.
    pub id: u64,
    /// The miner.
    pub uid: u16,
    /// The miner's validated rows.
    pub rows: Vec<Row>,
    /// The file those rows were read from, for remote workers.
    pub file: Arc<ValidatedFile>,
    /// How to train.
    pub config: TrainingConfig,
    /// The eval set of the miner's competition.
    pub eval: Arc<EvalSet>,
    /// Wall-clock limit; the job is cancelled at the next optimizer step after it.
    pub timeout: Duration,
}

/// Checks that `report` is a result a worker could honestly have produced for a job of `rows`
/// rows trained with `config` on an eval set of `eval_set_rows` rows; `Err` says what is wrong
/// (a worker failure, never cached).
///
/// - the eval loss is a cross-entropy: finite and ≥ 0;
/// - `train_rows` = min(rows, max_rows), and `steps` = epochs · ⌈⌈train_rows / micro_batch⌉ /
///   grad_accum⌉;
/// - train_rows ≤ `train_tokens` ≤ train_rows · max_seq_len;
/// - `eval_rows` + `eval_rows_skipped` = the eval set's rows, with `eval_rows` ≥ 1;
/// - `seconds` is finite and ≥ 0, and so is every training loss (a report must read back from
///   the loss cache, whose JSON has no NaN).
pub fn check_report(
    report: &JobReport,
    rows: usize,
    config: &TrainingConfig,
    eval_set_rows: usize,
) -> Result<(), String> {
    let loss = report.eval_loss;
    if !loss.is_finite() || loss < 0.0 {
        return Err(format!(
            "eval loss {loss} is not a finite, non-negative number"
        ));
    }
    let train_rows = rows.min(config.max_rows);
    if report.train_rows != train_rows {
        return Err(format!(
            "reported {} training rows; the job has {train_rows}",
            report.train_rows
        ));
    }
    let steps = worker::train::steps_per_epoch(train_rows, config).saturating_mul(config.epochs);
    if report.steps != steps {
        return Err(format!(
            "reported {} optimizer steps; the job takes {steps}",
            report.steps
        ));
    }
    let most_tokens = train_rows.saturating_mul(config.max_seq_len);
    if report.train_tokens < train_rows || report.train_tokens > most_tokens {
        return Err(format!(
            "reported {} training tokens; {train_rows} rows of at most {} tokens hold {train_rows} to {most_tokens}",
            report.train_tokens, config.max_seq_len
        ));
    }
    if report.eval_rows == 0
        || report.eval_rows.checked_add(report.eval_rows_skipped) != Some(eval_set_rows)
    {
        return Err(format!(
            "reported {} eval rows and {} skipped; the eval set has {eval_set_rows}",
            report.eval_rows, report.eval_rows_skipped
        ));
    }
    if !report.seconds.is_finite() || report.seconds < 0.0 {
        return Err(format!("reported {} seconds", report.seconds));
    }
    // Every number must survive the loss cache: JSON has no NaN, serde_json writes it as null,
    // and the cached outcome would never read back.
    if let Some(bad) = report.train_losses.iter().find(|l| !l.is_finite()) {
        return Err(format!("reported a training loss of {bad}"));
    }
    Ok(())
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
    /// Where the worker publishes its status (shared with its [`crate::schedule::WorkerHandle`]).
    pub status: Arc<Mutex<WorkerStatus>>,
    /// How long a cancelled job may take to stop before it is abandoned.
    pub cancel_grace: Duration,
}

/// The in-process worker's state.
pub struct WorkerState {
    runner: DeviceRunner,
    status: Arc<Mutex<WorkerStatus>>,
    cancel_grace: Duration,
}

/// An in-process worker actor.
pub struct WorkerActor;

impl WorkerState {
    /// Runs a job on the device: `Ok` is the miner's outcome, `Err` the worker's failure.
    async fn run(&mut self, job: Job) -> Result<JobOutcome, String> {
        let name = self.runner.name.clone();
        if !self.runner.is_alive() {
            // The device thread died (a panic): load the model on a fresh one.
            tracing::warn!(worker = %name, "restarting the device");
            let old = self.runner.clone();
            self.runner = tokio::task::spawn_blocking(move || old.restart())
                .await
                .map_err(|e| format!("worker {name}: restarting the device: {e}"))?
                .map_err(|e| format!("worker {name}: restarting the device: {e}"))?;
        }
        if self.runner.is_busy() {
            return Err(format!(
                "worker {name}: the device is still busy with an abandoned job"
            ));
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
        let (rows, config, eval_rows) = (job.rows.len(), job.config.clone(), job.eval.row_count());
        let run = self.runner.run(
            job.rows,
            job.config,
            job.eval.rows.clone(),
            cancel.clone(),
            progress,
        );
        tokio::pin!(run);
        let (result, timed_out) = match tokio::time::timeout(timeout, &mut run).await {
            Ok(result) => (result, false),
            Err(_) => {
                cancel.store(true, Ordering::Relaxed);
                match tokio::time::timeout(self.cancel_grace, &mut run).await {
                    Ok(result) => (result, true),
                    Err(_) => {
                        return Err(format!(
                            "worker {name}: job {id} did not stop within {:.1} s of its cancel; abandoned",
                            self.cancel_grace.as_secs_f64()
                        ))
                    }
                }
            }
        };
        match result {
            Ok(report) => check_report(&report, rows, &config, eval_rows)
                .map(|()| JobOutcome::Done(report))
                .map_err(|e| format!("worker {name}: {e}")),
            Err(JobFailure::MinerData(reason)) => Ok(JobOutcome::Failed(reason)),
            Err(JobFailure::Cancelled) if timed_out => Ok(JobOutcome::TimedOut {
                limit_secs: timeout.as_secs(),
            }),
            Err(JobFailure::Cancelled) => Err(format!(
                "worker {name}: job {id} was cancelled, but not by the coordinator"
            )),
            Err(JobFailure::Worker(reason)) => Err(format!("worker {name}: {reason}")),
        }
    }
}

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
            cancel_grace: args.cancel_grace,
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
                let outcome = state.run(job).await;
                if let Ok(mut s) = state.status.lock() {
                    s.current = None;
                    s.jobs_done += u64::from(outcome.is_ok());
                }
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrainingConfig {
        TrainingConfig {
            micro_batch: 2,
            grad_accum: 2,
            epochs: 3,
            max_seq_len: 64,
            max_rows: 10,
            ..TrainingConfig::default()
        }
    }

    /// What an honest worker reports for 25 rows (10 used) and an eval set of 30 rows.
    fn honest() -> JobReport {
        JobReport {
            eval_loss: 2.5,
            train_losses: vec![],
            steps: 9, // 3 epochs × ⌈⌈10 / 2⌉ / 2⌉
            train_rows: 10,
            train_tokens: 300,
            eval_rows: 28,
            eval_rows_skipped: 2,
            seconds: 1.5,
        }
    }

    #[test]
    fn an_honest_report_passes() {
        assert_eq!(check_report(&honest(), 25, &config(), 30), Ok(()));
        let zero = JobReport {
            eval_loss: 0.0,
            ..honest()
        };
        assert_eq!(check_report(&zero, 25, &config(), 30), Ok(()));
    }

    #[test]
    fn impossible_reports_are_refused_with_the_reason() {
        let cases: Vec<(JobReport, &str)> = vec![
            (
                JobReport {
                    eval_loss: -5.0,
                    ..honest()
                },
                "eval loss -5",
            ),
            (
                JobReport {
                    eval_loss: f64::NAN,
                    ..honest()
                },
                "eval loss NaN",
            ),
            (
                JobReport {
                    eval_loss: f64::INFINITY,
                    ..honest()
                },
                "eval loss inf",
            ),
            (
                JobReport {
                    train_rows: 25,
                    ..honest()
                },
                "25 training rows",
            ),
            (
                JobReport {
                    steps: 1,
                    ..honest()
                },
                "1 optimizer steps",
            ),
            (
                JobReport {
                    train_tokens: 641,
                    ..honest()
                },
                "641 training tokens",
            ),
            (
                JobReport {
                    train_tokens: 0,
                    ..honest()
                },
                "0 training tokens",
            ),
            (
                JobReport {
                    eval_rows: 0,
                    eval_rows_skipped: 30,
                    ..honest()
                },
                "0 eval rows",
            ),
            (
                JobReport {
                    eval_rows: 30,
                    ..honest()
                },
                "30 eval rows",
            ),
            (
                JobReport {
                    seconds: f64::NAN,
                    ..honest()
                },
                "NaN seconds",
            ),
            (
                JobReport {
                    train_losses: vec![2.0, f64::NAN],
                    ..honest()
                },
                "training loss of NaN",
            ),
        ];
        for (report, expected) in cases {
            let e = check_report(&report, 25, &config(), 30).expect_err(expected);
            assert!(e.contains(expected), "{e} (expected {expected:?})");
        }
    }

    #[test]
    fn every_accepted_report_reads_back_from_the_cache() {
        let report = JobReport {
            train_losses: vec![3.0, 2.5, 0.0],
            ..honest()
        };
        assert_eq!(check_report(&report, 25, &config(), 30), Ok(()));
        let json = serde_json::to_string(&JobOutcome::Done(report.clone())).expect("json");
        assert_eq!(
            serde_json::from_str::<JobOutcome>(&json).expect("reads back"),
            JobOutcome::Done(report)
        );
        // What a NaN would have become: null, unreadable as a number.
        let nan = JobOutcome::Done(JobReport {
            train_losses: vec![f64::NAN],
            ..honest()
        });
        let json = serde_json::to_string(&nan).expect("json");
        assert!(json.contains("null"), "{json}");
        assert!(serde_json::from_str::<JobOutcome>(&json).is_err());
    }
}
