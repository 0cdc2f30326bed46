//! `miner-cli`: check a dataset with the validator's own rules, register a hotkey and submit a
//! dataset on the devnet, and see how it scored. (Hugging Face upload and subtensor commits are
//! a later issue; on those networks this tool says so instead of pretending.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use coordinator::bootstrap::Paths;
use coordinator::chain::devnet::DevnetChain;
use coordinator::chain::Chain;
use coordinator::hub::local::LocalHub;
use coordinator::hub::Hub;
use coordinator::keys::{load_coldkeypub, load_hotkey, load_or_create_wallet, WalletPath};
use coordinator::report::EpochReport;
use coordinator::state::State;
use protocol::commitment::Commitment;
use protocol::config::{ClusterConfig, Mode};
use protocol::dataset::{parse_dataset, row_overlap, DatasetLimits};

#[derive(Parser)]
#[command(name = "miner-cli", version, about = "Murmuration miner tool")]
struct Cli {
    /// The validator configuration whose rules and devnet to use.
    #[arg(long, global = true, default_value = "cluster.toml")]
    config: PathBuf,
    /// Wallet name.
    #[arg(long = "wallet.name", global = true, default_value = "miner")]
    wallet_name: String,
    /// Hotkey name.
    #[arg(long = "wallet.hotkey", global = true, default_value = "default")]
    wallet_hotkey: String,
    /// Wallet directory (devnet default: <state_dir>/wallets).
    #[arg(long = "wallet.path", global = true)]
    wallet_path: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a dataset with the validator's rules and summarise it.
    Validate {
        /// The JSONL file.
        file: PathBuf,
    },
    /// Devnet: create the wallet if needed and register its hotkey on the subnet.
    Register,
    /// Devnet: validate, publish to the local hub and commit `repo:competition:sha` on chain.
    Submit {
        /// The JSONL file.
        #[arg(long = "dataset_path")]
        dataset_path: PathBuf,
        /// The dataset repo, namespace/name.
        #[arg(long = "hf_repo_id")]
        hf_repo_id: String,
        /// The competition id.
        #[arg(long, default_value = "1")]
        competition: String,
    },
    /// My commitment and block, and my line of the validator's last epoch report.
    Status,
}

fn main() {
    let cli = Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn load_config(path: &Path) -> Result<ClusterConfig> {
    if path.exists() {
        Ok(ClusterConfig::load(path)?)
    } else {
        Ok(ClusterConfig::default())
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = load_config(&cli.config)?;
    let paths = Paths::new(&config, &cli.config);
    let wallet = WalletPath {
        root: cli.wallet_path.clone().unwrap_or_else(|| paths.wallets()),
        name: cli.wallet_name.clone(),
        hotkey: cli.wallet_hotkey.clone(),
    };
    match cli.command {
        Command::Validate { file } => validate(&config, &paths, &file),
        Command::Register => {
            let chain = devnet(&config, &paths)?;
            let hotkey = load_or_create_wallet(&wallet)?;
            let uid = chain.register_neuron(
                config.netuid,
                hotkey.account(),
                load_coldkeypub(&wallet)?,
                0,
                false,
            )?;
            println!(
                "hotkey {} registered as uid {uid} on netuid {}",
                hotkey.account(),
                config.netuid
            );
            Ok(())
        }
        Command::Submit {
            dataset_path,
            hf_repo_id,
            competition,
        } => {
            let chain = devnet(&config, &paths)?;
            let hotkey = load_hotkey(&wallet)?;
            let bytes =
                std::fs::read(&dataset_path).with_context(|| dataset_path.display().to_string())?;
            let dataset = parse_dataset(&bytes, &config.dataset)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dataset_path.display()))?;
            let hub = LocalHub::new(&paths.hub_dir());
            let revision = hub.publish(&hf_repo_id, &bytes).await?;
            let commitment: Commitment =
                format!("{hf_repo_id}:{competition}:{revision}").parse()?;
            let block = chain
                .set_commitment(&hotkey, config.netuid, commitment.to_string().as_bytes())
                .await?;
            println!(
                "published {} rows to {hf_repo_id} at {revision}",
                dataset.rows.len()
            );
            println!(
                "committed {commitment} at block {block}; validators read it back as this string"
            );
            Ok(())
        }
        Command::Status => {
            let chain = devnet(&config, &paths)?;
            let hotkey = load_hotkey(&wallet)?.account();
            let meta = chain.metagraph(config.netuid).await?;
            let Some(neuron) = meta.neuron_of(&hotkey) else {
                bail!(
                    "hotkey {hotkey} is not registered on netuid {}",
                    config.netuid
                );
            };
            println!("hotkey {hotkey}: uid {}", neuron.uid);
            match chain
                .commitments(config.netuid)
                .await?
                .into_iter()
                .find(|c| c.hotkey == hotkey)
            {
                Some(c) => println!(
                    "commitment {} at block {}",
                    String::from_utf8_lossy(&c.data),
                    c.block
                ),
                None => println!("no commitment"),
            }
            let report = State::open(&paths.state_db())?.last_report()?;
            match report
                .map(|r| serde_json::from_str::<EpochReport>(&r))
                .transpose()?
            {
                Some(report) => match report.miners.iter().find(|m| m.uid == neuron.uid) {
                    Some(m) => println!(
                        "epoch {}: loss {}, win rate {}, weight {} (u16 {}){}",
                        report.epoch,
                        m.eval_loss.map_or("-".into(), |l| format!("{l:.5}")),
                        m.win_rate.map_or("-".into(), |w| format!("{w:.3}")),
                        format_args!("{:.4}", m.epoch_weight),
                        m.weight_u16,
                        if m.reason.is_empty() {
                            String::new()
                        } else {
                            format!("; {}", m.reason)
                        }
                    ),
                    None => println!("not in the last epoch report (epoch {})", report.epoch),
                },
                None => println!("no epoch has finished yet"),
            }
            Ok(())
        }
    }
}

fn devnet(config: &ClusterConfig, paths: &Paths) -> Result<DevnetChain> {
    if config.mode != Mode::Devnet {
        bail!(
            "mode {:?}: subtensor commits are not implemented yet; only the devnet is",
            config.mode
        );
    }
    let chain = DevnetChain::open(&paths.devnet_db(), config.devnet.block_time_ms)?;
    if !chain.has_subnet(config.netuid)? {
        bail!(
            "the devnet has no netuid {} yet: run `coordinator run` once first",
            config.netuid
        );
    }
    Ok(chain)
}

fn validate(config: &ClusterConfig, paths: &Paths, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
    let dataset = parse_dataset(&bytes, &config.dataset)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for row in &dataset.canonical {
        *seen.entry(row.as_str()).or_default() += 1;
    }
    let repeated: usize = seen.values().filter(|n| **n > 1).map(|n| n - 1).sum();
    println!("{}: valid", file.display());
    println!(
        "rows used: {} (limit {})",
        dataset.rows.len(),
        config.dataset.max_rows
    );
    println!("repeated rows inside the file: {repeated}");
    println!("content hash: {}", dataset.content_hash);
    let eval_path = paths.resolve(&config.eval.set);
    if let Ok(eval_bytes) = std::fs::read(&eval_path) {
        let limits = DatasetLimits {
            max_rows: usize::MAX,
            max_file_bytes: u64::MAX,
            ..config.dataset.clone()
        };
        if let Ok(eval) = parse_dataset(&eval_bytes, &limits) {
            println!(
                "rows also in the eval set ({}): {}",
                eval_path.display(),
                row_overlap(&dataset.canonical, &eval.canonical)
            );
        }
    }
    let tokenizer = paths.state_dir.join("tiny-model/tokenizer.json");
    let model_tokenizer = if config.model.source == "tiny" {
        tokenizer
    } else {
        paths.resolve(&config.model.source).join("tokenizer.json")
    };
    if let Ok(chat) = worker::chat::ChatTokenizer::load(&model_tokenizer) {
        let mut tokens = 0usize;
        let mut supervised = 0usize;
        for row in &dataset.rows {
            let ex = chat.encode_row(row, config.training.max_seq_len)?;
            tokens += ex.len();
            supervised += ex.supervised();
        }
        println!(
            "tokens (after truncation to {}): {tokens}, of which trained on: {supervised}",
            config.training.max_seq_len
        );
    }
    Ok(())
}
