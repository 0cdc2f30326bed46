//! Scheduling jobs over workers (DESIGN.md §2 step 4): longest job first, each worker taking the
//! next job as soon as it is free (greedy LPT, which on identical devices is the least-loaded
//! worker rule); a worker that fails has its job put back at the front of the queue for another,
//! and after [`MAX_WORKER_FAILURES`] failures in a row it takes no more jobs this round. A job's
//! outcome is accepted once: only the call that ran it to the end reports it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::epoch::WorkerHandle;
use crate::worker_actor::{Job, JobOutcome, WorkerMsg};

/// Consecutive failures after which a worker takes no more jobs this round.
pub const MAX_WORKER_FAILURES: u32 = 3;

/// What the caller records around each job (state writes, metrics, timings).
pub trait JobHooks: Send + Sync + 'static {
    /// The caller's error.
    type Error: Send + 'static;
    /// A job is about to be sent to `worker`; returns a token for [`JobHooks::finished`].
    fn started(&self, job: &Job, worker: &str) -> Result<i64, Self::Error>;
    /// A job ended with the miner's outcome on `worker`.
    fn finished(
        &self,
        job: &Job,
        token: i64,
        outcome: &JobOutcome,
        worker: &str,
    ) -> Result<(), Self::Error>;
    /// `worker` failed while running the job (it goes back to the queue).
    fn abandoned(
        &self,
        _job: &Job,
        _token: i64,
        _worker: &str,
        _reason: &str,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Runs `jobs` (each with its size, e.g. dataset bytes) on `workers`; returns uid → worker name
/// for every job that finished.
pub async fn schedule<H: JobHooks>(
    workers: &[WorkerHandle],
    mut jobs: Vec<(Job, usize)>,
    hooks: Arc<H>,
) -> Result<BTreeMap<u16, String>, H::Error> {
    jobs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.uid.cmp(&b.0.uid)));
    let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<_>>()));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers.iter().cloned() {
        let (queue, hooks) = (queue.clone(), hooks.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            let mut failures = 0u32;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some((job, size)) = next else { break };
                let token = hooks.started(&job, &worker.name)?;
                tracing::info!(job = job.id, uid = job.uid, worker = %worker.name, rows = job.rows.len(), "training");
                let answer = ractor::call!(worker.actor.current(), WorkerMsg::Run, job.clone()).map_err(|e| e.to_string());
                match answer.and_then(|r| r) {
                    Ok(outcome) => {
                        failures = 0;
                        hooks.finished(&job, token, &outcome, &worker.name)?;
                        done.push((job.uid, worker.name.clone()));
                    }
                    Err(e) => {
                        // The worker's fault, not the miner's: nothing is recorded and the job
                        // goes back to the front of the queue for another worker.
                        failures += 1;
                        hooks.abandoned(&job, token, &worker.name, &e)?;
                        tracing::warn!(worker = %worker.name, job = job.id, error = %e, failures, "worker failed; job re-queued");
                        if let Ok(mut q) = queue.lock() {
                            q.push_front((job, size));
                        }
                        if failures >= MAX_WORKER_FAILURES {
                            tracing::error!(worker = %worker.name, "giving up on this worker for this round");
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(250 << failures)).await;
                    }
                }
            }
            Ok::<_, H::Error>(done)
        });
    }
    let mut finished = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        if let Ok(done) = result {
            finished.extend(done?);
        }
    }
    Ok(finished)
}
