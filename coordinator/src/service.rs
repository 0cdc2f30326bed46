//! Running a validator: bootstrap from `cluster.toml`, start the worker actors and the
//! `Coordinator` actor, run epochs until done or Ctrl-C, shut down cleanly.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use protocol::config::{ClusterConfig, Paths};
use ractor::Actor;

use crate::actor::{Coordinator, CoordinatorMsg};
use crate::bootstrap;
use crate::epoch::Validator;
use crate::metrics::Metrics;
use crate::remote::RemoteArgs;
use crate::schedule::WorkerHandle;
use crate::state::State;
use crate::supervisor::{ActorSlot, ProxySupervisor, SupervisorMsg};
use crate::worker_actor::{unix_now, WorkerActor, WorkerArgs, WorkerStatus};
use protocol::config::Mode;
use protocol::scoring::EpochReport;
use protocol::transport::{Identity, Timeouts};
use protocol::wire::EvalSetData;
use subtensor::Chain;
use subtensor::Signer;
use worker::runner::EvalRows;

/// Runs validator epochs from `config` until `epochs` are done or Ctrl-C, handing each report
/// to `on_report`; shuts the actors down cleanly either way.
pub async fn run_validator(
    config: ClusterConfig,
    config_path: &std::path::Path,
    epochs: Option<u64>,
    mut on_report: impl FnMut(&EpochReport),
) -> Result<()> {
    let paths = Paths::new(&config, config_path);
    let state = Arc::new(State::open(&paths.state_db())?);
    let (hub, hub_client) = hub::resolve::dataset_hub(&config, &paths)?;
    let (chain, signer): (Arc<dyn Chain>, Signer) = if config.mode == Mode::Devnet {
        let (chain, signer) = bootstrap::devnet(&config, &paths, hub.clone()).await?;
        (chain, signer)
    } else {
        let (chain, signer) = bootstrap::subtensor_validator(&config).await?;
        (chain, signer)
    };
    let model_dir = bootstrap::model(&config, &paths, hub_client.as_ref()).await?;
    let eval_path = hub::resolve::eval_set_path(&config, &paths, hub_client.as_ref()).await?;
    let (eval_rows, eval_hash, eval_bytes) = hub::resolve::eval_set(&config, &eval_path)?;
    let model_id = worker::checkpoint::model_id(&model_dir)?;
    tracing::info!(validator = %signer.account(), eval_rows = eval_rows.len(), model = %model_dir.display(), "starting");
    let eval = EvalRows {
        hash: eval_hash.clone(),
        rows: Arc::new(eval_rows),
    };
    let mut workers = Vec::new();
    for (i, w) in config.workers.iter().enumerate() {
        let status = Arc::new(Mutex::new(WorkerStatus::default()));
        let args = WorkerArgs {
            device: w.device.parse()?,
            model_dir: model_dir.clone(),
            eval: eval.clone(),
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
        let eval_data = Arc::new(EvalSetData {
            hash: eval_hash.clone(),
            data: eval_bytes,
        });
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
                eval: eval_data.clone(),
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
        state,
        signer,
        workers: workers.clone(),
        eval_hash,
        model_id,
        metrics,
        next_job: AtomicU64::new(1),
        report_file: paths.last_report(),
    };
    let (coordinator, handle) = Actor::spawn(None, Coordinator, validator)
        .await
        .map_err(|e| anyhow::anyhow!("coordinator: {e}"))?;
    // One Ctrl-C listener for the whole run, so a signal between two waits is not lost.
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let mut done = 0u64;
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        let epoch = async { ractor::call!(coordinator, CoordinatorMsg::RunEpoch) };
        let report = tokio::select! {
            r = epoch => r,
            _ = stop.changed() => break Ok(()),
        };
        match report {
            Ok(Ok(report)) => on_report(&report),
            Ok(Err(e)) => break Err(anyhow::anyhow!("epoch failed: {e}")),
            Err(e) => break Err(anyhow::anyhow!("coordinator: {e}")),
        }
        done += 1;
        if epochs.is_some_and(|n| done >= n) {
            break Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => break Ok(()),
        }
    };
    tracing::info!("shutting down");
    // An epoch cut short by Ctrl-C stays open in the state and resumes on the next start; its
    // finished jobs are cached, the one in progress is trained again.
    if *stop.borrow() {
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
    result
}
