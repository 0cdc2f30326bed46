//! One validator epoch, as data flows (`docs/architecture.md`): sync the metagraph and
//! commitments, fetch and check every dataset, drop duplicates, select what to train
//! (EvalQueue), train on the workers longest job first, collect the losses, score, emit weights,
//! persist the report. [`Validator::run_epoch`] calls one method per step.
//!
//! Every state change is written before it is acted on: a job is recorded before it is sent, its
//! outcome is stored under its cache key as it arrives, weights are queued before they are sent.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hub::Hub;
use protocol::commitment::Commitment;
use protocol::config::{ClusterConfig, ScoringPolicy};
use protocol::dataset::{parse_dataset, Dataset};
use protocol::scoring::{
    by_competition, content_duplicates, epoch_weights, loss_duplicates, moving_average,
    select_for_evaluation, split_by_share, to_u16_weights, version_key, win_rates,
    winner_takes_all, Candidate, DatasetIdentity, EpochReport, MinerLine, ScoredMiner,
};
use subtensor::{AccountId, Chain, ChainError, Metagraph, Signer};

use crate::eval_sets::EvalSets;
use crate::metrics::Metrics;
use crate::schedule::{schedule, GivenUp, JobHooks, Schedule, WorkerHandle};
use crate::state::{CacheKey, PendingWeights, State, StateError};
use crate::worker_actor::{Job, JobOutcome, ValidatedFile};

/// Why an epoch could not run (a miner's problem never is one: it is recorded as its reason).
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    /// The chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Our own hotkey is not a neuron of the subnet.
    #[error("the validator hotkey {0} is not registered on netuid {1}")]
    NotRegistered(String, u16),
    /// No worker is available.
    #[error("no worker is running")]
    NoWorkers,
}

impl From<crate::commit_reveal::CommitRevealError> for EpochError {
    fn from(e: crate::commit_reveal::CommitRevealError) -> Self {
        match e {
            crate::commit_reveal::CommitRevealError::Chain(e) => EpochError::Chain(e),
            crate::commit_reveal::CommitRevealError::State(e) => EpochError::State(e),
        }
    }
}

/// The epoch's records around each job: a job run before it is sent, the outcome under its cache
/// key when it ends.
struct EpochHooks {
    epoch: u64,
    state: Arc<State>,
    metrics: Arc<Metrics>,
    keys: HashMap<u64, CacheKey>,
}

impl JobHooks for EpochHooks {
    type Error = StateError;

    fn started(&self, job: &Job, _worker: &str) -> Result<i64, StateError> {
        let key = self
            .keys
            .get(&job.id)
            .ok_or_else(|| StateError(format!("job {} has no cache key", job.id)))?;
        self.state.begin_job(self.epoch, job.uid, &key.revision)
    }

    fn finished(
        &self,
        job: &Job,
        token: i64,
        outcome: &JobOutcome,
        worker: &str,
    ) -> Result<(), StateError> {
        let key = self
            .keys
            .get(&job.id)
            .ok_or_else(|| StateError(format!("job {} has no cache key", job.id)))?;
        self.metrics.record_outcome(job.uid, outcome);
        let json = serde_json::to_string(outcome).map_err(|e| StateError(e.to_string()))?;
        self.state.finish_job(token, key, &json, worker)
    }

    fn abandoned(
        &self,
        _job: &Job,
        token: i64,
        worker: &str,
        reason: &str,
    ) -> Result<(), StateError> {
        self.state.abandon_job(token, worker, reason)
    }

    /// A job given up after failing on several workers: when those workers trained other jobs
    /// this round, the job is what fails, and its failure is cached for the miner like any
    /// other (a job run of its own records it); otherwise nothing is cached and the report line
    /// says why.
    fn given_up(&self, job: &Job, given_up: &GivenUp) -> Result<(), StateError> {
        if !given_up.charged {
            return Ok(());
        }
        let key = self
            .keys
            .get(&job.id)
            .ok_or_else(|| StateError(format!("job {} has no cache key", job.id)))?;
        let outcome = JobOutcome::Failed(given_up.reason());
        self.metrics.record_outcome(job.uid, &outcome);
        let json = serde_json::to_string(&outcome).map_err(|e| StateError(e.to_string()))?;
        let token = self.state.begin_job(self.epoch, job.uid, &key.revision)?;
        self.state
            .finish_job(token, key, &json, &given_up.workers.join(","))
    }
}

/// Everything an epoch needs.
pub struct Validator {
    /// The configuration.
    pub config: ClusterConfig,
    /// Chain access.
    pub chain: Arc<dyn Chain>,
    /// Dataset access.
    pub hub: Arc<dyn Hub>,
    /// Persisted state.
    pub state: Arc<State>,
    /// Our hotkey.
    pub signer: Signer,
    /// The workers.
    pub workers: Vec<WorkerHandle>,
    /// The eval sets, and which competition is scored on which.
    pub eval_sets: Arc<EvalSets>,
    /// SHA-256 of the base model.
    pub model_id: String,
    /// Counters for the Prometheus endpoint.
    pub metrics: Arc<Metrics>,
    /// Job ids handed out so far.
    pub next_job: AtomicU64,
    /// Where the last epoch's report is published (`Paths::last_report`).
    pub report_file: PathBuf,
}

/// Where one miner stands during the epoch: its report line, and its checked submission while
/// it is still in the running (commitment, dataset, size in bytes).
struct Entry {
    line: MinerLine,
    dataset: Option<(Commitment, Dataset, Arc<ValidatedFile>)>,
}

/// What the sync step read: the epoch, the chain's view and the scores so far.
struct EpochStart {
    epoch: u64,
    block: u64,
    own: u16,
    metagraph: Metagraph,
    commitments: BTreeMap<AccountId, (Vec<u8>, u64)>,
    scores: BTreeMap<u16, (String, f64)>,
}

/// The stored scores of an epoch that already applied its update, for the neurons of `hotkeys`:
/// a uid whose hotkey changed since (deregistered and taken by another) starts again from 0.
fn applied_scores(
    stored: &BTreeMap<u16, (String, f64)>,
    hotkeys: &BTreeMap<u16, String>,
) -> BTreeMap<u16, (String, f64)> {
    hotkeys
        .iter()
        .map(|(uid, hotkey)| {
            let score = match stored.get(uid) {
                Some((h, s)) if h == hotkey => *s,
                _ => 0.0,
            };
            (*uid, (hotkey.clone(), score))
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half
/// a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl Validator {
    /// The loss cache key of `commitment`: its revision, its competition's eval set, the model,
    /// and its competition with that competition's training settings.
    fn cache_key(&self, commitment: &Commitment) -> CacheKey {
        CacheKey {
            revision: commitment.revision.clone(),
            eval_hash: self
                .eval_sets
                .for_competition(&commitment.competition_id)
                .hash()
                .to_string(),
            model_id: self.model_id.clone(),
            config_hash: self.config.training_hash_for(&commitment.competition_id),
        }
    }

    /// Runs (or resumes) one epoch and returns its report: the steps below, in order.
    pub async fn run_epoch(&self) -> Result<EpochReport, EpochError> {
        let start = self.sync().await?;
        let mut entries = self.fetch_and_check(&start).await;
        self.drop_content_duplicates(&mut entries);
        let jobs = self.select(&entries, &start.scores)?;
        let Schedule {
            finished: trained_by,
            given_up,
        } = self.train(start.epoch, jobs).await?;
        let (scored, cached) = self.collect_losses(&mut entries, &trained_by, &given_up)?;
        let scored = self.drop_loss_duplicates(&mut entries, scored);
        let emission = self.score(start.epoch, &mut entries, &scored, &start.scores)?;
        let (weights_block, weights_note) = self.emit_weights(&start, &emission).await?;
        self.persist(EpochReport {
            epoch: start.epoch,
            block: start.block,
            trained: trained_by.len(),
            cached,
            weights_block,
            weights_note,
            miners: entries.into_values().map(|e| e.line).collect(),
        })
    }

    /// Sync: the metagraph, our own uid, the epoch (a new one, or the unfinished one to resume),
    /// every commitment by hotkey, and the moving-average scores so far.
    async fn sync(&self) -> Result<EpochStart, EpochError> {
        let netuid = self.config.netuid;
        let metagraph = self.chain.metagraph(netuid).await?;
        let me = self.signer.account();
        let own = metagraph
            .neuron_of(&me)
            .ok_or_else(|| EpochError::NotRegistered(me.to_ss58(), netuid))?
            .uid;
        let (epoch, block) = match self.state.open_epoch()? {
            Some(open) => {
                tracing::info!(epoch = open.0, "resuming an unfinished epoch");
                open
            }
            None => (self.state.begin_epoch(metagraph.block)?, metagraph.block),
        };
        self.metrics.epoch.store(epoch, Ordering::Relaxed);
        let commitments = self
            .chain
            .commitments(netuid)
            .await?
            .into_iter()
            .map(|c| (c.hotkey, (c.data, c.block)))
            .collect();
        let scores = self.state.scores()?;
        Ok(EpochStart {
            epoch,
            block,
            own,
            metagraph,
            commitments,
            scores,
        })
    }

    /// Fetch and check: every other neuron's commitment parsed, its dataset fetched at the
    /// committed revision and validated, `[hub] parallel_downloads` at a time. Every submission is
    /// fetched before anything is trained, since the duplicate rule compares them all. A miner's
    /// failure is its line's reason.
    async fn fetch_and_check(&self, start: &EpochStart) -> BTreeMap<u16, Entry> {
        let miners: Vec<_> = start
            .metagraph
            .neurons
            .iter()
            .filter(|n| n.uid != start.own)
            .map(|n| {
                (
                    n.uid,
                    n.hotkey.to_ss58(),
                    start.commitments.get(&n.hotkey).cloned(),
                )
            })
            .collect();
        let epoch = start.epoch;
        let checks =
            futures::stream::iter(miners.into_iter().map(|(uid, hotkey, found)| async move {
                let mut line = MinerLine {
                    uid,
                    hotkey,
                    commit_block: None,
                    rows: None,
                    eval_loss: None,
                    cached: false,
                    win_rate: None,
                    epoch_weight: 0.0,
                    score: 0.0,
                    weight_u16: 0,
                    reason: String::new(),
                    worker: None,
                    competition: None,
                };
                let dataset = match found {
                    None => {
                        line.reason = "no commitment".into();
                        None
                    }
                    Some((data, commit_block)) => {
                        line.commit_block = Some(commit_block);
                        match self
                            .check_submission(uid, &line.hotkey, &data, commit_block, epoch)
                            .await
                        {
                            Ok((commitment, dataset, bytes)) => {
                                line.rows = Some(dataset.rows.len());
                                if !self.config.competitions.is_empty() {
                                    line.competition = Some(commitment.competition_id.clone());
                                }
                                Some((commitment, dataset, bytes))
                            }
                            Err(reason) => {
                                line.reason = reason;
                                None
                            }
                        }
                    }
                };
                Entry { line, dataset }
            }))
            .buffer_unordered(self.config.hub.parallel_downloads.max(1));
        checks.map(|e| (e.line.uid, e)).collect().await
    }

    /// Duplicates by content, before anything is trained: a later copy keeps no dataset.
    fn drop_content_duplicates(&self, entries: &mut BTreeMap<u16, Entry>) {
        let identities: Vec<DatasetIdentity<'_>> = entries
            .values()
            .filter_map(|e| {
                e.dataset.as_ref().map(|(_, d, _)| DatasetIdentity {
                    uid: e.line.uid,
                    commit_block: e.line.commit_block.unwrap_or(u64::MAX),
                    content_hash: &d.content_hash,
                    rows: &d.canonical,
                })
            })
            .collect();
        let duplicates = content_duplicates(&identities, self.config.scoring.duplicate_overlap);
        for (uid, original) in &duplicates {
            if let Some(e) = entries.get_mut(uid) {
                e.line.reason = format!("duplicate of uid {original}");
                e.dataset = None;
            }
        }
    }

    /// Select (the EvalQueue): the valid submissions without a loss under the current cache
    /// key, in queue order, at most `max_miners_per_epoch`, as jobs with their cache keys and
    /// dataset sizes.
    fn select(
        &self,
        entries: &BTreeMap<u16, Entry>,
        scores: &BTreeMap<u16, (String, f64)>,
    ) -> Result<Vec<(Job, CacheKey, usize)>, EpochError> {
        let mut candidates = Vec::new();
        for e in entries.values() {
            if let Some((commitment, _, _)) = &e.dataset {
                if self
                    .state
                    .cached_outcome(&self.cache_key(commitment))?
                    .is_none()
                {
                    candidates.push(Candidate {
                        uid: e.line.uid,
                        commit_block: e.line.commit_block.unwrap_or(u64::MAX),
                        ever_evaluated: self.state.ever_evaluated(&commitment.revision)?,
                        score: scores.get(&e.line.uid).map_or(0.0, |s| s.1),
                    });
                }
            }
        }
        let selected =
            select_for_evaluation(&candidates, self.config.coordinator.max_miners_per_epoch);
        Ok(selected
            .iter()
            .filter_map(|uid| {
                let (commitment, dataset, file) = entries.get(uid)?.dataset.as_ref()?;
                Some((
                    Job {
                        id: self.next_job.fetch_add(1, Ordering::Relaxed),
                        uid: *uid,
                        rows: dataset.rows.clone(),
                        file: file.clone(),
                        config: self.config.training_for(&commitment.competition_id),
                        eval: self
                            .eval_sets
                            .for_competition(&commitment.competition_id)
                            .clone(),
                        timeout: Duration::from_secs(self.config.coordinator.job_timeout_secs),
                    },
                    self.cache_key(commitment),
                    file.bytes.len(),
                ))
            })
            .collect())
    }

    /// Collect: every valid submission's outcome under the current cache key (trained now or
    /// cached), as the scored field and the number of cached losses used; a failed, timed-out,
    /// given-up or still-queued submission gets its reason.
    fn collect_losses(
        &self,
        entries: &mut BTreeMap<u16, Entry>,
        trained_by: &BTreeMap<u16, String>,
        given_up: &BTreeMap<u16, GivenUp>,
    ) -> Result<(Vec<ScoredMiner>, usize), EpochError> {
        let mut scored = Vec::new();
        let mut cached = 0;
        for e in entries.values_mut() {
            let Some((commitment, _, _)) = &e.dataset else {
                continue;
            };
            let Some(json) = self.state.cached_outcome(&self.cache_key(commitment))? else {
                e.line.reason = match given_up.get(&e.line.uid) {
                    Some(g) => format!(
                        "not trained this epoch (not charged: its workers trained nothing else): {}",
                        g.reason()
                    ),
                    None => "waiting in the EvalQueue".into(),
                };
                continue;
            };
            e.line.worker = trained_by
                .get(&e.line.uid)
                .cloned()
                .or_else(|| given_up.get(&e.line.uid).map(|g| g.workers.join(",")));
            e.line.cached = e.line.worker.is_none();
            match serde_json::from_str::<JobOutcome>(&json) {
                Ok(JobOutcome::Done(report)) if !report.eval_loss.is_finite() => {
                    e.line.reason = format!("eval loss is not finite ({})", report.eval_loss)
                }
                Ok(JobOutcome::Done(report)) => {
                    cached += usize::from(e.line.cached);
                    e.line.eval_loss = Some(report.eval_loss);
                    scored.push(ScoredMiner {
                        uid: e.line.uid,
                        commit_block: e.line.commit_block.unwrap_or(u64::MAX),
                        eval_loss: report.eval_loss,
                    });
                }
                Ok(JobOutcome::Failed(reason)) => {
                    e.line.reason = format!("training failed: {reason}")
                }
                Ok(JobOutcome::TimedOut { limit_secs }) => {
                    e.line.reason = format!("training timed out after {limit_secs} s")
                }
                Err(err) => e.line.reason = format!("unreadable cached outcome: {err}"),
            }
        }
        Ok((scored, cached))
    }

    /// The competitions of the scored field, each with its miners. Without a `[[competitions]]`
    /// table every commitment is scored together (under the id ""), whatever id it names.
    fn by_competition(
        &self,
        entries: &BTreeMap<u16, Entry>,
        scored: &[ScoredMiner],
    ) -> BTreeMap<String, Vec<ScoredMiner>> {
        by_competition(scored, |uid| {
            match entries.get(&uid).and_then(|e| e.dataset.as_ref()) {
                Some((c, _, _)) if !self.config.competitions.is_empty() => c.competition_id.clone(),
                _ => String::new(),
            }
        })
    }

    /// Duplicates by loss, after training: the later of two equal losses of one competition
    /// leaves the field (losses of different competitions come from different eval sets or
    /// settings, so equal ones are no sign of a copy).
    fn drop_loss_duplicates(
        &self,
        entries: &mut BTreeMap<u16, Entry>,
        mut scored: Vec<ScoredMiner>,
    ) -> Vec<ScoredMiner> {
        let loss_dups: BTreeMap<u16, u16> = self
            .by_competition(entries, &scored)
            .values()
            .flat_map(|group| loss_duplicates(group, self.config.scoring.duplicate_loss_rel))
            .collect();
        scored.retain(|m| !loss_dups.contains_key(&m.uid));
        for (uid, original) in &loss_dups {
            if let Some(e) = entries.get_mut(uid) {
                e.line.reason = format!("duplicate of uid {original} (equal loss)");
            }
        }
        scored
    }

    /// Score: win rates and epoch weights under the `[scoring]` policy within each
    /// competition, the emission split between competitions by share ([`split_by_share`]), the
    /// new moving-average scores (stored), and the u16 emission they give; every line gets its
    /// numbers.
    ///
    /// The update is applied once per epoch: the scores are stored together with the epoch they
    /// include. An epoch resumed after a failure or a crash between this step and its end (a
    /// failed `set_weights`, Ctrl-C) finds its own update already stored and uses those scores
    /// as they are (`docs/scoring.md`).
    fn score(
        &self,
        epoch: u64,
        entries: &mut BTreeMap<u16, Entry>,
        scored: &[ScoredMiner],
        scores: &BTreeMap<u16, (String, f64)>,
    ) -> Result<Vec<(u16, u16)>, EpochError> {
        let s = &self.config.scoring;
        let hotkeys: BTreeMap<u16, String> = entries
            .values()
            .map(|e| (e.line.uid, e.line.hotkey.clone()))
            .collect();
        let groups = self.by_competition(entries, scored);
        let shares = self.config.competition_shares();
        let (epoch_w, new_scores) = match s.policy {
            ScoringPolicy::WinRate => {
                let mut per_competition = BTreeMap::new();
                for (id, group) in &groups {
                    let rates = win_rates(group, s.epsilon);
                    for (uid, rate) in &rates {
                        if let Some(e) = entries.get_mut(uid) {
                            e.line.win_rate = Some(*rate);
                        }
                    }
                    per_competition.insert(id.clone(), epoch_weights(&rates, s.temperature));
                }
                let w = split_by_share(&per_competition, &shares);
                let new = moving_average(scores, &w, &hotkeys, s.alpha);
                (w, new)
            }
            ScoringPolicy::WinnerTakesAll => {
                let per_competition = groups
                    .iter()
                    .map(|(id, group)| {
                        let w: BTreeMap<u16, f64> = winner_takes_all(group)
                            .into_iter()
                            .map(|u| (u, 1.0))
                            .collect();
                        (id.clone(), w)
                    })
                    .collect();
                let w = split_by_share(&per_competition, &shares);
                let new = hotkeys
                    .iter()
                    .map(|(uid, h)| (*uid, (h.clone(), w.get(uid).copied().unwrap_or(0.0))))
                    .collect();
                (w, new)
            }
        };
        let new_scores = if self.state.scores_epoch()? == Some(epoch) {
            tracing::info!(
                epoch,
                "this epoch's scores were already applied; not applying them again"
            );
            applied_scores(scores, &hotkeys)
        } else {
            self.state.set_scores(epoch, &new_scores)?;
            new_scores
        };
        let score_map: BTreeMap<u16, f64> = new_scores.iter().map(|(u, (_, s))| (*u, *s)).collect();
        let emission = to_u16_weights(&score_map);
        for e in entries.values_mut() {
            e.line.epoch_weight = epoch_w.get(&e.line.uid).copied().unwrap_or(0.0);
            e.line.score = score_map.get(&e.line.uid).copied().unwrap_or(0.0);
            e.line.weight_u16 = emission
                .iter()
                .find(|(u, _)| *u == e.line.uid)
                .map_or(0, |(_, v)| *v);
        }
        Ok(emission)
    }

    /// Emit: the emission with `max(ours, chain's)` version key, set or committed within the
    /// rate limit. Returns the inclusion block, or a note saying why nothing was sent.
    async fn emit_weights(
        &self,
        start: &EpochStart,
        emission: &[(u16, u16)],
    ) -> Result<(Option<u64>, String), EpochError> {
        let params = &start.metagraph.params;
        let key = version_key(self.config.scoring.version_key, params.weights_version_key);
        self.emit(
            start.epoch,
            start.own,
            emission,
            key,
            params.weights_rate_limit,
            params.commit_reveal_enabled,
        )
        .await
    }

    /// Persist: the report closes the epoch in the state, then is published as the report file
    /// (for readers that must not open the database) and to the metrics.
    fn persist(&self, report: EpochReport) -> Result<EpochReport, EpochError> {
        let json = serde_json::to_string(&report).map_err(|e| StateError(e.to_string()))?;
        self.state.finish_epoch(report.epoch, &json)?;
        if let Err(e) = write_atomically(&self.report_file, json.as_bytes()) {
            tracing::warn!(file = %self.report_file.display(), error = %e, "the epoch report file was not written");
        }
        self.metrics.record_report(&report);
        Ok(report)
    }

    /// Parses, fetches and validates one miner's submission; the error is the miner's reason.
    async fn check_submission(
        &self,
        uid: u16,
        hotkey: &str,
        data: &[u8],
        commit_block: u64,
        epoch: u64,
    ) -> Result<(Commitment, Dataset, Arc<ValidatedFile>), String> {
        let commitment = Commitment::from_bytes(data).map_err(|e| e.to_string())?;
        self.state
            .record_submission(uid, hotkey, &commitment.to_string(), commit_block, epoch)
            .map_err(|e| e.to_string())?;
        self.config.competition(&commitment.competition_id)?;
        let limits = &self.config.dataset;
        let bytes = self
            .hub
            .fetch(
                &commitment.repo,
                &commitment.revision,
                limits.max_file_bytes,
            )
            .await
            .map_err(|e| format!("fetch {}: {e}", commitment.repo))?;
        let dataset = parse_dataset(&bytes, limits).map_err(|e| format!("invalid dataset: {e}"))?;
        // Remote workers get these bytes and limits, and read the same rows from them.
        let file = Arc::new(ValidatedFile {
            bytes: dataset.used_bytes(&bytes).to_vec(),
            limits: limits.clone(),
            content_hash: dataset.content_hash.clone(),
        });
        Ok((commitment, dataset, file))
    }

    /// Runs jobs on the workers ([`schedule`]): every job is recorded before it is sent and its
    /// outcome stored under its cache key as it arrives. Returns uid → worker, and the jobs
    /// given up.
    async fn train(
        &self,
        epoch: u64,
        jobs: Vec<(Job, CacheKey, usize)>,
    ) -> Result<Schedule, EpochError> {
        if jobs.is_empty() {
            return Ok(Schedule::default());
        }
        if self.workers.is_empty() {
            return Err(EpochError::NoWorkers);
        }
        let keys = jobs
            .iter()
            .map(|(job, key, _)| (job.id, key.clone()))
            .collect();
        let hooks = Arc::new(EpochHooks {
            epoch,
            state: self.state.clone(),
            metrics: self.metrics.clone(),
            keys,
        });
        let jobs = jobs.into_iter().map(|(job, _, size)| (job, size)).collect();
        Ok(schedule(&self.workers, jobs, hooks).await?)
    }

    /// Sets weights when the rate limit allows: queued in the state first, then sent, then marked
    /// sent. Returns the inclusion block, or a note saying why nothing was sent.
    async fn emit(
        &self,
        epoch: u64,
        own: u16,
        emission: &[(u16, u16)],
        version_key: u64,
        rate_limit: u64,
        commit_reveal: bool,
    ) -> Result<(Option<u64>, String), EpochError> {
        if emission.is_empty() {
            return Ok((None, "no miner has a positive score".into()));
        }
        if commit_reveal {
            return self.commit(emission, version_key, rate_limit).await;
        }
        let now = self.chain.current_block().await?;
        if let (_, Some(last)) = self.chain.weights(self.config.netuid, own).await? {
            let since = now.saturating_sub(last);
            if since < rate_limit {
                return Ok((
                    None,
                    format!(
                        "rate limited: last set at block {last}, {} block(s) to wait",
                        rate_limit - since
                    ),
                ));
            }
        }
        self.state.queue_weights(&PendingWeights {
            epoch,
            weights: emission.to_vec(),
            version_key,
            created_block: now,
        })?;
        let (uids, values): (Vec<u16>, Vec<u16>) = emission.iter().copied().unzip();
        match self
            .chain
            .set_weights(
                &self.signer,
                self.config.netuid,
                &uids,
                &values,
                version_key,
            )
            .await
        {
            Ok(block) => {
                self.state.mark_weights_sent(epoch, block)?;
                Ok((Some(block), String::new()))
            }
            Err(ChainError::RateLimited { blocks_left }) => Ok((
                None,
                format!("rate limited: {blocks_left} block(s) to wait"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Commit-reveal emission: reveals what is due, then commits these weights unless an
    /// earlier commit still waits for its reveal or the rate limit says wait. Returns the
    /// commit's block, or a note.
    async fn commit(
        &self,
        emission: &[(u16, u16)],
        version_key: u64,
        rate_limit: u64,
    ) -> Result<(Option<u64>, String), EpochError> {
        let netuid = self.config.netuid;
        let summary = crate::commit_reveal::reveal_due(
            self.chain.as_ref(),
            &self.state,
            &self.signer,
            netuid,
        )
        .await?;
        if let Some((block, reveal_epoch)) = summary.waiting.first() {
            let at = block.map_or("an earlier block".to_string(), |b| format!("block {b}"));
            return Ok((
                None,
                format!("the commit of {at} waits for its reveal in epoch {reveal_epoch}"),
            ));
        }
        let metagraph = self.chain.metagraph(netuid).await?;
        let own = metagraph.neuron_of(&self.signer.account());
        if let Some(last) = own.map(|n| n.last_update).filter(|b| *b > 0) {
            let since = metagraph.block.saturating_sub(last);
            if since < rate_limit {
                return Ok((
                    None,
                    format!(
                        "rate limited: last update at block {last}, {} block(s) to wait",
                        rate_limit - since
                    ),
                ));
            }
        }
        match crate::commit_reveal::commit(
            self.chain.as_ref(),
            &self.state,
            &self.signer,
            netuid,
            emission,
            version_key,
        )
        .await
        {
            Ok(block) => Ok((
                Some(block),
                format!(
                    "committed (revealed {} epoch(s) later)",
                    metagraph.params.reveal_period
                ),
            )),
            Err(crate::commit_reveal::CommitRevealError::Chain(ChainError::RateLimited {
                blocks_left,
            })) => Ok((
                None,
                format!("rate limited: {blocks_left} block(s) to wait"),
            )),
            // A chain without hash commit-reveal (the devnet) says so; the epoch still ends.
            Err(crate::commit_reveal::CommitRevealError::Chain(
                e @ ChainError::Invalid {
                    call: "commit_weights",
                    ..
                },
            )) => Ok((None, e.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}
