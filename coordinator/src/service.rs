//! Running a validator: bootstrap from `cluster.toml`, start the worker actors and the
//! `Coordinator` actor, run epochs until done, Ctrl-C or SIGTERM, shut down cleanly.
//!
//! The service stays up (`docs/architecture.md`, "A service that stays up"): the chain and the
//! hub are waited for at start-up, chain reads are retried inside an epoch
//! ([`RetryingChain`]), a failed epoch is retried with backoff when the failure was transient
//! and reported when it was permanent ([`crate::failure`]). Only invalid configuration ends
//! the process with an error.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use protocol::config::{ClusterConfig, Paths};
use ractor::Actor;
use tokio::sync::watch;

use crate::actor::{Coordinator, CoordinatorMsg};
use crate::backoff::Backoff;
use crate::bootstrap;
use crate::epoch::Validator;
use crate::eval_sets::{EvalSet, EvalSets};
use crate::failure::{self, Severity};
use crate::metrics::Metrics;
use crate::remote::RemoteArgs;
use crate::retrying_chain::RetryingChain;
use crate::schedule::WorkerHandle;
use crate::state::State;
use crate::supervisor::{ActorSlot, ProxySupervisor, SupervisorMsg};
use crate::worker_actor::{unix_now, WorkerActor, WorkerArgs, WorkerStatus};
use protocol::config::Mode;
use protocol::scoring::EpochReport;
use protocol::transport::{Identity, Timeouts};
use subtensor::Chain;
use subtensor::Signer;

/// How long one chain read is retried inside an epoch before the epoch gives up (and is itself
/// retried).
const CHAIN_READ_BUDGET: Duration = Duration::from_secs(600);

/// The signal that stopped the service, once one came (`Ctrl-C` or `SIGTERM`).
type StopSignal = watch::Receiver<Option<&'static str>>;

/// One listener for Ctrl-C and SIGTERM for the whole run, so a signal between two waits is
/// not lost.
fn stop_signal() -> Result<StopSignal> {
    let (tx, rx) = watch::channel(None);
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot listen for SIGTERM: {e}"))?;
    tokio::spawn(async move {
        #[cfg(unix)]
        let name = tokio::select! {
            r = tokio::signal::ctrl_c() => r.ok().map(|_| "Ctrl-C"),
            r = term.recv() => r.map(|_| "SIGTERM"),
        };
        #[cfg(not(unix))]
        let name = tokio::signal::ctrl_c().await.ok().map(|_| "Ctrl-C");
        if let Some(name) = name {
            let _ = tx.send(Some(name));
        }
    });
    Ok(rx)
}

/// Sleeps `delay` unless a stop signal comes first; `false` when it did.
async fn sleep_or_stop(delay: Duration, stop: &mut StopSignal) -> bool {
    if stop.borrow().is_some() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stop.changed() => false,
    }
}

/// Runs a start-up step until it succeeds, retrying while `classify` calls its failure
/// transient (each try logged with its cause and the next delay). `Ok(None)`: stopped by a
/// signal while waiting.
async fn until_up<T, F, Fut>(
    what: &str,
    stop: &mut StopSignal,
    classify: impl Fn(&anyhow::Error) -> Severity,
    mut step: F,
) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        if stop.borrow().is_some() {
            return Ok(None);
        }
        let result = tokio::select! {
            r = step() => r,
            _ = stop.changed() => return Ok(None),
        };
        match result {
            Ok(v) => return Ok(Some(v)),
            Err(e) if classify(&e) == Severity::Transient => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    step = what,
                    attempt = backoff.attempts(),
                    cause = %format!("{e:#}"),
                    next_try_in_ms = delay.as_millis() as u64,
                    "start-up step failed, retrying"
                );
                if !sleep_or_stop(delay, stop).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A start-up chain failure: transient when the node did not answer.
fn classify_chain_startup(e: &anyhow::Error) -> Severity {
    if let Some(e) = e.downcast_ref::<subtensor::Error>() {
        failure::of_subtensor(e)
    } else if let Some(e) = e.downcast_ref::<subtensor::ChainError>() {
        failure::of_chain(e)
    } else {
        Severity::Permanent
    }
}

/// A start-up hub failure (model, eval set): transient when the hub did not answer.
fn classify_hub_startup(e: &anyhow::Error) -> Severity {
    match e.downcast_ref::<hub::resolve::ResolveError>() {
        Some(hub::resolve::ResolveError::Model { source, .. })
        | Some(hub::resolve::ResolveError::EvalSetDownload { source, .. }) => {
            failure::of_hub(source)
        }
        _ => Severity::Permanent,
    }
}

/// Runs validator epochs from `config` until `epochs` have ended or Ctrl-C / SIGTERM, handing
/// each report to `on_report`; shuts the actors down cleanly either way and returns `Ok` on a
/// signal. With `epochs`, an epoch that failed permanently counts as ended, and the run fails
/// when the last one did.
pub async fn run_validator(
    config: ClusterConfig,
    config_path: &std::path::Path,
    epochs: Option<u64>,
    mut on_report: impl FnMut(&EpochReport),
) -> Result<()> {
    let mut stop = stop_signal()?;
    let paths = Paths::new(&config, config_path);
    let state = Arc::new(State::open(&paths.state_db())?);
    let (hub, hub_client) = hub::resolve::dataset_hub(&config, &paths)?;
    let (chain, signer): (Arc<dyn Chain>, Signer) = if config.mode == Mode::Devnet {
        let (chain, signer) = bootstrap::devnet(&config, &paths, hub.clone()).await?;
        (chain, signer)
    } else {
        let wallet = subtensor::args::wallet(&config);
        let signer = subtensor::wallet::load_hotkey(&wallet)
            .map_err(|e| anyhow::anyhow!("validator wallet: {e}"))?;
        let connect = || subtensor::args::connect(&config);
        let Some(client) =
            until_up("subtensor", &mut stop, classify_chain_startup, connect).await?
        else {
            return stopped(&state, &stop);
        };
        let chain: Arc<dyn Chain> = Arc::new(RetryingChain::new(
            client,
            Duration::from_secs(1),
            Duration::from_secs(30),
            CHAIN_READ_BUDGET,
        ));
        subtensor::args::check_registered(chain.as_ref(), config.netuid, &signer).await?;
        (chain, signer)
    };
    let client = hub_client.as_ref();
    let model = || bootstrap::model(&config, &paths, client);
    let Some(model_dir) = until_up("model", &mut stop, classify_hub_startup, model).await? else {
        return stopped(&state, &stop);
    };
    let mut eval_paths = std::collections::BTreeMap::new();
    for spec in config.eval_sets() {
        let eval =
            || async { Ok(hub::resolve::eval_set_path_of(spec, &config, &paths, client).await?) };
        let Some(path) = until_up("eval set", &mut stop, classify_hub_startup, eval).await? else {
            return stopped(&state, &stop);
        };
        eval_paths.insert(spec.to_string(), path);
    }
    let eval_sets = Arc::new(EvalSets::from_config(&config, |spec| {
        let (rows, hash, bytes) = hub::resolve::eval_set(&config, &eval_paths[spec])?;
        tracing::info!(eval_set = spec, rows = rows.len(), hash = %hash, "eval set");
        Ok::<_, anyhow::Error>(EvalSet::new(spec, rows, hash, bytes))
    })?);
    let model_id = worker::checkpoint::model_id(&model_dir)?;
    tracing::info!(validator = %signer.account(), eval_sets = eval_sets.distinct().len(), model = %model_dir.display(), "starting");
    let mut workers = Vec::new();
    for (i, w) in config.workers.iter().enumerate() {
        let status = Arc::new(Mutex::new(WorkerStatus::default()));
        let args = WorkerArgs {
            device: w.device.parse()?,
            model_dir: model_dir.clone(),
            status: status.clone(),
            cancel_grace: Duration::from_millis(config.cluster.worker_timeout_ms),
        };
        let name = format!("{}#{i}", w.device);
        let (actor, _) = Actor::spawn(None, WorkerActor, args)
            .await
            .map_err(|e| anyhow::anyhow!("worker {name}: {e}"))?;
        workers.push(WorkerHandle {
            name,
            actor: ActorSlot::new(actor),
            status,
        });
    }
    let mut supervisors = Vec::new();
    if !config.remote_workers.is_empty() {
        let pki = paths.resolve(&config.cluster.pki_dir);
        let identity = Identity::load(
            &pki.join("coordinator.cert.der"),
            &pki.join("coordinator.key.der"),
        )
        .map_err(|e| anyhow::anyhow!("{e} (run `coordinator keygen`)"))?;
        let (supervisor, _) = Actor::spawn(None, ProxySupervisor, ())
            .await
            .map_err(|e| anyhow::anyhow!("proxy supervisor: {e}"))?;
        supervisors.push(supervisor.clone());
        for w in &config.remote_workers {
            let args = RemoteArgs {
                id: w.id.clone(),
                address: w.address.parse()?,
                fingerprint: w.fingerprint.clone(),
                identity: identity.clone(),
                timeouts: Timeouts {
                    keep_alive: config.cluster.keep_alive(),
                    idle: config.cluster.idle_timeout(),
                },
                heartbeat: Duration::from_millis(config.cluster.heartbeat_ms),
                worker_timeout: Duration::from_millis(config.cluster.worker_timeout_ms),
                expected_model: Some(model_id.clone()),
                status: Arc::new(Mutex::new(WorkerStatus::default())),
            };
            let status = args.status.clone();
            let actor = ractor::call!(supervisor, SupervisorMsg::Supervise, Box::new(args))
                .map_err(|e| anyhow::anyhow!("remote worker {}: {e}", w.id))?
                .map_err(|e| anyhow::anyhow!(e))?;
            workers.push(WorkerHandle {
                name: w.id.clone(),
                actor,
                status,
            });
        }
    }
    let metrics = Arc::new(Metrics::default());
    if !config.coordinator.metrics_listen.is_empty() {
        crate::metrics::serve(config.coordinator.metrics_listen.parse()?, metrics.clone()).await?;
    }
    // Publish the workers' status for `coordinator workers`, every two seconds.
    {
        let (state, workers) = (state.clone(), workers.clone());
        tokio::spawn(async move {
            loop {
                let snapshot: Vec<WorkerStatus> = workers
                    .iter()
                    .filter_map(|w| w.status.lock().ok().map(|s| s.clone()))
                    .collect();
                let json = serde_json::json!({ "at": unix_now(), "workers": snapshot });
                if state.set_meta("workers", &json.to_string()).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
    // Reveal weight commits when their epoch comes, also while an epoch is training.
    if config.mode != Mode::Devnet {
        let (chain, state, signer, netuid) =
            (chain.clone(), state.clone(), signer.clone(), config.netuid);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(12)).await;
                match crate::commit_reveal::reveal_due(chain.as_ref(), &state, &signer, netuid)
                    .await
                {
                    Ok(summary) if !summary.revealed.is_empty() => {
                        tracing::info!(blocks = ?summary.revealed, "weights revealed")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "revealing weight commits"),
                }
            }
        });
    }
    let interval = Duration::from_secs(config.coordinator.epoch_interval_secs);
    let validator = Validator {
        config,
        chain,
        hub,
        state: state.clone(),
        signer,
        workers: workers.clone(),
        eval_sets,
        model_id,
        metrics,
        next_job: AtomicU64::new(1),
        report_file: paths.last_report(),
    };
    let (coordinator, handle) = Actor::spawn(None, Coordinator, validator)
        .await
        .map_err(|e| anyhow::anyhow!("coordinator: {e}"))?;
    // Transient failures are retried at most every interval (and at least every 2 minutes).
    let mut retry = Backoff::new(
        Duration::from_secs(2),
        interval.clamp(Duration::from_secs(2), Duration::from_secs(120)),
    );
    let mut ended = 0u64;
    let mut last_failure = None;
    let result = loop {
        if stop.borrow().is_some() {
            break Ok(());
        }
        let epoch = async { ractor::call!(coordinator, CoordinatorMsg::RunEpoch) };
        let outcome = tokio::select! {
            r = epoch => r,
            _ = stop.changed() => break Ok(()),
        };
        let delay = match outcome {
            Ok(Ok(report)) => {
                retry.reset();
                last_failure = None;
                on_report(&report);
                ended += 1;
                interval
            }
            Ok(Err(e)) if failure::of_epoch(&e) == Severity::Transient => {
                let delay = retry.next_delay();
                tracing::warn!(
                    cause = %e,
                    attempt = retry.attempts(),
                    next_try_in_ms = delay.as_millis() as u64,
                    "epoch interrupted by a transient failure; it resumes after the delay"
                );
                delay
            }
            Ok(Err(e)) => {
                retry.reset();
                tracing::error!(
                    cause = %e,
                    next_epoch_in_s = interval.as_secs(),
                    "epoch failed; fix the cause on chain or in the wallet, the next epoch tries again"
                );
                let json = serde_json::json!({ "at": unix_now(), "error": e.to_string() });
                if let Err(e) = state.set_meta("last_epoch_error", &json.to_string()) {
                    tracing::warn!(error = %e, "recording the epoch failure");
                }
                last_failure = Some(e.to_string());
                ended += 1;
                interval
            }
            Err(e) => break Err(anyhow::anyhow!("coordinator: {e}")),
        };
        if epochs.is_some_and(|n| ended >= n) {
            break match last_failure.take() {
                Some(e) => Err(anyhow::anyhow!("epoch failed: {e}")),
                None => Ok(()),
            };
        }
        if !sleep_or_stop(delay, &mut stop).await {
            break Ok(());
        }
    };
    let signal = *stop.borrow();
    tracing::info!(signal = signal.unwrap_or("none"), "shutting down");
    // An epoch cut short by a signal stays open in the state and resumes on the next start; its
    // finished jobs are cached, the one in progress is trained again.
    if signal.is_some() {
        coordinator.kill();
        for s in &supervisors {
            s.kill();
        }
        for w in &workers {
            w.actor.current().kill();
        }
    } else {
        coordinator.stop(None);
        for s in &supervisors {
            s.stop(None);
        }
        for w in &workers {
            w.actor.current().stop(None);
        }
    }
    let _ = handle.await;
    record_shutdown(&state, signal);
    result
}

/// Records in the state why and when the service stopped (`meta.last_shutdown`). Every write
/// before it was committed with `synchronous = FULL`, so nothing is left unflushed.
fn record_shutdown(state: &State, signal: Option<&str>) {
    let json = serde_json::json!({ "at": unix_now(), "signal": signal });
    if let Err(e) = state.set_meta("last_shutdown", &json.to_string()) {
        tracing::warn!(error = %e, "recording the shutdown");
    }
}

/// The end of a run stopped by a signal during start-up.
fn stopped(state: &State, stop: &StopSignal) -> Result<()> {
    let signal = *stop.borrow();
    tracing::info!(signal = signal.unwrap_or("none"), "stopped during start-up");
    record_shutdown(state, signal);
    Ok(())
}
