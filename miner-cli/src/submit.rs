//! `submit`: validate → upload (the devnet's local hub, or a private Hugging Face dataset repo)
//! → commit `repo:competition:sha` on chain, retrying while the hotkey's commitment space for the
//! epoch is used up → (only then) make the repo public, unless `--keep-private`.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use protocol::commitment::Commitment;
use subtensor::wallet::Signer;
use subtensor::{Chain, ChainError};

use crate::analysis::load_dataset;
use crate::ctx::Ctx;

/// `submit`'s options.
pub struct SubmitArgs<'a> {
    /// The JSONL file.
    pub dataset_path: &'a Path,
    /// `namespace/name`.
    pub repo: &'a str,
    /// The competition id.
    pub competition: &'a str,
    /// Make the HF repo public after the commitment landed (the default; `--keep-private`
    /// turns it off).
    pub public: bool,
    /// Retries on a used-up commitment space.
    pub max_retries: u32,
}

/// Blocks until the next epoch of `netuid` starts, as subtensor counts them
/// (`tempo - (block + netuid + 1) % (tempo + 1)`), plus one.
pub fn blocks_to_next_epoch(block: u64, netuid: u16, tempo: u64) -> u64 {
    if tempo == 0 {
        return 1;
    }
    tempo - (block + u64::from(netuid) + 1) % (tempo + 1) + 1
}

/// Commits `data`, waiting `wait(attempt)` (with a visible countdown) and retrying at most
/// `max_retries` times while the chain says the commitment space of this epoch is used up. Any
/// other error fails at once.
pub async fn commit_with_retry<W, F>(
    chain: &dyn Chain,
    signer: &Signer,
    netuid: u16,
    data: &[u8],
    max_retries: u32,
    mut wait: W,
) -> Result<u64>
where
    W: FnMut() -> F,
    F: std::future::Future<Output = Duration>,
{
    let mut attempt = 0u32;
    loop {
        match chain.set_commitment(signer, netuid, data).await {
            Ok(block) => return Ok(block),
            Err(ChainError::CommitmentSpaceUsed) if attempt < max_retries => {
                attempt += 1;
                let pause = wait().await;
                crate::ui::countdown(
                    pause,
                    &format!(
                        "hotkey {}: commitment space of this epoch used up (attempt {attempt} of {max_retries} retries)",
                        signer.account()
                    ),
                )
                .await;
            }
            Err(e @ ChainError::CommitmentSpaceUsed) => bail!(
                "hotkey {}: {e}; gave up after {max_retries} retries (raise --max-retries, or run submit again in the next epoch)",
                signer.account()
            ),
            Err(e) => bail!("hotkey {} on netuid {netuid}: {e}", signer.account()),
        }
    }
}

/// `submit`.
pub async fn submit(ctx: &Ctx, args: SubmitArgs<'_>) -> Result<()> {
    let config = &ctx.config;
    let (dataset, bytes) = load_dataset(args.dataset_path, &config.dataset)?;
    // Check the commitment's parts before uploading anything.
    Commitment::new(args.repo, args.competition, &"0".repeat(40)).map_err(|e| {
        anyhow!(
            "--hf_repo_id {} / --competition {}: {e}",
            args.repo,
            args.competition
        )
    })?;
    // A competition the validator config does not list would spend the commitment on weight 0.
    if let Err(reason) = config.competition(args.competition) {
        bail!(
            "--competition {}: {reason} in {} (its [[competitions]]: see miner-cli --list-competitions); validators give it weight 0, so nothing was uploaded or committed",
            args.competition,
            ctx.config_path.display()
        );
    }
    if config.competitions.is_empty() && args.competition != crate::ctx::DEFAULT_COMPETITION {
        eprintln!(
            "warning: competition {:?}: {} lists no competitions; the subnet's miners commit under {:?} (see --list-competitions)",
            args.competition,
            ctx.config_path.display(),
            crate::ctx::DEFAULT_COMPETITION
        );
    }
    let signer = ctx.signer()?;
    let chain = ctx.chain().await?;
    subtensor::args::check_registered(chain.as_ref(), config.netuid, &signer).await?;
    println!(
        "{}: valid, {} rows, content hash {}",
        args.dataset_path.display(),
        dataset.rows.len(),
        dataset.content_hash
    );

    // Upload.
    let hf = if config.uses_huggingface() {
        Some(ctx.hf_client()?)
    } else {
        None
    };
    let revision = match &hf {
        Some(client) => {
            let bar = crate::ui::bytes(&format!("uploading to {}", args.repo));
            bar.set_length(bytes.len() as u64);
            let client = client
                .clone()
                .with_progress(crate::ui::hub_sink(bar.clone()));
            let sha = client
                .publish_dataset(args.repo, &bytes, true)
                .await
                .map_err(|e| {
                    anyhow!(
                        "upload to {} ({}): {e}",
                        args.repo,
                        client.config().endpoint
                    )
                })?;
            bar.finish_and_clear();
            println!(
                "uploaded data.jsonl ({} bytes) to dataset repo {} at {} (private until committed{})",
                bytes.len(),
                args.repo,
                sha,
                if args.public { "" } else { "; stays private: --keep-private" }
            );
            sha
        }
        None => {
            let hub = hub::LocalHub::new(&ctx.paths.hub_dir());
            let sha = hub::Hub::publish(&hub, args.repo, &bytes)
                .await
                .map_err(|e| {
                    anyhow!(
                        "publish to the local hub {}: {e}",
                        ctx.paths.hub_dir().display()
                    )
                })?;
            println!(
                "published {} rows to {} at {sha} (local hub {})",
                dataset.rows.len(),
                args.repo,
                ctx.paths.hub_dir().display()
            );
            sha
        }
    };

    // Commit.
    let commitment = Commitment::new(args.repo, args.competition, &revision)
        .map_err(|e| anyhow!("commitment for {}@{revision}: {e}", args.repo))?;
    let text = commitment.to_string();
    let netuid = config.netuid;
    let block_time = ctx.block_time();
    let block = commit_with_retry(
        chain.as_ref(),
        &signer,
        netuid,
        text.as_bytes(),
        args.max_retries,
        || {
            let chain = chain.clone();
            async move {
                match chain.metagraph(netuid).await {
                    Ok(m) => {
                        block_time * blocks_to_next_epoch(m.block, netuid, m.params.tempo) as u32
                    }
                    Err(_) => block_time * 360,
                }
            }
        },
    )
    .await?;
    println!(
        "committed {text} at block {block} (hotkey {}, netuid {netuid})",
        signer.account()
    );

    // Visibility, only now that the commitment is on chain (the local hub has no private repos).
    if let (true, Some(client)) = (args.public, &hf) {
        client
            .set_visibility(args.repo, true)
            .await
            .map_err(|e| anyhow!("making {} public (the commitment is on chain already; retry with the Hub's settings page): {e}", args.repo))?;
        println!("dataset repo {} is now public", args.repo);
    }
    println!("validators read back: {text}");
    println!(
        "  repo {}, competition {}, revision {} (block {block})",
        commitment.repo, commitment.competition_id, commitment.revision
    );
    println!(
        "  check with: coordinator --config {} chain commitments   (or: miner-cli status)",
        ctx.config_path.display()
    );
    if hf.is_some() && !args.public {
        eprintln!(
            "warning: --keep-private: {} stays private, so validators cannot read it and this \
             commitment scores nothing until you make the repo public (the Hub's settings page)",
            args.repo
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use subtensor::{CommitmentRecord, Metagraph};

    /// A chain whose first `full` commitments fail with a used-up space.
    struct Full {
        full: u32,
        calls: AtomicU32,
    }

    #[async_trait::async_trait]
    impl Chain for Full {
        async fn current_block(&self) -> Result<u64, ChainError> {
            Ok(1)
        }
        async fn metagraph(&self, _netuid: u16) -> Result<Metagraph, ChainError> {
            Err(ChainError::Backend {
                item: "metagraph",
                reason: "unused".into(),
            })
        }
        async fn commitments(&self, _netuid: u16) -> Result<Vec<CommitmentRecord>, ChainError> {
            Ok(Vec::new())
        }
        async fn set_commitment(
            &self,
            _signer: &Signer,
            _netuid: u16,
            _data: &[u8],
        ) -> Result<u64, ChainError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.full {
                Err(ChainError::CommitmentSpaceUsed)
            } else {
                Ok(100 + u64::from(n))
            }
        }
        async fn set_weights(
            &self,
            _signer: &Signer,
            _netuid: u16,
            _uids: &[u16],
            _weights: &[u16],
            _version_key: u64,
        ) -> Result<u64, ChainError> {
            unreachable!("not used")
        }
        async fn weights(
            &self,
            _netuid: u16,
            _validator_uid: u16,
        ) -> Result<(Vec<(u16, u16)>, Option<u64>), ChainError> {
            Ok((Vec::new(), None))
        }
    }

    fn signer() -> Signer {
        let dir = tempfile::tempdir().expect("tempdir");
        subtensor::wallet::load_or_create_wallet(&subtensor::wallet::WalletPath {
            root: dir.path().to_path_buf(),
            name: "m".into(),
            hotkey: "h".into(),
        })
        .expect("wallet")
    }

    #[tokio::test]
    async fn retries_a_used_up_commitment_space_then_lands() {
        let chain = Full {
            full: 2,
            calls: AtomicU32::new(0),
        };
        let waits = AtomicU32::new(0);
        let block = commit_with_retry(&chain, &signer(), 1, b"a/b:1:x", 3, || {
            waits.fetch_add(1, Ordering::SeqCst);
            async { Duration::from_millis(10) }
        })
        .await
        .expect("lands on the third try");
        assert_eq!(block, 102);
        assert_eq!(waits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn gives_up_after_max_retries_naming_the_hotkey() {
        let chain = Full {
            full: 10,
            calls: AtomicU32::new(0),
        };
        let signer = signer();
        let err = commit_with_retry(&chain, &signer, 1, b"a/b:1:x", 1, || async {
            Duration::from_millis(1)
        })
        .await
        .expect_err("space stays used");
        let text = format!("{err:#}");
        assert!(
            text.contains(&signer.account().to_ss58()) && text.contains("after 1 retries"),
            "{text}"
        );
        assert_eq!(chain.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn next_epoch_distance_follows_subtensor() {
        // tempo 360, netuid 1: an epoch runs at the block where (block + 2) % 361 == 0.
        assert_eq!(blocks_to_next_epoch(358, 1, 360), 1);
        assert_eq!(blocks_to_next_epoch(359, 1, 360), 361);
        assert_eq!(blocks_to_next_epoch(0, 1, 360), 359);
        assert_eq!(blocks_to_next_epoch(5, 1, 0), 1);
    }
}
