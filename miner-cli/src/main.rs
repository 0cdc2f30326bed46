//! `miner-cli`: take a `data.jsonl` from disk to a scored submission — check it with the
//! validator's own rules, upload it (the devnet's local hub or the Hugging Face Hub), commit
//! `repo:competition:sha` on chain (the devnet or subtensor), see how it scored, score it locally
//! as a validator would, and compare it with every other miner's dataset before committing.

mod analysis;
mod ctx;
mod eval;
mod fetch;
mod submit;
mod ui;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use protocol::commitment::Commitment;
use protocol::config::{ClusterConfig, CompetitionConfig, Mode};
use subtensor::wallet::{load_coldkeypub, load_or_create_wallet};
use subtensor::{ChainArgs, LogArgs};

use crate::ctx::{Ctx, DEFAULT_COMPETITION};

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
    #[command(flatten)]
    log: LogArgs,
    /// Print the competitions the validator config (or `--competitions-file`) lists and the
    /// ids committed on chain.
    #[arg(long = "list-competitions", alias = "list_competitions")]
    list_competitions: bool,
    /// Read the `[[competitions]]` table from this file instead of `--config`: a validator's
    /// config or a published competitions file, as a path or an http(s):// URL.
    #[arg(long = "competitions-file", alias = "competitions_file", global = true)]
    competitions_file: Option<String>,
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
    /// Validate, upload (private on the Hugging Face Hub), commit `repo:competition:sha`, then
    /// make the repo public (unless `--keep-private`).
    Submit {
        /// The JSONL file.
        #[arg(long = "dataset_path", alias = "dataset-path")]
        dataset_path: PathBuf,
        /// The dataset repo, namespace/name.
        #[arg(long = "hf_repo_id", alias = "hf-repo-id")]
        hf_repo_id: String,
        /// The competition id (`--competition_id` as the Python miner spells it).
        #[arg(long, aliases = ["competition_id", "competition-id"], default_value = DEFAULT_COMPETITION)]
        competition: String,
        /// Make the Hugging Face repo public once the commitment has landed (and only then).
        /// This is the default; the flag is accepted as the Python miner spells it.
        #[arg(long = "update-repo-visibility", alias = "update_repo_visibility")]
        update_repo_visibility: bool,
        /// Leave the Hugging Face repo private after the commitment: validators cannot read it,
        /// so it scores nothing until you make it public yourself.
        #[arg(
            long = "keep-private",
            alias = "keep_private",
            conflicts_with = "update_repo_visibility"
        )]
        keep_private: bool,
        /// Retries while the hotkey's commitment space for the epoch is used up (each waits
        /// until the next epoch).
        #[arg(long = "max-retries", alias = "max_retries", default_value_t = 3)]
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
        /// Score it as a submission to this competition: with its eval set and training
        /// settings from the config's `[[competitions]]` table, against its miners.
        #[arg(long, aliases = ["competition_id", "competition-id"], default_value = DEFAULT_COMPETITION)]
        competition: String,
    },
    /// Download every miner's committed dataset (parallel, resumable) into DIR.
    #[command(alias = "fetch_all")]
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
    cli.log.init("warn");
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx::new(&cli.config, &cli.chain)?;
    if cli.list_competitions {
        return competitions(&ctx, cli.competitions_file.as_deref()).await;
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
            update_repo_visibility: _,
            keep_private,
            max_retries,
        } => {
            submit::submit(
                &ctx,
                submit::SubmitArgs {
                    dataset_path: &dataset_path,
                    repo: &hf_repo_id,
                    competition: &competition,
                    public: !keep_private,
                    max_retries,
                },
            )
            .await
        }
        Command::Status => status(&ctx).await,
        Command::Eval {
            file,
            device,
            competition,
        } => eval::eval(&ctx, &file, &device, &competition).await,
        Command::FetchAll { out } => fetch::fetch_all(&ctx, &out).await,
        Command::Overlap { file, dir } => analysis::overlap(&ctx, &file, &dir).await,
        Command::Competitions => competitions(&ctx, cli.competitions_file.as_deref()).await,
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
            "no validator report at {} (loss, win rate and weight are shown where a validator's report is readable)",
            ctx.paths.last_report().display()
        ),
    }
    Ok(())
}

/// The `[[competitions]]` table of `file` (a path or an http(s):// URL), read as a validator
/// config: every other key is optional.
async fn load_competitions(file: &str) -> Result<Vec<CompetitionConfig>> {
    let text = if file.starts_with("http://") || file.starts_with("https://") {
        let response = reqwest::get(file)
            .await
            .with_context(|| format!("fetching {file}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("fetching {file}: HTTP {status}");
        }
        response
            .text()
            .await
            .with_context(|| format!("reading {file}"))?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    Ok(ClusterConfig::from_toml_str(&text, file)?.competitions)
}

async fn competitions(ctx: &Ctx, file: Option<&str>) -> Result<()> {
    let (source, table) = match file {
        Some(file) => (file.to_string(), load_competitions(file).await?),
        None => (
            ctx.config_path.display().to_string(),
            ctx.config.competitions.clone(),
        ),
    };
    if table.is_empty() {
        println!(
            "competitions the validator config knows: {DEFAULT_COMPETITION} (the default; {source} has no [[competitions]] table and the validator scores every commitment whatever its id)"
        );
    } else {
        let ids: Vec<&str> = table.iter().map(|c| c.id.as_str()).collect();
        println!(
            "competitions the validator config knows: {} ({source}; any other id gets weight 0)",
            ids.join(", ")
        );
        for c in &table {
            let eval = if c.eval_set.is_empty() {
                "[eval] set".to_string()
            } else {
                c.eval_set.clone()
            };
            let rows = c
                .max_rows
                .map_or("training.max_rows".to_string(), |r| r.to_string());
            let overrides: Vec<String> = c
                .training
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            let share = c
                .reward_share
                .map_or(String::new(), |s| format!(", reward share {s}"));
            println!(
                "  {}: eval set {eval}, rows used {rows}, training overrides: {}{share}",
                c.id,
                if overrides.is_empty() {
                    "none".to_string()
                } else {
                    overrides.join(", ")
                }
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The lines of the README's seed-command-lines block that start with `miner-cli `.
    fn readme_lines() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("<!-- seed-command-lines")
            .expect("README has the seed-command-lines block");
        let end = readme
            .find("<!-- /seed-command-lines -->")
            .expect("the block ends");
        readme[start..end]
            .lines()
            .filter(|l| l.starts_with("miner-cli "))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn seed_command_lines_parse() {
        let lines = readme_lines();
        assert!(lines.len() >= 3, "{lines:?}");
        for line in &lines {
            let cli = Cli::try_parse_from(line.split_whitespace())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            let mut config = protocol::config::ClusterConfig::default();
            cli.chain
                .apply(&mut config)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(config.netuid, 96, "{line}");
            assert_eq!(config.mode, Mode::Finney, "{line}");
        }
    }

    #[test]
    fn python_miner_flags_map_to_ours() {
        let cli = Cli::try_parse_from([
            "miner-cli",
            "submit",
            "--hf_repo_id",
            "me/data",
            "--dataset_path",
            "d.jsonl",
            "--competition_id",
            "7",
            "--update_repo_visibility",
            "--max_retries",
            "5",
        ])
        .unwrap();
        let Some(Command::Submit {
            competition,
            update_repo_visibility,
            keep_private,
            max_retries,
            hf_repo_id,
            ..
        }) = cli.command
        else {
            panic!("not submit");
        };
        assert_eq!(
            (
                competition.as_str(),
                update_repo_visibility,
                keep_private,
                max_retries
            ),
            ("7", true, false, 5)
        );
        // Public by default, private only when asked, never both.
        let args = [
            "miner-cli",
            "submit",
            "--hf_repo_id",
            "a/b",
            "--dataset_path",
            "d",
        ];
        let Some(Command::Submit { keep_private, .. }) = Cli::try_parse_from(args).unwrap().command
        else {
            panic!("not submit");
        };
        assert!(!keep_private);
        let both = [&args[..], &["--keep-private", "--update_repo_visibility"]].concat();
        assert!(Cli::try_parse_from(both).is_err());
        assert_eq!(hf_repo_id, "me/data");
        let cli = Cli::try_parse_from(["miner-cli", "--list_competitions"]).unwrap();
        assert!(cli.list_competitions);
        assert!(Cli::try_parse_from(["miner-cli", "submit", "--competitionid", "1"]).is_err());
    }
}
