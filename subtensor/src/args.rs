//! Which chain and wallet a command uses: the bittensor-style flags (`--subtensor.network`,
//! `--subtensor.chain_endpoint`, `--netuid`, `--wallet.name`, `--wallet.hotkey`, `--wallet.path`) over `cluster.toml`'s `mode`,
//! `netuid` and `[subtensor]` table, and the connection to a subtensor node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protocol::config::{ClusterConfig, Mode};

use crate::chain::Chain;
use crate::client::Subtensor;
use crate::network::Network;
use crate::subtensor_chain::SubtensorChain;
use crate::wallet::{Signer, WalletPath};

/// The chain and wallet flags shared by `coordinator` and `miner-cli`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChainArgs {
    /// `devnet`, `finney`, `test`, `local` or a ws:// / wss:// URL (default: the config's mode).
    #[arg(long = "subtensor.network", global = true)]
    pub network: Option<String>,
    /// A `ws://` / `wss://` node URL, as bittensor's `--subtensor.chain_endpoint` (e.g. your own
    /// lite node with `--subtensor.network finney`). Sets `[subtensor] endpoint`; without
    /// `--subtensor.network` the mode stays the config's, or becomes `local` on the devnet.
    #[arg(long = "subtensor.chain_endpoint", global = true)]
    pub chain_endpoint: Option<String>,
    /// The subnet (default: the config's netuid).
    #[arg(long, global = true)]
    pub netuid: Option<u16>,
    /// Wallet name under the wallet path.
    #[arg(long = "wallet.name", global = true, env = "BT_WALLET_NAME")]
    pub wallet_name: Option<String>,
    /// Hotkey name in the wallet.
    #[arg(long = "wallet.hotkey", global = true, env = "BT_WALLET_HOTKEY")]
    pub wallet_hotkey: Option<String>,
    /// The wallets directory (default `~/.bittensor/wallets`).
    #[arg(long = "wallet.path", global = true, env = "BT_WALLET_PATH")]
    pub wallet_path: Option<String>,
}

impl ChainArgs {
    /// Writes the flags given into `config` (mode, netuid, `[subtensor]`).
    pub fn apply(&self, config: &mut ClusterConfig) -> anyhow::Result<()> {
        if let Some(network) = &self.network {
            match network.as_str() {
                "devnet" => config.mode = Mode::Devnet,
                "local" => config.mode = Mode::Local,
                "test" | "testnet" => config.mode = Mode::Test,
                "finney" | "main" | "mainnet" => config.mode = Mode::Finney,
                other => {
                    let parsed = Network::parse(other).map_err(anyhow::Error::msg)?;
                    config.mode = Mode::Local;
                    config.subtensor.endpoint = parsed.url;
                }
            }
        }
        if let Some(endpoint) = &self.chain_endpoint {
            let parsed = Network::parse(endpoint).map_err(|_| {
                anyhow::anyhow!(
                    "--subtensor.chain_endpoint {endpoint:?}: expected a ws:// or wss:// URL \
                     (or finney, test, local)"
                )
            })?;
            if config.mode == Mode::Devnet {
                config.mode = Mode::Local;
            }
            config.subtensor.endpoint = parsed.url;
        }
        if let Some(netuid) = self.netuid {
            config.netuid = netuid;
        }
        if let Some(v) = &self.wallet_name {
            config.subtensor.wallet_name = v.clone();
        }
        if let Some(v) = &self.wallet_hotkey {
            config.subtensor.wallet_hotkey = v.clone();
        }
        if let Some(v) = &self.wallet_path {
            config.subtensor.wallet_path = v.clone();
        }
        Ok(())
    }
}

/// The node of a non-devnet mode: `[subtensor] endpoint` when set, else the mode's public one.
pub fn network(config: &ClusterConfig) -> anyhow::Result<Network> {
    let name = if !config.subtensor.endpoint.is_empty() {
        config.subtensor.endpoint.as_str()
    } else {
        match config.mode {
            Mode::Local => "local",
            Mode::Test => "test",
            Mode::Finney => "finney",
            Mode::Devnet => anyhow::bail!("the devnet has no subtensor endpoint"),
        }
    };
    Network::parse(name).map_err(anyhow::Error::msg)
}

/// The configured Bittensor wallet (`~` expanded).
pub fn wallet(config: &ClusterConfig) -> WalletPath {
    let path = &config.subtensor.wallet_path;
    let root = match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(path),
    };
    WalletPath {
        root,
        name: config.subtensor.wallet_name.clone(),
        hotkey: config.subtensor.wallet_hotkey.clone(),
    }
}

/// Connects to the subtensor node of `config` (not the devnet) and checks that `netuid`
/// exists, so a wrong endpoint or netuid fails here, in one line, within the timeout.
pub async fn connect(config: &ClusterConfig) -> anyhow::Result<Arc<SubtensorChain>> {
    let network = network(config)?;
    let timeout = Duration::from_secs(config.subtensor.timeout_secs);
    let client = Subtensor::connect(&network, timeout).await?;
    client.subnet_params(config.netuid).await?;
    tracing::info!(%network, netuid = config.netuid, "connected to subtensor");
    Ok(Arc::new(SubtensorChain::new(client)))
}

/// A chain view for read-only commands: the devnet's SQLite file or a subtensor node.
#[cfg(feature = "devnet")]
pub async fn read_only_chain(
    config: &ClusterConfig,
    paths: &protocol::config::Paths,
) -> anyhow::Result<Arc<dyn Chain>> {
    if config.mode == Mode::Devnet {
        let db = paths.devnet_db();
        anyhow::ensure!(
            db.exists(),
            "{}: no devnet yet (run `coordinator run` once)",
            db.display()
        );
        Ok(Arc::new(crate::devnet::DevnetChain::open(
            &db,
            config.devnet.block_time_ms,
        )?))
    } else {
        Ok(connect(config).await?)
    }
}

/// Fails unless `signer`'s hotkey is a neuron of `netuid`.
pub async fn check_registered(
    chain: &dyn Chain,
    netuid: u16,
    signer: &Signer,
) -> anyhow::Result<u16> {
    let metagraph = chain.metagraph(netuid).await?;
    metagraph
        .neuron_of(&signer.account())
        .map(|n| n.uid)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "hotkey {} is not registered on netuid {netuid}",
                signer.account()
            )
        })
}
