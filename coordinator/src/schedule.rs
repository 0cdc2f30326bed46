//! Scheduling jobs over workers (the epoch's train step, `docs/architecture.md`): longest job first, each worker taking the
//! next job as soon as it is free (greedy LPT, which on identical devices is the least-loaded
//! worker rule); a worker that fails has its job put back at the front of the queue for another,
//! and after [`MAX_WORKER_FAILURES`] failures in a row it takes no more jobs this round. A job's
//! outcome is accepted once: only the call that ran it to the end reports it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::supervisor::ActorSlot;
use crate::worker_actor::{Job, JobOutcome, WorkerMsg, WorkerStatus};

/// A worker the scheduler can send jobs to.
#[derive(Clone)]
pub struct WorkerHandle {
    /// For reports and logs, e.g. `cpu`.
    pub name: String,
    /// The worker actor (swapped when a supervisor restarts it).
    pub actor: ActorSlot,
    /// The status the worker publishes, readable while it is busy.
    pub status: Arc<Mutex<WorkerStatus>>,
}

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

/// The shared queue: jobs not yet taken, and how many are out on workers (they may come back).
struct Queue {
    jobs: VecDeque<(Job, usize)>,
    in_flight: usize,
}

enum Next {
    Run(Job, usize),
    Wait,
    Done,
}

impl Queue {
    fn next(&mut self) -> Next {
        match self.jobs.pop_front() {
            Some((job, size)) => {
                self.in_flight += 1;
                Next::Run(job, size)
            }
            None if self.in_flight > 0 => Next::Wait,
            None => Next::Done,
        }
    }
}

/// Runs `jobs` (each with its size, e.g. dataset bytes) on `workers`; returns uid → worker name
/// for every job that finished. A worker with nothing to take waits while other jobs are out,
/// since a failed one comes back to the queue.
pub async fn schedule<H: JobHooks>(
    workers: &[WorkerHandle],
    mut jobs: Vec<(Job, usize)>,
    hooks: Arc<H>,
) -> Result<BTreeMap<u16, String>, H::Error> {
    jobs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.uid.cmp(&b.0.uid)));
    let queue = Arc::new(Mutex::new(Queue {
        jobs: jobs.into_iter().collect(),
        in_flight: 0,
    }));
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers.iter().cloned() {
        let (queue, hooks, changed) = (queue.clone(), hooks.clone(), changed.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            let mut failures = 0u32;
            loop {
                let next = match queue.lock() {
                    Ok(mut q) => q.next(),
                    Err(_) => Next::Done,
                };
                let (job, size) = match next {
                    Next::Run(job, size) => (job, size),
                    Next::Wait => {
                        let _ = tokio::time::timeout(Duration::from_millis(200), changed.notified()).await;
                        continue;
                    }
                    Next::Done => break,
                };
                let result = run_one(&worker, &job, &*hooks).await;
                let failed = matches!(result, Ok(Err(_)));
                if let Ok(mut q) = queue.lock() {
                    q.in_flight -= 1;
                    if failed {
                        q.jobs.push_front((job.clone(), size));
                    }
                }
                changed.notify_waiters();
                match result? {
                    Ok(()) => {
                        failures = 0;
                        done.push((job.uid, worker.name.clone()));
                    }
                    Err(e) => {
                        // The worker's fault, not the miner's: nothing is recorded and the job
                        // went back to the front of the queue for another worker.
                        failures += 1;
                        tracing::warn!(worker = %worker.name, job = job.id, error = %e, failures, "worker failed; job re-queued");
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

/// Runs one job on `worker`: `Ok(Ok)` when it ended with the miner's outcome (recorded),
/// `Ok(Err)` when the worker failed (recorded as abandoned), `Err` when a hook failed.
async fn run_one<H: JobHooks>(
    worker: &WorkerHandle,
    job: &Job,
    hooks: &H,
) -> Result<Result<(), String>, H::Error> {
    let token = hooks.started(job, &worker.name)?;
    tracing::info!(job = job.id, uid = job.uid, worker = %worker.name, rows = job.rows.len(), "training");
    let answer = ractor::call!(worker.actor.current(), WorkerMsg::Run, job.clone())
        .map_err(|e| e.to_string());
    match answer.and_then(|r| r) {
        Ok(outcome) => {
            hooks.finished(job, token, &outcome, &worker.name)?;
            Ok(Ok(()))
        }
        Err(e) => {
            hooks.abandoned(job, token, &worker.name, &e)?;
            Ok(Err(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::ActorSlot;
    use crate::worker_actor::WorkerStatus;
    use ractor::{Actor, ActorProcessingErr, ActorRef};
    use worker::JobReport;

    /// A worker that answers after `delay`, failing every job when `broken`.
    struct Fake {
        delay: Duration,
        broken: bool,
    }

    impl Actor for Fake {
        type Msg = WorkerMsg;
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<WorkerMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
        async fn handle(
            &self,
            _: ActorRef<WorkerMsg>,
            msg: WorkerMsg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                WorkerMsg::Run(job, reply) => {
                    tokio::time::sleep(self.delay).await;
                    let _ = reply.send(if self.broken {
                        Err("connection lost".into())
                    } else {
                        Ok(JobOutcome::Done(JobReport {
                            eval_loss: f64::from(job.uid),
                            train_losses: vec![],
                            steps: 0,
                            train_rows: 0,
                            train_tokens: 0,
                            eval_rows: 0,
                            eval_rows_skipped: 0,
                            seconds: 0.0,
                        }))
                    });
                }
                WorkerMsg::Status(reply) => {
                    let _ = reply.send(WorkerStatus::default());
                }
            }
            Ok(())
        }
    }

    struct Count(Mutex<Vec<(u64, String)>>);

    impl JobHooks for Count {
        type Error = std::convert::Infallible;
        fn started(&self, _: &Job, _: &str) -> Result<i64, Self::Error> {
            Ok(0)
        }
        fn finished(
            &self,
            job: &Job,
            _: i64,
            _: &JobOutcome,
            worker: &str,
        ) -> Result<(), Self::Error> {
            if let Ok(mut v) = self.0.lock() {
                v.push((job.id, worker.to_string()));
            }
            Ok(())
        }
    }

    async fn handle(name: &str, delay_ms: u64, broken: bool) -> WorkerHandle {
        let (actor, _) = Actor::spawn(
            None,
            Fake {
                delay: Duration::from_millis(delay_ms),
                broken,
            },
            (),
        )
        .await
        .expect("fake worker");
        WorkerHandle {
            name: name.into(),
            actor: ActorSlot::new(actor),
            status: Arc::new(Mutex::new(WorkerStatus::default())),
        }
    }

    fn job(id: u64) -> Job {
        Job {
            id,
            uid: id as u16,
            rows: vec![],
            file: Arc::new(crate::worker_actor::ValidatedFile {
                bytes: Vec::new(),
                limits: protocol::dataset::DatasetLimits::default(),
                content_hash: String::new(),
            }),
            config: protocol::config::TrainingConfig::default(),
            timeout: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_job_lost_after_the_queue_emptied_is_run_by_a_waiting_worker_exactly_once() {
        // `bad` takes the big job and fails late; `good` has already finished everything else
        // and must wait for the failed job instead of leaving.
        let workers = vec![
            handle("bad", 300, true).await,
            handle("good", 10, false).await,
        ];
        let hooks = Arc::new(Count(Mutex::new(Vec::new())));
        let done = schedule(
            &workers,
            vec![(job(1), 100), (job(2), 10), (job(3), 5)],
            hooks.clone(),
        )
        .await
        .expect("no hook error");
        assert_eq!(done.len(), 3, "{done:?}");
        let mut finished = hooks.0.lock().expect("lock").clone();
        finished.sort();
        assert_eq!(
            finished,
            vec![(1, "good".into()), (2, "good".into()), (3, "good".into())]
        );
    }

    #[tokio::test]
    async fn longest_jobs_go_first() {
        let workers = vec![handle("only", 1, false).await];
        let hooks = Arc::new(Count(Mutex::new(Vec::new())));
        schedule(
            &workers,
            vec![(job(1), 5), (job(2), 50), (job(3), 20)],
            hooks.clone(),
        )
        .await
        .expect("no hook error");
        let order: Vec<u64> = hooks
            .0
            .lock()
            .expect("lock")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(order, vec![2, 3, 1]);
    }
}
