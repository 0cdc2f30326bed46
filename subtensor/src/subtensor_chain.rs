//! [`Chain`] on a real subtensor node, through the subxt client of [`crate::client`]. This
//! module only translates the client's errors into [`ChainError`] (pallet errors by name:
//! `SettingWeightsTooFast` becomes [`ChainError::RateLimited`] with the blocks left, and so on).

use async_trait::async_trait;

use crate::account::AccountId;
use crate::chain::{Chain, ChainError, CommitmentRecord, Metagraph};
use crate::client::Subtensor;
use crate::error::Error as SubtensorError;
use crate::wallet::Signer;

/// A subtensor node as a [`Chain`].
#[derive(Debug, Clone)]
pub struct SubtensorChain {
    client: Subtensor,
}

impl SubtensorChain {
    /// Wraps a connected client.
    pub fn new(client: Subtensor) -> Self {
        SubtensorChain { client }
    }

    /// The client, for reads this trait does not cover.
    pub fn client(&self) -> &Subtensor {
        &self.client
    }

    /// Translates a client error for `call`; `netuid` and `signer` fill in the details some
    /// pallet errors need.
    async fn translate(
        &self,
        call: &'static str,
        netuid: u16,
        signer: Option<&Signer>,
        e: SubtensorError,
    ) -> ChainError {
        let hotkey = || signer.map(|s| s.account().to_ss58()).unwrap_or_default();
        match e {
            SubtensorError::NotRegistered { hotkey, netuid, .. } => ChainError::NotRegistered {
                call,
                hotkey,
                netuid,
            },
            SubtensorError::UnknownNetuid { netuid, .. } => {
                ChainError::UnknownNetuid { call, netuid }
            }
            SubtensorError::Timeout { seconds, .. } => ChainError::Timeout { call, seconds },
            SubtensorError::Dispatch { ref error, .. } => match error.as_str() {
                "SettingWeightsTooFast" | "CommittingWeightsTooFast" => {
                    let blocks_left = self.blocks_left(netuid, signer).await.unwrap_or(1);
                    ChainError::RateLimited { blocks_left }
                }
                "CommitRevealEnabled" => ChainError::CommitRevealEnabled { netuid },
                "NeuronNoValidatorPermit" => ChainError::NoValidatorPermit {
                    hotkey: hotkey(),
                    netuid,
                },
                "SpaceLimitExceeded" => ChainError::CommitmentSpaceUsed,
                "HotKeyNotRegisteredInSubNet" | "AccountNotAllowedCommit" => {
                    ChainError::NotRegistered {
                        call,
                        hotkey: hotkey(),
                        netuid,
                    }
                }
                "RevealTooEarly" => ChainError::RevealWindow {
                    reason: "RevealTooEarly: the commit's reveal epoch has not started".into(),
                },
                "ExpiredWeightCommit" => ChainError::RevealWindow {
                    reason: "ExpiredWeightCommit: the commit's reveal epoch has passed".into(),
                },
                "IncorrectWeightVersionKey" => {
                    let required = self
                        .client
                        .subnet_params(netuid)
                        .await
                        .map(|p| p.weights_version_key)
                        .unwrap_or(0);
                    ChainError::Invalid {
                        call,
                        reason: format!(
                            "IncorrectWeightVersionKey: the subnet requires version key {required} \
                             or higher"
                        ),
                    }
                }
                _ => ChainError::Invalid {
                    call,
                    reason: e.to_string(),
                },
            },
            SubtensorError::Invalid { reason, .. } => ChainError::Invalid { call, reason },
            other => ChainError::Backend {
                item: call,
                reason: other.to_string(),
            },
        }
    }

    /// `result` with its error translated for `call`.
    async fn lift<T>(
        &self,
        call: &'static str,
        netuid: u16,
        signer: Option<&Signer>,
        result: Result<T, SubtensorError>,
    ) -> Result<T, ChainError> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => Err(self.translate(call, netuid, signer, e).await),
        }
    }

    /// Blocks until `signer` may set or commit weights again.
    async fn blocks_left(&self, netuid: u16, signer: Option<&Signer>) -> Option<u64> {
        let hotkey = signer?.account();
        let mg = self.client.metagraph(netuid).await.ok()?;
        let neuron = mg.neuron_of(&hotkey)?;
        let since = mg.block.saturating_sub(neuron.last_update);
        Some(mg.params.weights_rate_limit.saturating_sub(since).max(1))
    }
}

#[async_trait]
impl Chain for SubtensorChain {
    async fn current_block(&self) -> Result<u64, ChainError> {
        let result = self.client.current_block().await;
        self.lift("current_block", 0, None, result).await
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        let result = self.client.metagraph(netuid).await;
        self.lift("metagraph", netuid, None, result).await
    }

    async fn commitments(&self, netuid: u16) -> Result<Vec<CommitmentRecord>, ChainError> {
        let uids: std::collections::BTreeMap<[u8; 32], u16> = self
            .metagraph(netuid)
            .await?
            .neurons
            .iter()
            .map(|n| (n.hotkey.0, n.uid))
            .collect();
        let result = self.client.commitments(netuid).await;
        let found = self.lift("commitments", netuid, None, result).await?;
        let mut out = Vec::new();
        for c in found {
            let hotkey = AccountId(c.hotkey);
            match c.data {
                Ok(data) => out.push(CommitmentRecord {
                    uid: uids.get(&c.hotkey).copied(),
                    hotkey,
                    data,
                    block: c.block,
                }),
                Err(reason) => {
                    tracing::warn!(%hotkey, netuid, %reason, "Commitments.CommitmentOf: skipped")
                }
            }
        }
        out.sort_by_key(|c| (c.block, c.hotkey.0));
        Ok(out)
    }

    async fn set_commitment(
        &self,
        signer: &Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<u64, ChainError> {
        let result = self
            .client
            .set_commitment(signer.hotkey(), netuid, data)
            .await;
        self.lift("set_commitment", netuid, Some(signer), result)
            .await
    }

    async fn set_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        let result = self
            .client
            .set_weights(signer.hotkey(), netuid, uids, weights, version_key)
            .await;
        self.lift("set_weights", netuid, Some(signer), result).await
    }

    async fn commit_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        hash: [u8; 32],
    ) -> Result<u64, ChainError> {
        let result = self
            .client
            .commit_weights(signer.hotkey(), netuid, hash)
            .await;
        self.lift("commit_weights", netuid, Some(signer), result)
            .await
    }

    async fn reveal_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        salt: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        let result = self
            .client
            .reveal_weights(signer.hotkey(), netuid, uids, values, salt, version_key)
            .await;
        self.lift("reveal_weights", netuid, Some(signer), result)
            .await
    }

    async fn weight_commit_epoch(
        &self,
        netuid: u16,
        hotkey: &AccountId,
        hash: [u8; 32],
    ) -> Result<Option<u64>, ChainError> {
        let result = self.client.weight_commits(netuid, &hotkey.0).await;
        let commits = self.lift("weight_commits", netuid, None, result).await?;
        Ok(commits.iter().find(|c| c.hash == hash).map(|c| c.epoch))
    }

    async fn epoch_index(&self, netuid: u16) -> Result<Option<u64>, ChainError> {
        let result = self.client.epoch_index(netuid).await;
        self.lift("epoch_index", netuid, None, result).await
    }

    async fn weights(
        &self,
        netuid: u16,
        validator_uid: u16,
    ) -> Result<(Vec<(u16, u16)>, Option<u64>), ChainError> {
        let result = self.client.weights(netuid, validator_uid).await;
        let row = self.lift("weights", netuid, None, result).await?;
        let result = self.client.last_update(netuid, validator_uid).await;
        let last = self.lift("weights", netuid, None, result).await?;
        Ok((row, Some(last).filter(|b| *b > 0)))
    }
}
