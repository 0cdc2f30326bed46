//! Start-up of a validator from `cluster.toml`: the state directory, the devnet with its
//! validator and demo miners (first run only), the model, the eval set, the workers.

use std::path::PathBuf;
use std::sync::Arc;

use hub::progress::ProgressSink;
use hub::{Hub, HubClient};
use protocol::commitment::Commitment;
use protocol::config::{ClusterConfig, Mode, Paths};
use subtensor::wallet::{load_coldkeypub, load_hotkey, load_or_create_wallet};
use subtensor::{Chain, DevnetChain, Signer, WalletPath};

/// The demo miners, in commit order: the duplicate commits last, so it is the later copy.
pub const DEMO_MINERS: [&str; 5] = ["on_topic", "off_topic", "malformed", "partial", "duplicate"];

/// The devnet validator's wallet, under the state directory.
pub fn validator_wallet(paths: &Paths) -> WalletPath {
    WalletPath {
        root: paths.wallets(),
        name: "validator".into(),
        hotkey: "default".into(),
    }
}

/// The model directory: the Hub repo `[model] source` names, downloaded into the Hub cache with
/// a progress bar, or the local directory, where the tiny model is generated on first use.
pub async fn model(
    config: &ClusterConfig,
    paths: &Paths,
    client: Option<&HubClient>,
) -> anyhow::Result<PathBuf> {
    let (bar, sink) = download_bar();
    let dir = hub::resolve::model(config, paths, client, Some(sink)).await?;
    bar.finish_and_clear();
    if config.uses_tiny_model() && !dir.join("config.json").exists() {
        worker::write_tiny_model(&dir, config.model.tiny_seed)?;
    }
    Ok(dir)
}

/// A progress bar on stderr for a multi-gigabyte model download (drawn only when stderr is a
/// terminal), and the sink that feeds it: bytes of the file being downloaded.
fn download_bar() -> (indicatif::ProgressBar, Arc<dyn ProgressSink>) {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:30} {bytes:>10}/{total_bytes:10} {wide_bar} {bytes_per_sec:>12} eta {eta}",
    ) {
        bar.set_style(style);
    }
    let fed = bar.clone();
    let sink = Arc::new(move |file: &str, done: u64, total: Option<u64>| {
        if let Some(total) = total {
            fed.set_length(total);
        }
        fed.set_message(file.to_string());
        fed.set_position(done);
    });
    (bar, sink)
}

/// The devnet chain and hub, with the subnet, the validator and (first run) the demo miners.
pub async fn devnet(
    config: &ClusterConfig,
    paths: &Paths,
    hub: Arc<dyn Hub>,
) -> anyhow::Result<(Arc<DevnetChain>, Signer)> {
    anyhow::ensure!(
        config.mode == Mode::Devnet,
        "mode {:?} is not the devnet",
        config.mode
    );
    let chain = Arc::new(DevnetChain::open(
        &paths.devnet_db(),
        config.devnet.block_time_ms,
    )?);
    let wallet = validator_wallet(paths);
    let netuid = config.netuid;
    if chain.has_subnet(netuid)? {
        let signer = load_hotkey(&wallet)?;
        return Ok((chain, signer));
    }
    tracing::info!(netuid, "first run: creating the devnet subnet");
    chain.create_subnet(
        netuid,
        config.devnet.tempo,
        config.devnet.weights_rate_limit,
    )?;
    let signer = load_or_create_wallet(&wallet)?;
    let coldkey = load_coldkeypub(&wallet)?;
    chain.register_neuron(netuid, signer.account(), coldkey, 1_000_000, true)?;
    if config.devnet.demo_miners {
        register_demo_miners(config, paths, &chain, hub.as_ref()).await?;
    }
    Ok((chain, signer))
}

async fn register_demo_miners(
    config: &ClusterConfig,
    paths: &Paths,
    chain: &DevnetChain,
    hub: &dyn Hub,
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
        let coldkey = load_coldkeypub(&wallet)?;
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
