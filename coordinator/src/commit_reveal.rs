//! Hash commit-reveal of weights (`docs/subtensor.md`, the epoch's emit step): on a subnet with
//! commit-reveal enabled, the validator commits `BlakeTwo256(hotkey, netuid, uids, values, salt,
//! version_key)` and reveals the values exactly in epoch `commit_epoch + RevealPeriodEpochs`.
//!
//! Each commit is written to the validator's state **before** it is sent ([`State::record_weight_commit`]),
//! with its salt, so a coordinator that dies after sending it still reveals it after a restart:
//! [`reveal_due`] runs at the start of every epoch and on a timer, reveals what is due, leaves
//! what is early, and closes what expired or never reached the chain.

use subtensor::weights::{commit_hash, netuid_index, random_salt, reveal_window, RevealWindow};

use crate::state::{CommitStatus, PendingCommit, State, StateError};
use subtensor::Signer;
use subtensor::{Chain, ChainError};

/// Commit and reveal calls of one process never overlap (a reveal racing another of the same
/// commit would fail with `NoWeightsCommitFound`).
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What went wrong: the chain or the state.
#[derive(Debug, thiserror::Error)]
pub enum CommitRevealError {
    /// A chain call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What [`reveal_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevealSummary {
    /// Blocks of the reveals sent now.
    pub revealed: Vec<u64>,
    /// Commits still waiting for their epoch: (commit block, reveal epoch).
    pub waiting: Vec<(Option<u64>, u64)>,
    /// Commits closed without a reveal (window passed, or never on chain).
    pub expired: usize,
}

fn decode_hash(text: &str) -> Result<[u8; 32], StateError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            StateError(format!(
                "weight commit hash {text:?} is not 32 bytes of hex"
            ))
        })
}

/// Commits `emission` for `signer` on `netuid`: stored in the state first, then sent; records
/// the block and the epoch index the chain gave it. Returns the commit's block.
pub async fn commit(
    chain: &dyn Chain,
    state: &State,
    signer: &Signer,
    netuid: u16,
    emission: &[(u16, u16)],
    version_key: u64,
) -> Result<u64, CommitRevealError> {
    let _guard = LOCK.lock().await;
    let (uids, values): (Vec<u16>, Vec<u16>) = emission.iter().copied().unzip();
    let salt = random_salt();
    let account = signer.account();
    let hash = commit_hash(
        &account.0,
        netuid_index(netuid),
        &uids,
        &values,
        &salt,
        version_key,
    );
    let pending = PendingCommit {
        netuid,
        hotkey: account.to_ss58(),
        uids,
        values,
        salt,
        version_key,
        hash: hex::encode(hash),
        commit_block: None,
        commit_epoch: None,
    };
    state.record_weight_commit(&pending)?;
    let block = match chain.commit_weights(signer, netuid, hash).await {
        Ok(block) => block,
        Err(e) => {
            // Refused by the chain: nothing to reveal. (A timeout stays open: the chain may
            // have it, and `reveal_due` will find out.)
            if !matches!(e, ChainError::Timeout { .. } | ChainError::Backend { .. }) {
                state.close_weight_commit(&pending.hash, CommitStatus::Expired, 0)?;
            }
            return Err(e.into());
        }
    };
    let epoch = chain.weight_commit_epoch(netuid, &account, hash).await?;
    state.set_weight_commit_landed(&pending.hash, block, epoch)?;
    tracing::info!(block, ?epoch, netuid, "weights committed");
    Ok(block)
}

/// Reveals `signer`'s stored commits on `netuid` whose reveal epoch is now, oldest first;
/// closes the ones whose epoch passed or that the chain never had.
pub async fn reveal_due(
    chain: &dyn Chain,
    state: &State,
    signer: &Signer,
    netuid: u16,
) -> Result<RevealSummary, CommitRevealError> {
    let _guard = LOCK.lock().await;
    let account = signer.account();
    let mine: Vec<PendingCommit> = state
        .open_weight_commits()?
        .into_iter()
        .filter(|c| c.netuid == netuid && c.hotkey == account.to_ss58())
        .collect();
    let mut summary = RevealSummary::default();
    if mine.is_empty() {
        return Ok(summary);
    }
    let metagraph = chain.metagraph(netuid).await?;
    let Some(current) = chain.epoch_index(netuid).await? else {
        return Err(ChainError::Invalid {
            call: "reveal_weights",
            reason: "the chain has no SubnetEpochIndex to time reveals by".into(),
        }
        .into());
    };
    for c in mine {
        let hash = decode_hash(&c.hash)?;
        let commit_epoch = match c.commit_epoch {
            Some(epoch) => epoch,
            None => match chain.weight_commit_epoch(netuid, &account, hash).await? {
                Some(epoch) => {
                    state.set_weight_commit_landed(
                        &c.hash,
                        c.commit_block.unwrap_or(0),
                        Some(epoch),
                    )?;
                    epoch
                }
                None => {
                    tracing::warn!(hash = %c.hash, "weight commit never reached the chain; dropped");
                    state.close_weight_commit(&c.hash, CommitStatus::Expired, metagraph.block)?;
                    summary.expired += 1;
                    continue;
                }
            },
        };
        match reveal_window(commit_epoch, metagraph.params.reveal_period, current) {
            RevealWindow::Wait { reveal_epoch } => {
                summary.waiting.push((c.commit_block, reveal_epoch));
            }
            RevealWindow::Expired => {
                tracing::warn!(hash = %c.hash, commit_epoch, current, "weight commit expired unrevealed");
                state.close_weight_commit(&c.hash, CommitStatus::Expired, metagraph.block)?;
                summary.expired += 1;
            }
            RevealWindow::Open => {
                let block = chain
                    .reveal_weights(signer, netuid, &c.uids, &c.values, &c.salt, c.version_key)
                    .await?;
                state.close_weight_commit(&c.hash, CommitStatus::Revealed, block)?;
                tracing::info!(block, commit_epoch, "weights revealed");
                summary.revealed.push(block);
            }
        }
    }
    Ok(summary)
}
