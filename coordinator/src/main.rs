//! The `coordinator` binary: `run` (validator epochs on the configured chain), `score` (the
//! scoring audit) and `report` (the last epoch report).

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use coordinator::actor::{Coordinator, CoordinatorMsg};
use coordinator::bootstrap::{self, Paths};
use coordinator::epoch::{Validator, WorkerHandle};
use coordinator::metrics::Metrics;
use coordinator::state::State;
use coordinator::worker_actor::{WorkerActor, WorkerArgs, WorkerMsg};
use protocol::config::ClusterConfig;
use ractor::Actor;

#[derive(Parser)]
#[command(name = "coordinator", version, about = "Murmuration validator")]
struct Cli {
    /// The cluster configuration.
    #[arg(long, global = true, default_value = "cluster.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run validator epochs (until Ctrl-C, or `--epochs N`).
    Run {
        /// Stop after this many epochs.
        #[arg(long)]
        epochs: Option<u64>,
        /// Print each epoch report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Recompute win rates and weights from a JSON array of {uid, block, loss|null, hash?} on stdin.
    Score {
        /// Print JSON (the only format).
        #[arg(long)]
        json: bool,
    },
    /// Print the report of the last finished epoch.
    Report {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn load_config(path: &std::path::Path) -> Result<ClusterConfig> {
    if path.exists() {
        Ok(ClusterConfig::load(path)?)
    } else if path == std::path::Path::new("cluster.toml") {
        Ok(ClusterConfig::default())
    } else {
        anyhow::bail!("{}: no such file", path.display())
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(cli)) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = load_config(&cli.config)?;
    match cli.command {
        Command::Score { .. } => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("reading stdin")?;
            let out = coordinator::audit::score_audit(&input, &config.scoring)
                .map_err(|e| anyhow::anyhow!("stdin {e}"))?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Report { json } => {
            let paths = Paths::new(&config, &cli.config);
            let state = State::open(&paths.state_db())?;
            let Some(text) = state.last_report()? else {
                anyhow::bail!("no finished epoch in {}", paths.state_db().display());
            };
            if json {
                println!("{text}");
            } else {
                let report: coordinator::report::EpochReport = serde_json::from_str(&text)?;
                println!("{report}");
            }
            Ok(())
        }
        Command::Run { epochs, json } => run_validator(config, &cli.config, epochs, json).await,
    }
}

async fn run_validator(
    config: ClusterConfig,
    config_path: &std::path::Path,
    epochs: Option<u64>,
    json: bool,
) -> Result<()> {
    let paths = Paths::new(&config, config_path);
    let state = Arc::new(State::open(&paths.state_db())?);
    let (chain, hub, signer) = bootstrap::devnet(&config, &paths).await?;
    let model_dir = bootstrap::model_dir(&config, &paths)?;
    let (eval_rows, eval_hash) = bootstrap::eval_set(&config, &paths)?;
    tracing::info!(validator = %signer.account(), eval_rows = eval_rows.len(), model = %model_dir.display(), "starting");
    let eval_rows = Arc::new(eval_rows);
    let mut workers = Vec::new();
    let mut model_id = String::new();
    for (i, w) in config.workers.iter().enumerate() {
        let args = WorkerArgs {
            device: w.device.parse()?,
            model_dir: model_dir.clone(),
            eval_rows: eval_rows.clone(),
            config: config.training.clone(),
        };
        let name = format!("{}#{i}", w.device);
        let (actor, _) = Actor::spawn(Some(format!("worker-{name}")), WorkerActor, args)
            .await
            .map_err(|e| anyhow::anyhow!("worker {name}: {e}"))?;
        let status = ractor::call!(actor, WorkerMsg::Status)
            .map_err(|e| anyhow::anyhow!("worker {name}: {e}"))?;
        model_id = status.model_id;
        workers.push(WorkerHandle { name, actor });
    }
    let metrics = Arc::new(Metrics::default());
    if !config.coordinator.metrics_listen.is_empty() {
        coordinator::metrics::serve(config.coordinator.metrics_listen.parse()?, metrics.clone())
            .await?;
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
    };
    let (coordinator, handle) = Actor::spawn(Some("coordinator".into()), Coordinator, validator)
        .await
        .map_err(|e| anyhow::anyhow!("coordinator: {e}"))?;
    let mut done = 0u64;
    let result = loop {
        let epoch = async { ractor::call!(coordinator, CoordinatorMsg::RunEpoch) };
        let report = tokio::select! {
            r = epoch => r,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        match report {
            Ok(Ok(report)) => {
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{report}");
                }
            }
            Ok(Err(e)) => break Err(anyhow::anyhow!("epoch failed: {e}")),
            Err(e) => break Err(anyhow::anyhow!("coordinator: {e}")),
        }
        done += 1;
        if epochs.is_some_and(|n| done >= n) {
            break Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    tracing::info!("shutting down");
    coordinator.stop(None);
    let _ = handle.await;
    for w in workers {
        w.actor.stop(None);
    }
    result
}
