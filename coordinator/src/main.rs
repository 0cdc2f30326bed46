//! The `coordinator` binary: `run` (validator epochs on the configured chain), `init` (a
//! production config from the shipped profile), `check` (the config and the production guard),
//! `chain` (what the validator sees on chain), `score` (the scoring audit) and `report` (the
//! last epoch report). The Python validator's flags are accepted (README "Command lines from
//! the Python tools").

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
    #[command(flatten)]
    log: subtensor::LogArgs,
    /// Blocks to wait between two epochs of `run` (the Python validator's `--blocks_per_epoch`):
    /// sets `[coordinator] epoch_interval_secs` to this many blocks of 12 s (the devnet's
    /// `block_time_ms` there). It does not change the tempo, which comes from the chain: weights
    /// are set at most once per tempo and weights rate limit, whatever this says.
    #[arg(long = "blocks_per_epoch", alias = "blocks-per-epoch", global = true)]
    blocks_per_epoch: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The config file with every flag applied: chain and wallet flags, `--blocks_per_epoch`.
    fn apply(&self, config: &mut ClusterConfig) -> Result<()> {
        self.chain.apply(config)?;
        if let Some(blocks) = self.blocks_per_epoch {
            anyhow::ensure!(blocks >= 1, "--blocks_per_epoch must be at least 1");
            let block_ms = if config.mode == protocol::config::Mode::Devnet {
                config.devnet.block_time_ms
            } else {
                12_000
            };
            config.coordinator.epoch_interval_secs = blocks.saturating_mul(block_ms) / 1000;
        }
        Ok(())
    }
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
        /// On `test` or `local` only: run with demo settings (the tiny model, the bundled eval
        /// set, the CPU) that the guard refuses off the devnet, with a warning for each.
        #[arg(long = "allow-demo-settings", alias = "allow_demo_settings")]
        allow_demo_settings: bool,
    },
    /// Write a starting config for a real network from the production profile
    /// (profiles/finney.toml) and list the values to fill in.
    Init {
        /// `finney`, `test` or `local`.
        #[arg(long, value_parser = ["finney", "test", "local"])]
        network: String,
        /// Where to write it.
        #[arg(long, default_value = "validator.toml")]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check the config (`--config`) as `run` would: its values, and off the devnet the guard
    /// against demo settings. Prints `ok` or one line per problem.
    Check,
    /// Recompute win rates and weights from a JSON array of {uid, block, loss|null, hash?,
    /// competition?} on stdin (competition shares from the config).
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
    let cli = Cli::parse();
    cli.log.init("info");
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
    if let Command::Init {
        network,
        out,
        force,
    } = &cli.command
    {
        return init(network, out, *force);
    }
    let mut config = load_config(&cli.config)?;
    cli.apply(&mut config)?;
    match cli.command {
        // Handled above, before a config is read; the same call here for completeness.
        Command::Init {
            network,
            out,
            force,
        } => init(&network, &out, force),
        Command::Check => {
            let paths = Paths::new(&config, &cli.config);
            let refusals = protocol::profile::production_refusals(&config, &paths);
            let chain = protocol::profile::network_name(config.mode);
            for r in &refusals {
                println!(
                    "{}: refusing to set weights on {chain}: {r}",
                    cli.config.display()
                );
            }
            anyhow::ensure!(
                refusals.is_empty(),
                "{}: {} setting(s) to change before a validator on {chain} sets weights",
                cli.config.display(),
                refusals.len()
            );
            println!(
                "ok: {} is valid for {chain} (netuid {}, model {}, eval set {}, {} worker(s))",
                cli.config.display(),
                config.netuid,
                config.model.source,
                config.eval.set,
                config.workers.len() + config.remote_workers.len()
            );
            Ok(())
        }
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
            let shares = config.competition_shares();
            let out = protocol::scoring::score_audit_competitions(&input, &config.scoring, &shares)
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
        Command::Run {
            epochs,
            json,
            allow_demo_settings,
        } => {
            guard(&config, &cli.config, allow_demo_settings)?;
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

/// `coordinator init`: the production profile for `network` written to `out`, and the lines
/// the operator must fill in.
fn init(network: &str, out: &std::path::Path, force: bool) -> Result<()> {
    let mode = match network {
        "finney" => protocol::config::Mode::Finney,
        "test" => protocol::config::Mode::Test,
        _ => protocol::config::Mode::Local,
    };
    anyhow::ensure!(
        force || !out.exists(),
        "{} exists: refusing to overwrite it (pass --force, or --out another file)",
        out.display()
    );
    let (text, fill) = protocol::profile::starting_config(mode)?;
    std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} for {network} from the production profile (profiles/finney.toml)",
        out.display()
    );
    println!("fill in or check these values:");
    for f in &fill {
        println!(
            "  {}:{}: {}  -- {}",
            out.display(),
            f.line,
            f.setting,
            f.note
        );
    }
    println!(
        "then: coordinator --config {} check   (and `run` once it prints ok)",
        out.display()
    );
    Ok(())
}

/// The production guard before `run`: off the devnet, demo settings are refused, one line per
/// key; `--allow-demo-settings` turns the refusals into warnings on `test` and `local` only.
fn guard(config: &ClusterConfig, config_path: &std::path::Path, allow: bool) -> Result<()> {
    let paths = Paths::new(config, config_path);
    let refusals = protocol::profile::production_refusals(config, &paths);
    let chain = protocol::profile::network_name(config.mode);
    if refusals.is_empty() {
        return Ok(());
    }
    let testnet = matches!(
        config.mode,
        protocol::config::Mode::Test | protocol::config::Mode::Local
    );
    if allow && testnet {
        for r in &refusals {
            tracing::warn!(
                "{}: demo setting on {chain} (--allow-demo-settings): {r}",
                config_path.display()
            );
        }
        return Ok(());
    }
    for r in &refusals {
        eprintln!(
            "{}: refusing to set weights on {chain}: {r}",
            config_path.display()
        );
    }
    if allow {
        eprintln!("--allow-demo-settings is for test and local networks only, not {chain}");
    }
    anyhow::bail!(
        "{} setting(s) of {} to change before a validator on {chain} sets weights          (`coordinator init --network {chain}` writes a production config)",
        refusals.len(),
        config_path.display()
    )
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The lines of the README's seed-command-lines block that start with `program `.
    fn readme_lines(program: &str) -> Vec<String> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("<!-- seed-command-lines")
            .expect("README has the seed-command-lines block");
        let end = readme
            .find("<!-- /seed-command-lines -->")
            .expect("the block ends");
        readme[start..end]
            .lines()
            .filter(|l| l.starts_with(&format!("{program} ")))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn seed_command_lines_parse() {
        let lines = readme_lines("coordinator");
        assert!(lines.len() >= 3, "{lines:?}");
        for line in &lines {
            let cli = Cli::try_parse_from(line.split_whitespace())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            let mut config = ClusterConfig::default();
            cli.apply(&mut config)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(config.netuid, 96, "{line}");
            assert_ne!(config.mode, protocol::config::Mode::Devnet, "{line}");
            assert!(cli.log.level().is_some(), "{line}");
        }
    }

    #[test]
    fn seed_flags_map_to_settings() {
        let cli = Cli::try_parse_from([
            "coordinator",
            "run",
            "--subtensor.network",
            "finney",
            "--subtensor.chain_endpoint",
            "ws://10.0.0.2:9944",
            "--logging.trace",
            "--logging.debug",
            "--blocks_per_epoch",
            "100",
            "--log-format",
            "json",
        ])
        .unwrap();
        let mut config = ClusterConfig::default();
        cli.apply(&mut config).unwrap();
        assert_eq!(config.mode, protocol::config::Mode::Finney);
        assert_eq!(config.subtensor.endpoint, "ws://10.0.0.2:9944");
        assert_eq!(config.coordinator.epoch_interval_secs, 1200);
        assert_eq!(cli.log.level(), Some("trace"));
        assert_eq!(cli.log.format, subtensor::LogFormat::Json);

        // A chain endpoint alone leaves the devnet for a local node; a bad one is refused.
        let cli = Cli::try_parse_from([
            "coordinator",
            "--subtensor.chain_endpoint",
            "ws://127.0.0.1:9944",
            "run",
        ])
        .unwrap();
        let mut config = ClusterConfig::default();
        cli.apply(&mut config).unwrap();
        assert_eq!(config.mode, protocol::config::Mode::Local);
        let cli = Cli::try_parse_from([
            "coordinator",
            "run",
            "--subtensor.chain_endpoint",
            "http://x",
        ])
        .unwrap();
        let err = cli.apply(&mut ClusterConfig::default()).unwrap_err();
        assert!(
            err.to_string().contains("--subtensor.chain_endpoint"),
            "{err}"
        );
        let cli = Cli::try_parse_from(["coordinator", "run", "--blocks_per_epoch", "0"]).unwrap();
        assert!(cli.apply(&mut ClusterConfig::default()).is_err());

        // An unknown flag is still refused.
        assert!(Cli::try_parse_from(["coordinator", "run", "--logging.verbose"]).is_err());
    }
}
