//! The `coordinator` binary: `run` (validator epochs on the configured chain), `chain` (what
//! the validator sees on chain), `score` (the scoring audit) and `report` (the last epoch
//! report).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use coordinator::State;
use protocol::config::{ClusterConfig, Paths};

#[derive(Parser)]
#[command(name = "coordinator", version, about = "Murmuration validator")]
struct Cli {
    /// The cluster configuration.
    #[arg(long, global = true, default_value = "cluster.toml")]
    config: PathBuf,
    #[command(flatten)]
    chain: subtensor::ChainArgs,
    #[command(subcommand)]
    command: Command,
}

/// What `coordinator chain` shows.
#[derive(Subcommand)]
enum ChainCommand {
    /// Neurons and hyperparameters of the subnet.
    Metagraph {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every miner's commitment, parsed as the validator parses it.
    Commitments {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The weights a validator has set (default: uid of the configured hotkey).
    Weights {
        /// The validator's uid.
        #[arg(long)]
        uid: Option<u16>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    /// Create the coordinator's key pair under [cluster] pki_dir and print its fingerprint.
    Keygen,
    /// List the configured workers: in-process devices and remote workers with their pins.
    Workers,
    /// Benchmark the scheduler and transport with simulated workers (see README).
    BenchCluster(coordinator::ClusterBenchArgs),
    /// Show what the validator sees on chain: `metagraph`, `commitments` or `weights`.
    Chain {
        #[command(subcommand)]
        what: ChainCommand,
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
    protocol::transport::install_crypto_provider();
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
    let mut config = load_config(&cli.config)?;
    cli.chain.apply(&mut config)?;
    match cli.command {
        Command::Chain { what } => {
            let paths = Paths::new(&config, &cli.config);
            let chain = subtensor::args::read_only_chain(&config, &paths).await?;
            let wallet = if config.mode == protocol::config::Mode::Devnet {
                coordinator::validator_wallet(&paths)
            } else {
                subtensor::args::wallet(&config)
            };
            show_chain(&config, chain.as_ref(), &wallet, what).await
        }
        Command::Score { .. } => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("reading stdin")?;
            let out = protocol::scoring::score_audit(&input, &config.scoring)
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
                let report: protocol::scoring::EpochReport = serde_json::from_str(&text)?;
                println!("{report}");
            }
            Ok(())
        }
        Command::BenchCluster(args) => coordinator::bench_cluster(&args).await,
        Command::Keygen => {
            let paths = Paths::new(&config, &cli.config);
            let dir = paths.resolve(&config.cluster.pki_dir);
            let key = dir.join("coordinator.key.der");
            anyhow::ensure!(
                !key.exists(),
                "{} exists: refusing to overwrite a key",
                key.display()
            );
            let identity = protocol::transport::Identity::generate("coordinator")?;
            identity.save(&dir, "coordinator")?;
            println!("{}", identity.fingerprint());
            eprintln!(
                "wrote {}/coordinator.{{cert,key}}.der; pin this fingerprint as worker_node.coordinator_fingerprint on every worker",
                dir.display()
            );
            Ok(())
        }
        Command::Workers => {
            for (i, w) in config.workers.iter().enumerate() {
                println!("in-process  {}#{i}", w.device);
            }
            for w in &config.remote_workers {
                println!("remote      {}  {}  pin {}", w.id, w.address, w.fingerprint);
            }
            let paths = Paths::new(&config, &cli.config);
            if let Ok(state) = State::open(&paths.state_db()) {
                if let Some(text) = state.meta("workers")? {
                    let snapshot: serde_json::Value = serde_json::from_str(&text)?;
                    let at = snapshot["at"].as_u64().unwrap_or(0);
                    let now = coordinator::unix_now();
                    println!(
                        "status published {} s ago by the running coordinator:",
                        now.saturating_sub(at)
                    );
                    for w in snapshot["workers"].as_array().into_iter().flatten() {
                        let job = w["current"].as_array().map_or("idle".to_string(), |j| {
                            format!("job {} (uid {})", j[0], j[1])
                        });
                        let beat = w["last_heartbeat"].as_u64().map_or("-".to_string(), |t| {
                            format!("{} s ago", now.saturating_sub(t))
                        });
                        println!(
                            "  {:<12} {:<10} {:<9} devices {:<20} {:<22} jobs done {:<4} last heartbeat {}",
                            w["name"].as_str().unwrap_or("?"),
                            w["kind"].as_str().unwrap_or("?"),
                            if w["connected"].as_bool().unwrap_or(false) { "connected" } else { "down" },
                            w["devices"].as_array().map_or(String::new(), |d| d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")),
                            job,
                            w["jobs_done"],
                            beat
                        );
                    }
                }
                if let Some(text) = state.last_report()? {
                    let report: protocol::scoring::EpochReport = serde_json::from_str(&text)?;
                    println!("last epoch {}: jobs by worker", report.epoch);
                    for m in report.miners.iter().filter(|m| m.worker.is_some()) {
                        println!("  uid {:>4}  {}", m.uid, m.worker.as_deref().unwrap_or("-"));
                    }
                }
            }
            Ok(())
        }
        Command::Run { epochs, json } => {
            coordinator::run_validator(config, &cli.config, epochs, |report| {
                if json {
                    println!("{}", serde_json::to_string(report).unwrap_or_default());
                } else {
                    println!("{report}");
                }
            })
            .await
        }
    }
}

/// `coordinator chain ...`.
async fn show_chain(
    config: &ClusterConfig,
    chain: &dyn subtensor::Chain,
    wallet: &subtensor::wallet::WalletPath,
    what: ChainCommand,
) -> Result<()> {
    let netuid = config.netuid;
    match what {
        ChainCommand::Metagraph { json } => {
            let mg = chain.metagraph(netuid).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&mg)?);
            } else {
                println!(
                    "netuid {} at block {}: tempo {}, weights rate limit {}, version key {}, \
                     commit-reveal {} (reveal period {})",
                    mg.netuid,
                    mg.block,
                    mg.params.tempo,
                    mg.params.weights_rate_limit,
                    mg.params.weights_version_key,
                    if mg.params.commit_reveal_enabled {
                        "on"
                    } else {
                        "off"
                    },
                    mg.params.reveal_period
                );
                println!(
                    "{:>5}  {:<48}  {:>16}  {:>6}  last update",
                    "uid", "hotkey", "stake", "permit"
                );
                for n in &mg.neurons {
                    println!(
                        "{:>5}  {:<48}  {:>16}  {:>6}  {}",
                        n.uid,
                        n.hotkey.to_ss58(),
                        n.stake,
                        if n.validator_permit { "yes" } else { "no" },
                        n.last_update
                    );
                }
            }
        }
        ChainCommand::Commitments { json } => {
            let found = chain.commitments(netuid).await?;
            let rows: Vec<serde_json::Value> = found
                .iter()
                .map(|c| {
                    let parsed = protocol::commitment::Commitment::from_bytes(&c.data);
                    serde_json::json!({
                        "uid": c.uid,
                        "hotkey": c.hotkey.to_ss58(),
                        "block": c.block,
                        "text": protocol::text::printable(&String::from_utf8_lossy(&c.data)),
                        "repo": parsed.as_ref().ok().map(|p| p.repo.clone()),
                        "competition": parsed.as_ref().ok().map(|p| p.competition_id.clone()),
                        "revision": parsed.as_ref().ok().map(|p| p.revision.clone()),
                        "rejected": parsed.as_ref().err().map(|e| e.to_string()),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    let uid = r["uid"].as_u64().map_or("-".into(), |u| u.to_string());
                    let status = r["rejected"].as_str().unwrap_or("ok");
                    println!(
                        "uid {:>5}  block {:>9}  {}  [{}]",
                        uid,
                        r["block"],
                        r["text"].as_str().unwrap_or_default(),
                        status
                    );
                }
            }
        }
        ChainCommand::Weights { uid, json } => {
            let uid = match uid {
                Some(uid) => uid,
                None => {
                    let account = subtensor::wallet::load_hotkey(wallet)
                        .map(|s| s.account())
                        .map_err(|e| anyhow::anyhow!("{e} (or pass --uid)"))?;
                    chain
                        .metagraph(netuid)
                        .await?
                        .neuron_of(&account)
                        .map(|n| n.uid)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "hotkey {account} is not registered on netuid {netuid} (or pass --uid)"
                            )
                        })?
                }
            };
            let (row, last) = chain.weights(netuid, uid).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"netuid": netuid, "uid": uid, "last_update": last, "weights": row})
                );
            } else {
                println!(
                    "weights of uid {uid} on netuid {netuid} (last update: {})",
                    last.map_or("never".into(), |b| format!("block {b}"))
                );
                for (dest, w) in row {
                    println!("  uid {dest:>5}  {w:>5}  ({:.4})", w as f64 / 65535.0);
                }
            }
        }
    }
    Ok(())
}
