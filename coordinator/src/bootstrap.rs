//! Start-up of a validator from `cluster.toml`: the state directory, the devnet with its
//! validator and demo miners (first run only), the model, the eval set, the workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::commitment::Commitment;
use protocol::config::{ClusterConfig, Mode};
use protocol::dataset::{parse_dataset, DatasetLimits, Row};

use crate::chain::devnet::DevnetChain;
use crate::chain::Chain;
use crate::hub::local::LocalHub;
use crate::hub::Hub;
use crate::keys::{load_hotkey, load_or_create_wallet, Signer, WalletPath};

/// The demo miners, in commit order: the duplicate commits last, so it is the later copy.
pub const DEMO_MINERS: [&str; 5] = ["on_topic", "off_topic", "malformed", "partial", "duplicate"];

/// Where everything of one validator lives, resolved against the config file's directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The directory relative paths of the config are resolved against.
    pub base: PathBuf,
}

impl Paths {
    /// Paths for a config file at `config_path`.
    pub fn new(config: &ClusterConfig, config_path: &Path) -> Self {
        let base = worker::serve::config_base(config_path);
        Self {
            state_dir: base.join(&config.coordinator.state_dir),
            base,
        }
    }

    /// `path` relative to the config's directory unless absolute.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The validator's SQLite state.
    pub fn state_db(&self) -> PathBuf {
        self.state_dir.join("validator.sqlite")
    }

    /// The devnet chain's SQLite file.
    pub fn devnet_db(&self) -> PathBuf {
        self.state_dir.join("devnet.sqlite")
    }

    /// The local hub's directory.
    pub fn hub_dir(&self) -> PathBuf {
        self.state_dir.join("hub")
    }

    /// Wallets of the devnet's validator and demo miners.
    pub fn wallets(&self) -> PathBuf {
        self.state_dir.join("wallets")
    }

    /// The validator's wallet.
    pub fn validator_wallet(&self) -> WalletPath {
        WalletPath {
            root: self.wallets(),
            name: "validator".into(),
            hotkey: "default".into(),
        }
    }
}

/// The model directory, generating the tiny model on first use.
pub fn model_dir(config: &ClusterConfig, paths: &Paths) -> anyhow::Result<PathBuf> {
    worker::serve::model_dir(config, &paths.base)
}

/// The eval rows, their content hash and the file's bytes.
pub fn eval_set(
    config: &ClusterConfig,
    paths: &Paths,
) -> anyhow::Result<(Vec<Row>, String, Vec<u8>)> {
    let path = paths.resolve(&config.eval.set);
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("eval set {}: {e}", path.display()))?;
    let limits = DatasetLimits {
        max_rows: usize::MAX,
        max_file_bytes: u64::MAX,
        ..config.dataset.clone()
    };
    let dataset = parse_dataset(&bytes, &limits)
        .map_err(|e| anyhow::anyhow!("eval set {}: {e}", path.display()))?;
    Ok((dataset.rows, dataset.content_hash, bytes))
}

/// The devnet chain and hub, with the subnet, the validator and (first run) the demo miners.
pub async fn devnet(
    config: &ClusterConfig,
    paths: &Paths,
) -> anyhow::Result<(Arc<DevnetChain>, Arc<LocalHub>, Signer)> {
    anyhow::ensure!(
        config.mode == Mode::Devnet,
        "mode {:?} needs the subtensor client, which is not built yet",
        config.mode
    );
    let chain = Arc::new(DevnetChain::open(
        &paths.devnet_db(),
        config.devnet.block_time_ms,
    )?);
    let hub = Arc::new(LocalHub::new(&paths.hub_dir()));
    let wallet = paths.validator_wallet();
    let netuid = config.netuid;
    if chain.has_subnet(netuid)? {
        let signer = load_hotkey(&wallet)?;
        return Ok((chain, hub, signer));
    }
    tracing::info!(netuid, "first run: creating the devnet subnet");
    chain.create_subnet(
        netuid,
        config.devnet.tempo,
        config.devnet.weights_rate_limit,
    )?;
    let signer = load_or_create_wallet(&wallet)?;
    let coldkey = crate::keys::load_coldkeypub(&wallet)?;
    chain.register_neuron(netuid, signer.account(), coldkey, 1_000_000, true)?;
    if config.devnet.demo_miners {
        register_demo_miners(config, paths, &chain, &hub).await?;
    }
    Ok((chain, hub, signer))
}

async fn register_demo_miners(
    config: &ClusterConfig,
    paths: &Paths,
    chain: &DevnetChain,
    hub: &LocalHub,
) -> anyhow::Result<()> {
    let demo_dir = paths.resolve(&config.devnet.demo_dir);
    for name in DEMO_MINERS {
        let file = demo_dir.join(format!("{name}.jsonl"));
        let bytes = std::fs::read(&file)
            .map_err(|e| anyhow::anyhow!("demo miner {}: {e}", file.display()))?;
        let wallet = WalletPath {
            root: paths.wallets(),
            name: format!("miner-{name}"),
            hotkey: "default".into(),
        };
        let hotkey = load_or_create_wallet(&wallet)?;
        let coldkey = crate::keys::load_coldkeypub(&wallet)?;
        let uid = chain.register_neuron(config.netuid, hotkey.account(), coldkey, 0, false)?;
        let repo = format!("demo/{}", name.replace('_', "-"));
        let revision = hub.publish(&repo, &bytes).await?;
        let commitment = Commitment {
            repo,
            competition_id: "1".into(),
            revision,
        };
        let block = chain
            .set_commitment(&hotkey, config.netuid, commitment.to_string().as_bytes())
            .await?;
        tracing::info!(uid, miner = name, %commitment, block, "demo miner committed");
    }
    Ok(())
}
