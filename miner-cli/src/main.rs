//! `miner-cli`: take a `data.jsonl` from disk to a scored submission — check it with the
//! validator's own rules, upload it (the devnet's local hub or the Hugging Face Hub), commit
//! `repo:competition:sha` on chain (the devnet or subtensor), see how it scored, score it locally
//! as a validator would, and compare it with every other miner's dataset before committing.

mod analysis;
mod eval;
mod fetch;
mod submit;
mod ui;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use coordinator::bootstrap::Paths;
use coordinator::state::State;
use hub::{Hub, HubClient, LocalHub};
use protocol::commitment::Commitment;
use protocol::config::{ClusterConfig, Mode};
use protocol::scoring::EpochReport;
use subtensor::wallet::{load_coldkeypub, load_hotkey, load_or_create_wallet, Signer, WalletPath};
use subtensor::Chain;
use subtensor::ChainArgs;
use subtensor::DevnetChain;

/// The competition id the validator's config knows: `cluster.toml` has no competition table, the
/// validator scores every commitment, and the devnet's demo miners commit under this id.
pub const DEFAULT_COMPETITION: &str = "1";

/// The devnet's default miner wallet name (under `<state_dir>/wallets`).
const DEVNET_WALLET: &str = "miner";

#[derive(Parser)]
#[command(
    name = "miner-cli",
    version,
    about = "Murmuration miner tool",
    after_help = "Devnet (mode = \"devnet\"): wallets default to <state_dir>/wallets, wallet name \"miner\", \
hotkey \"default\". Other networks: the Bittensor wallet of --wallet.* / BT_WALLET_* / [subtensor]. \
The Hugging Face token comes from HF_TOKEN, HF_TOKEN= in ./.env, or the token file; the Hub \
from [hub] endpoint or HF_ENDPOINT."
)]
struct Cli {
    /// The validator configuration whose rules, chain and hub to use.
    #[arg(long, global = true, default_value = "cluster.toml")]
    config: PathBuf,
    #[command(flatten)]
    chain: ChainArgs,
    /// Print the competition ids the validator config knows and the ones committed on chain.
    #[arg(long = "list-competitions")]
    list_competitions: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a dataset with the validator's rules and summarise it (rows, tokens, repeated rows,
    /// overlap with the eval set).
    Validate {
        /// The JSONL file.
        file: PathBuf,
    },
    /// Devnet: create the wallet if needed and register its hotkey on the subnet.
    Register,
    /// Validate, upload (private on the Hugging Face Hub) and commit `repo:competition:sha`.
    Submit {
        /// The JSONL file.
        #[arg(long = "dataset_path")]
        dataset_path: PathBuf,
        /// The dataset repo, namespace/name.
        #[arg(long = "hf_repo_id")]
        hf_repo_id: String,
        /// The competition id.
        #[arg(long, default_value = DEFAULT_COMPETITION)]
        competition: String,
        /// After the commitment has landed (and only then), make the Hugging Face repo public.
        #[arg(long = "update-repo-visibility")]
        update_repo_visibility: bool,
        /// Retries while the hotkey's commitment space for the epoch is used up (each waits
        /// until the next epoch).
        #[arg(long = "max-retries", default_value_t = 3)]
        max_retries: u32,
    },
    /// My commitment and block, and my line of the validator's last epoch report.
    Status,
    /// Train and evaluate my dataset locally exactly as a validator would, and rank the loss
    /// among the validator's last epoch.
    Eval {
        /// The JSONL file.
        file: PathBuf,
        /// `cpu`, `cuda` or `cuda:N` (CUDA needs a build with the worker's `cuda` feature).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Download every miner's committed dataset (parallel, resumable) into DIR.
    FetchAll {
        /// The output directory (with `index.json`).
        #[arg(long)]
        out: PathBuf,
    },
    /// My rows against every fetched dataset and the eval set, with the validator's duplicate
    /// rule: would I be scored as a duplicate, and of whom?
    Overlap {
        /// The JSONL file.
        file: PathBuf,
        /// What `fetch-all --out` wrote.
        #[arg(long, default_value = "datasets")]
        dir: PathBuf,
    },
    /// Same as --list-competitions.
    Competitions,
}

fn main() {
    protocol::transport::install_crypto_provider();
    let cli = Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// What every command needs: the config (with the flags applied), its paths and the wallet.
pub struct Ctx {
    /// `cluster.toml` with `--subtensor.network`, `--netuid` and the wallet flags applied.
    pub config: ClusterConfig,
    /// Where the config's relative paths and state are.
    pub paths: Paths,
    /// The config file as given.
    pub config_path: PathBuf,
    /// The miner's wallet.
    pub wallet: WalletPath,
}

impl Ctx {
    fn new(config_path: &Path, args: &ChainArgs) -> Result<Self> {
        let mut config = if config_path.exists() {
            ClusterConfig::load(config_path)?
        } else {
            ClusterConfig::default()
        };
        args.apply(&mut config)?;
        let paths = Paths::new(&config, config_path);
        let wallet = if config.mode == Mode::Devnet {
            // The devnet keeps its wallets under the state directory unless told otherwise.
            WalletPath {
                root: args
                    .wallet_path
                    .as_ref()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| paths.wallets()),
                name: args
                    .wallet_name
                    .clone()
                    .unwrap_or_else(|| DEVNET_WALLET.into()),
                hotkey: args
                    .wallet_hotkey
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            }
        } else {
            subtensor::args::wallet(&config)
        };
        Ok(Ctx {
            config,
            paths,
            config_path: config_path.to_path_buf(),
            wallet,
        })
    }

    /// The miner's hotkey, or an error naming the wallet file.
    pub fn signer(&self) -> Result<Signer> {
        load_hotkey(&self.wallet).with_context(|| {
            format!(
                "wallet {} hotkey {} under {}",
                self.wallet.name,
                self.wallet.hotkey,
                self.wallet.root.display()
            )
        })
    }

    /// The miner's hotkey address, when the wallet is readable.
    pub fn hotkey_ss58(&self) -> Option<String> {
        load_hotkey(&self.wallet)
            .ok()
            .map(|s| s.account().to_ss58())
    }

    /// The devnet chain, checked to have the subnet.
    fn devnet(&self) -> Result<DevnetChain> {
        let db = self.paths.devnet_db();
        if !db.exists() {
            bail!(
                "{}: no devnet yet: run `coordinator --config {} run --epochs 1` once first",
                db.display(),
                self.config_path.display()
            );
        }
        let chain = DevnetChain::open(&db, self.config.devnet.block_time_ms)?;
        if !chain.has_subnet(self.config.netuid)? {
            bail!(
                "the devnet {} has no netuid {} yet: run `coordinator run` once first",
                db.display(),
                self.config.netuid
            );
        }
        Ok(chain)
    }

    /// The chain to read and send extrinsics to: the devnet or subtensor.
    pub async fn chain(&self) -> Result<Arc<dyn Chain>> {
        if self.config.mode == Mode::Devnet {
            Ok(Arc::new(self.devnet()?))
        } else {
            Ok(subtensor::args::connect(&self.config).await?)
        }
    }

    /// The Hugging Face client of the config (`[hub] endpoint`, `HF_ENDPOINT`, `HF_TOKEN`,
    /// `.env` in the current directory, the token file).
    pub fn hf_client(&self) -> Result<HubClient> {
        Ok(hub::resolve::client(&self.config)?)
    }

    /// The dataset hub the validator reads, with byte progress into `bar` for the Hub.
    pub fn hub(&self, bar: Option<indicatif::ProgressBar>) -> Result<Arc<dyn Hub>> {
        if self.config.uses_huggingface() {
            let mut client = self.hf_client()?;
            if let Some(bar) = bar {
                let sink = move |file: &str, done: u64, total: Option<u64>| {
                    bar.set_message(match total {
                        Some(t) => format!("datasets ({file} {done}/{t} bytes)"),
                        None => format!("datasets ({file} {done} bytes)"),
                    });
                };
                client = client.with_progress(Arc::new(sink));
            }
            Ok(Arc::new(client))
        } else {
            Ok(Arc::new(LocalHub::new(&self.paths.hub_dir())))
        }
    }

    /// The eval set file, as the validator resolves it.
    pub async fn eval_set_path(&self) -> Result<PathBuf> {
        let hf = if self.config.uses_huggingface()
            && hub::resolve::is_hub_spec(&self.config.eval.set, &self.paths)
        {
            Some(self.hf_client()?)
        } else {
            None
        };
        Ok(hub::resolve::eval_set_path(&self.config, &self.paths, hf.as_ref()).await?)
    }

    /// Wall time of one block: the devnet's, or subtensor's 12 s.
    pub fn block_time(&self) -> Duration {
        if self.config.mode == Mode::Devnet {
            Duration::from_millis(self.config.devnet.block_time_ms.max(1))
        } else {
            Duration::from_secs(12)
        }
    }

    /// The validator's last epoch report, when its state file is here.
    pub fn last_report(&self) -> Result<Option<EpochReport>> {
        let db = self.paths.state_db();
        if !db.exists() {
            return Ok(None);
        }
        let state =
            State::open(&db).with_context(|| format!("validator state {}", db.display()))?;
        state
            .last_report()?
            .map(|r| {
                serde_json::from_str::<EpochReport>(&r)
                    .with_context(|| format!("{}: the last epoch report", db.display()))
            })
            .transpose()
    }
}

async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx::new(&cli.config, &cli.chain)?;
    if cli.list_competitions {
        return competitions(&ctx).await;
    }
    let Some(command) = cli.command else {
        bail!("no command given (see miner-cli --help)");
    };
    match command {
        Command::Validate { file } => analysis::validate(&ctx, &file).await,
        Command::Register => register(&ctx),
        Command::Submit {
            dataset_path,
            hf_repo_id,
            competition,
            update_repo_visibility,
            max_retries,
        } => {
            submit::submit(
                &ctx,
                submit::SubmitArgs {
                    dataset_path: &dataset_path,
                    repo: &hf_repo_id,
                    competition: &competition,
                    public: update_repo_visibility,
                    max_retries,
                },
            )
            .await
        }
        Command::Status => status(&ctx).await,
        Command::Eval { file, device } => eval::eval(&ctx, &file, &device).await,
        Command::FetchAll { out } => fetch::fetch_all(&ctx, &out).await,
        Command::Overlap { file, dir } => analysis::overlap(&ctx, &file, &dir).await,
        Command::Competitions => competitions(&ctx).await,
    }
}

fn register(ctx: &Ctx) -> Result<()> {
    if ctx.config.mode != Mode::Devnet {
        bail!(
            "register: on {:?} register with btcli (`btcli subnet register --netuid {}`); this command only registers on the devnet",
            ctx.config.mode,
            ctx.config.netuid
        );
    }
    let chain = ctx.devnet()?;
    let hotkey = load_or_create_wallet(&ctx.wallet)?;
    let uid = chain.register_neuron(
        ctx.config.netuid,
        hotkey.account(),
        load_coldkeypub(&ctx.wallet)?,
        0,
        false,
    )?;
    println!(
        "hotkey {} registered as uid {uid} on netuid {}",
        hotkey.account(),
        ctx.config.netuid
    );
    Ok(())
}

async fn status(ctx: &Ctx) -> Result<()> {
    let netuid = ctx.config.netuid;
    let chain = ctx.chain().await?;
    let hotkey = ctx.signer()?.account();
    let meta = chain.metagraph(netuid).await?;
    let Some(neuron) = meta.neuron_of(&hotkey) else {
        bail!("hotkey {hotkey} is not registered on netuid {netuid}");
    };
    println!(
        "hotkey {hotkey}: uid {} on netuid {netuid} (block {})",
        neuron.uid, meta.block
    );
    match chain
        .commitments(netuid)
        .await?
        .into_iter()
        .find(|c| c.hotkey == hotkey)
    {
        Some(c) => {
            println!(
                "commitment {} at block {}",
                String::from_utf8_lossy(&c.data),
                c.block
            );
            if let Err(e) = Commitment::from_bytes(&c.data) {
                println!("  validators will reject it: {e}");
            }
        }
        None => println!("no commitment"),
    }
    match ctx.last_report()? {
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
        None if ctx.config.mode == Mode::Devnet => println!("no epoch has finished yet"),
        None => println!(
            "no validator state at {} (loss, win rate and weight are shown where a validator's state is readable)",
            ctx.paths.state_db().display()
        ),
    }
    Ok(())
}

async fn competitions(ctx: &Ctx) -> Result<()> {
    println!(
        "competitions the validator config knows: {DEFAULT_COMPETITION} (the default; {} has no competition table and the validator scores every commitment whatever its id)",
        ctx.config_path.display()
    );
    match ctx.chain().await {
        Ok(chain) => {
            let mut used = std::collections::BTreeMap::<String, usize>::new();
            let mut unparsed = 0usize;
            for c in chain.commitments(ctx.config.netuid).await? {
                match Commitment::from_bytes(&c.data) {
                    Ok(c) => *used.entry(c.competition_id).or_default() += 1,
                    Err(_) => unparsed += 1,
                }
            }
            if used.is_empty() {
                println!(
                    "on chain (netuid {}): no dataset commitments",
                    ctx.config.netuid
                );
            }
            for (id, n) in used {
                println!(
                    "on chain (netuid {}): competition {id}: {n} commitment(s)",
                    ctx.config.netuid
                );
            }
            if unparsed > 0 {
                println!("on chain: {unparsed} commitment(s) that are not dataset commitments");
            }
        }
        Err(e) => println!("on chain: not read ({e:#})"),
    }
    Ok(())
}
