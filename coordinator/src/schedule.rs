//! Scheduling jobs over workers (the epoch's train step, `docs/architecture.md`): longest job
//! first, each worker taking the next job as soon as it is free (greedy LPT, which on identical
//! devices is the least-loaded worker rule). A job's outcome is accepted once: only the call that
//! ran it to the end reports it.
//!
//! Failures: a worker that fails has its job put back at the front of the queue for another
//! worker (never for one that already failed it), and after [`MAX_WORKER_FAILURES`] failures in
//! a row the worker takes no more jobs this round. A job that failed on [`MAX_JOB_WORKERS`]
//! distinct workers, or on every worker still taking jobs, is given up so that the queue moves
//! on ([`Schedule::given_up`], `docs/scoring.md`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

/// Distinct workers a job may fail on before it is given up for the round.
pub const MAX_JOB_WORKERS: usize = 3;

/// A job given up this round: it failed on every worker it was tried on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUp {
    /// The job's miner.
    pub uid: u16,
    /// The workers it failed on, in the order it was tried.
    pub workers: Vec<String>,
    /// What the last of them said.
    pub last_error: String,
    /// Whether the miner is charged: at least one of those workers finished another job this
    /// round, so the workers work and the job is what fails. Otherwise every worker it was
    /// tried on may be broken, and nothing is charged.
    pub charged: bool,
}

impl GivenUp {
    /// The reason recorded for the miner.
    pub fn reason(&self) -> String {
        format!(
            "failed on {} worker(s) ({}); the last said: {}",
            self.workers.len(),
            self.workers.join(", "),
            self.last_error
        )
    }
}

/// What a round of scheduling did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// uid → worker name, for every job that ended with the miner's outcome.
    pub finished: BTreeMap<u16, String>,
    /// uid → the job given up, for every job that failed on too many workers.
    pub given_up: BTreeMap<u16, GivenUp>,
}

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
    /// The job failed on too many workers and is given up for this round (after every other
    /// job has ended).
    fn given_up(&self, _job: &Job, _given_up: &GivenUp) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A job waiting in the queue, with the workers (by index) it failed on.
struct Queued {
    job: Job,
    failed_on: Vec<usize>,
    last_error: String,
}

/// The shared queue: jobs not yet taken, how many are out on workers (they may come back), the
/// workers still taking jobs, and the jobs given up.
struct Queue {
    jobs: VecDeque<Queued>,
    in_flight: usize,
    live: BTreeSet<usize>,
    given_up: Vec<Queued>,
}

enum Next {
    Run(Box<Queued>),
    Wait,
    Done,
}

impl Queue {
    /// Whether `q` has failed on enough workers to be given up: [`MAX_JOB_WORKERS`] of them, or
    /// every worker in `live` (those still taking jobs).
    fn exhausted(q: &Queued, live: &BTreeSet<usize>) -> bool {
        q.failed_on.len() >= MAX_JOB_WORKERS || live.iter().all(|w| q.failed_on.contains(w))
    }

    /// Moves every exhausted job to `given_up`.
    fn give_up_exhausted(&mut self) {
        let live = &self.live;
        let (exhausted, keep): (Vec<Queued>, Vec<Queued>) =
            self.jobs.drain(..).partition(|q| Self::exhausted(q, live));
        self.jobs = keep.into();
        self.given_up.extend(exhausted);
    }

    /// The next job for `worker`: the first one it has not failed.
    fn next(&mut self, worker: usize) -> Next {
        self.give_up_exhausted();
        let takeable = self
            .jobs
            .iter()
            .position(|q| !q.failed_on.contains(&worker));
        match takeable.and_then(|at| self.jobs.remove(at)) {
            Some(queued) => {
                self.in_flight += 1;
                Next::Run(Box::new(queued))
            }
            None if self.in_flight > 0 || !self.jobs.is_empty() => Next::Wait,
            None => Next::Done,
        }
    }
}

/// Runs `jobs` (each with its size, e.g. dataset bytes) on `workers`. A worker with nothing to
/// take waits while other jobs are out, since a failed one comes back to the queue. After every
/// job has ended, each job given up is reported to [`JobHooks::given_up`].
pub async fn schedule<H: JobHooks>(
    workers: &[WorkerHandle],
    mut jobs: Vec<(Job, usize)>,
    hooks: Arc<H>,
) -> Result<Schedule, H::Error> {
    jobs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.uid.cmp(&b.0.uid)));
    let queue = Arc::new(Mutex::new(Queue {
        jobs: jobs
            .into_iter()
            .map(|(job, _)| Queued {
                job,
                failed_on: Vec::new(),
                last_error: String::new(),
            })
            .collect(),
        in_flight: 0,
        live: (0..workers.len()).collect(),
        given_up: Vec::new(),
    }));
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    for (index, worker) in workers.iter().cloned().enumerate() {
        let (queue, hooks, changed) = (queue.clone(), hooks.clone(), changed.clone());
        tasks.spawn(async move {
            let result = work(index, &worker, &queue, &*hooks, &changed).await;
            if let Ok(mut q) = queue.lock() {
                q.live.remove(&index);
            }
            changed.notify_waiters();
            result
        });
    }
    let mut finished = BTreeMap::new();
    let mut error = None;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(done)) => finished.extend(done),
            Ok(Err(e)) => error = error.or(Some(e)),
            Err(_) => {}
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    let given_up = match queue.lock() {
        Ok(mut q) => {
            // Jobs nobody could take any more (every worker left) are given up too.
            let left: Vec<Queued> = q.jobs.drain(..).collect();
            q.given_up.extend(left);
            std::mem::take(&mut q.given_up)
        }
        Err(_) => Vec::new(),
    };
    let succeeded: BTreeSet<String> = finished.values().cloned().collect();
    let mut out = Schedule {
        finished,
        given_up: BTreeMap::new(),
    };
    for q in given_up {
        let names: Vec<String> = q
            .failed_on
            .iter()
            .filter_map(|w| workers.get(*w).map(|h| h.name.clone()))
            .collect();
        let verdict = GivenUp {
            uid: q.job.uid,
            charged: !names.is_empty() && names.iter().any(|n| succeeded.contains(n)),
            workers: names,
            last_error: if q.last_error.is_empty() {
                "no worker could take it".into()
            } else {
                q.last_error.clone()
            },
        };
        tracing::error!(job = q.job.id, uid = q.job.uid, charged = verdict.charged, reason = %verdict.reason(), "job given up");
        hooks.given_up(&q.job, &verdict)?;
        out.given_up.insert(q.job.uid, verdict);
    }
    Ok(out)
}

/// One worker's loop: take jobs until none is left for it or it failed too often in a row.
/// Returns (uid, worker) of each job it finished.
async fn work<H: JobHooks>(
    index: usize,
    worker: &WorkerHandle,
    queue: &Mutex<Queue>,
    hooks: &H,
    changed: &tokio::sync::Notify,
) -> Result<Vec<(u16, String)>, H::Error> {
    let mut done = Vec::new();
    let mut failures = 0u32;
    loop {
        let next = match queue.lock() {
            Ok(mut q) => q.next(index),
            Err(_) => Next::Done,
        };
        let mut queued = match next {
            Next::Run(queued) => queued,
            Next::Wait => {
                let _ = tokio::time::timeout(Duration::from_millis(200), changed.notified()).await;
                continue;
            }
            Next::Done => break,
        };
        let result = run_one(worker, &queued.job, hooks).await;
        let (uid, id) = (queued.job.uid, queued.job.id);
        let failure = match &result {
            Ok(Err(e)) => Some(e.clone()),
            _ => None,
        };
        if let Ok(mut q) = queue.lock() {
            q.in_flight -= 1;
            if let Some(e) = &failure {
                queued.failed_on.push(index);
                queued.last_error = e.clone();
                q.jobs.push_front(*queued);
            }
        }
        changed.notify_waiters();
        match result? {
            Ok(()) => {
                failures = 0;
                done.push((uid, worker.name.clone()));
            }
            Err(e) => {
                // The worker's fault, not the miner's: nothing is recorded and the job went back
                // to the front of the queue for another worker.
                failures += 1;
                tracing::warn!(worker = %worker.name, job = id, error = %e, failures, "worker failed; job re-queued");
                if failures >= MAX_WORKER_FAILURES {
                    tracing::error!(worker = %worker.name, "giving up on this worker for this round");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250 << failures)).await;
            }
        }
    }
    Ok(done)
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

    /// A worker that answers after `delay`, failing every job when `broken` and the jobs of
    /// uid `poison` always.
    struct Fake {
        delay: Duration,
        broken: bool,
        poison: Option<u16>,
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
                    let _ = reply.send(if self.broken || self.poison == Some(job.uid) {
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

    struct Count(Mutex<Vec<(u64, String)>>, Mutex<Vec<GivenUp>>);

    fn count() -> Arc<Count> {
        Arc::new(Count(Mutex::new(Vec::new()), Mutex::new(Vec::new())))
    }

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
        fn given_up(&self, _: &Job, given_up: &GivenUp) -> Result<(), Self::Error> {
            if let Ok(mut v) = self.1.lock() {
                v.push(given_up.clone());
            }
            Ok(())
        }
    }

    async fn handle(name: &str, delay_ms: u64, broken: bool) -> WorkerHandle {
        fake(name, delay_ms, broken, None).await
    }

    async fn fake(name: &str, delay_ms: u64, broken: bool, poison: Option<u16>) -> WorkerHandle {
        let (actor, _) = Actor::spawn(
            None,
            Fake {
                delay: Duration::from_millis(delay_ms),
                broken,
                poison,
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
            eval: Arc::new(crate::eval_sets::EvalSet::new(
                "eval",
                Vec::new(),
                String::new(),
                Vec::new(),
            )),
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
        let hooks = count();
        let done = schedule(
            &workers,
            vec![(job(1), 100), (job(2), 10), (job(3), 5)],
            hooks.clone(),
        )
        .await
        .expect("no hook error");
        assert_eq!(done.finished.len(), 3, "{done:?}");
        assert!(done.given_up.is_empty(), "{done:?}");
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
        let hooks = count();
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

    #[tokio::test]
    async fn a_job_that_fails_every_worker_is_given_up_and_the_queue_moves_on() {
        // uid 9 is the largest job, first in the queue, and fails on every worker; before the
        // fix it went back to the front each time until every worker had given up (0 trained).
        let workers = vec![
            fake("a", 5, false, Some(9)).await,
            fake("b", 5, false, Some(9)).await,
            fake("c", 5, false, Some(9)).await,
            fake("d", 5, false, Some(9)).await,
        ];
        let hooks = count();
        let jobs = vec![(job(9), 1000)]
            .into_iter()
            .chain((1..=6).map(|i| (job(i), 10)))
            .collect();
        let done = schedule(&workers, jobs, hooks.clone())
            .await
            .expect("no hook error");
        assert_eq!(
            done.finished.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6],
            "{done:?}"
        );
        let poison = &done.given_up[&9];
        assert_eq!(poison.workers.len(), MAX_JOB_WORKERS, "{poison:?}");
        let mut distinct = poison.workers.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            MAX_JOB_WORKERS,
            "distinct workers: {poison:?}"
        );
        assert!(poison.charged, "its workers trained other jobs: {poison:?}");
        assert!(
            poison.reason().contains("failed on 3 worker(s)")
                && poison.reason().contains("connection lost"),
            "{}",
            poison.reason()
        );
        assert_eq!(hooks.1.lock().expect("lock").clone(), vec![poison.clone()]);
    }

    #[tokio::test]
    async fn with_one_worker_a_poison_job_is_given_up_after_one_failure() {
        let workers = vec![fake("only", 1, false, Some(9)).await];
        let hooks = count();
        let done = schedule(
            &workers,
            vec![(job(9), 100), (job(1), 10), (job(2), 5)],
            hooks.clone(),
        )
        .await
        .expect("no hook error");
        assert_eq!(done.finished.len(), 2, "{done:?}");
        assert_eq!(done.given_up[&9].workers, vec!["only".to_string()]);
        assert!(done.given_up[&9].charged);
    }

    #[tokio::test]
    async fn when_every_worker_fails_nothing_is_charged_to_the_miners() {
        let workers = vec![handle("x", 1, true).await, handle("y", 1, true).await];
        let hooks = count();
        let done = tokio::time::timeout(
            Duration::from_secs(30),
            schedule(
                &workers,
                (1..=4).map(|i| (job(i), 10)).collect(),
                hooks.clone(),
            ),
        )
        .await
        .expect("the round ends")
        .expect("no hook error");
        assert!(done.finished.is_empty(), "{done:?}");
        assert_eq!(done.given_up.len(), 4, "{done:?}");
        assert!(
            done.given_up.values().all(|g| !g.charged),
            "no worker works, so no miner is to blame: {done:?}"
        );
    }
}
