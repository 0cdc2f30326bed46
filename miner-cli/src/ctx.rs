//! What every command needs: the config with the flags applied, its paths, the miner's wallet,
//! and the chain, hub, eval set and validator report they lead to.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hub::{Hub, HubClient, LocalHub};
use protocol::config::{ClusterConfig, Mode, Paths};
use protocol::scoring::EpochReport;
use subtensor::wallet::load_hotkey;
use subtensor::{Chain, ChainArgs, DevnetChain, Signer, WalletPath};

/// The default competition id: the one the subnet's miners commit under, the devnet's demo
/// miners too, and the one `submit` uses without `--competition`.
pub const DEFAULT_COMPETITION: &str = "1";

/// The devnet's default miner wallet name (under `<state_dir>/wallets`).
const DEVNET_WALLET: &str = "miner";

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
    /// The context of `config_path` with the chain and wallet flags applied.
    pub fn new(config_path: &Path, args: &ChainArgs) -> Result<Self> {
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
    pub fn devnet(&self) -> Result<DevnetChain> {
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

    /// The file of the eval set `spec` (`[eval] set` or a competition's), as the validator
    /// resolves it.
    pub async fn eval_set_path_of(&self, spec: &str) -> Result<PathBuf> {
        let hf = if self.config.uses_huggingface() && hub::resolve::is_hub_spec(spec, &self.paths) {
            Some(self.hf_client()?)
        } else {
            None
        };
        Ok(hub::resolve::eval_set_path_of(spec, &self.config, &self.paths, hf.as_ref()).await?)
    }

    /// Wall time of one block: the devnet's, or subtensor's 12 s.
    pub fn block_time(&self) -> Duration {
        if self.config.mode == Mode::Devnet {
            Duration::from_millis(self.config.devnet.block_time_ms.max(1))
        } else {
            Duration::from_secs(12)
        }
    }

    /// The validator's last epoch report, when a validator shares this state directory: the
    /// report file it rewrites after every epoch (never its database, which only it opens).
    pub fn last_report(&self) -> Result<Option<EpochReport>> {
        let path = self.paths.last_report();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("validator report {}", path.display()))
            }
        };
        let report = serde_json::from_str::<EpochReport>(&text)
            .with_context(|| format!("{}: the last epoch report", path.display()))?;
        Ok(Some(report))
    }
}
