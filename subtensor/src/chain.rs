//! Chain access behind one trait: the embedded devnet (`crate::devnet::DevnetChain`, feature
//! `devnet`) and the subxt client for subtensor ([`crate::subtensor_chain::SubtensorChain`])
//! implement it; the coordinator and miner-cli only see [`Chain`]. The types follow what
//! subtensor offers (`docs/subtensor.md`): `NeuronInfoLite` and the subnet hyperparameters for the
//! metagraph, `Commitments.CommitmentOf` for commitments, `SubtensorModule.set_weights` and
//! `Weights` for weights, and the pallet errors for [`ChainError`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::wallet::Signer;

/// One registered neuron of a subnet (`NeuronInfoRuntimeApi.get_neurons_lite`, or the same
/// from storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neuron {
    /// Its uid in the subnet.
    pub uid: u16,
    /// The hotkey that signs for it.
    pub hotkey: AccountId,
    /// The owning coldkey.
    pub coldkey: AccountId,
    /// Alpha staked on it in this subnet, in the chain's smallest unit: the sum over its
    /// stakers in `NeuronInfoLite.stake` (or `TotalHotkeyAlpha` from storage). Kept for the
    /// table of `coordinator chain metagraph`; the SDK's names are below.
    pub stake: u64,
    /// The Python SDK's `metagraph.alpha_stake` (`SubnetInfoRuntimeApi.get_subnet_state`): the
    /// hotkey's alpha after parent/child delegation, in the smallest unit (the SDK divides by
    /// 10^9); [`Neuron::stake`] where the runtime has no such API.
    #[serde(default)]
    pub alpha_stake: u64,
    /// The SDK's `metagraph.tao_stake`: TAO staked on the hotkey on the root subnet, after
    /// parent/child delegation, in rao;
    /// `None` where the runtime has no `get_subnet_state`.
    #[serde(default)]
    pub tao_stake: Option<u64>,
    /// The SDK's `metagraph.total_stake` (its `S`): alpha plus TAO weighted by the chain's
    /// `TaoWeight`, as `get_subnet_state` computes it; `None` where the runtime has no such
    /// API.
    #[serde(default)]
    pub total_stake: Option<u64>,
    /// Whether it may set weights on others.
    pub validator_permit: bool,
    /// The block of its last weight update (0: never).
    pub last_update: u64,
    /// Whether the chain counts it as active.
    pub active: bool,
}

/// The subnet hyperparameters a validator needs
/// (`SubnetInfoRuntimeApi.get_subnet_hyperparams`, or the same from storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetParams {
    /// Blocks per epoch.
    pub tempo: u64,
    /// `WeightsSetRateLimit`: blocks a validator must wait between weight settings (and
    /// commits).
    pub weights_rate_limit: u64,
    /// `WeightsVersionKey`: the lowest version key accepted.
    pub weights_version_key: u64,
    /// `CommitRevealWeightsEnabled`: whether weights must go through commit-reveal.
    pub commit_reveal_enabled: bool,
    /// `RevealPeriodEpochs`: epochs between a weight commit and its reveal.
    pub reveal_period: u64,
    /// `MaxWeightsLimit` (u16 share of the largest weight; 65535 = no cap).
    pub max_weights_limit: u64,
    /// `MinAllowedWeights`.
    pub min_allowed_weights: u64,
}

/// What a validator needs to know about a subnet at one block: its hyperparameters and neurons.
/// As JSON the hyperparameters sit beside `netuid` and `block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metagraph {
    /// The subnet.
    pub netuid: u16,
    /// The block this view was read at.
    pub block: u64,
    /// Hyperparameters.
    #[serde(flatten)]
    pub params: SubnetParams,
    /// `SubnetEpochIndex`, when the chain has it.
    pub epoch_index: Option<u64>,
    /// Every neuron, in uid order.
    pub neurons: Vec<Neuron>,
}

impl Metagraph {
    /// The neuron with this hotkey.
    pub fn neuron_of(&self, hotkey: &AccountId) -> Option<&Neuron> {
        self.neurons.iter().find(|n| &n.hotkey == hotkey)
    }

    /// The neuron with this uid.
    pub fn neuron(&self, uid: u16) -> Option<&Neuron> {
        self.neurons.iter().find(|n| n.uid == uid)
    }
}

/// A hotkey's commitment as stored on chain (`Commitments.CommitmentOf`): raw bytes, the block
/// they landed in, and the hotkey's uid when it is (still) registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentRecord {
    /// The committer's uid on the subnet; `None` when the hotkey is no longer registered (the
    /// chain keeps a deregistered hotkey's commitment).
    pub uid: Option<u16>,
    /// Who committed.
    pub hotkey: AccountId,
    /// The committed bytes (a `Raw` field), not yet parsed.
    pub data: Vec<u8>,
    /// The block the commitment was included in.
    pub block: u64,
}

/// Why a chain call failed. Each variant has a counterpart on subtensor (named in its doc), and
/// its `Display` names the call or storage item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The hotkey has no uid in the subnet (`HotKeyNotRegisteredInSubNet`).
    #[error("{call}: hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered {
        /// The call.
        call: &'static str,
        /// The hotkey (SS58).
        hotkey: String,
        /// The subnet.
        netuid: u16,
    },
    /// The subnet does not exist (`SubNetworkDoesNotExist`).
    #[error("{call}: netuid {netuid} does not exist")]
    UnknownNetuid {
        /// The call.
        call: &'static str,
        /// The subnet.
        netuid: u16,
    },
    /// Weights were set too recently (`SettingWeightsTooFast`).
    #[error("set_weights: rate limited, {blocks_left} more block(s) to wait")]
    RateLimited {
        /// Blocks until allowed.
        blocks_left: u64,
    },
    /// The subnet takes weights only through commit-reveal (`CommitRevealEnabled`).
    #[error(
        "set_weights: netuid {netuid} has commit-reveal enabled; plain set_weights is refused"
    )]
    CommitRevealEnabled {
        /// The subnet.
        netuid: u16,
    },
    /// The version key is below the subnet's `WeightsVersionKey` (`IncorrectWeightVersionKey`).
    #[error("set_weights: version key {sent} is below the subnet's required {required}")]
    IncorrectVersionKey {
        /// The key sent.
        sent: u64,
        /// The subnet's `WeightsVersionKey`.
        required: u64,
    },
    /// Weights on other uids need a validator permit (`NeuronNoValidatorPermit`).
    #[error("set_weights: hotkey {hotkey} has no validator permit on netuid {netuid}")]
    NoValidatorPermit {
        /// The hotkey (SS58).
        hotkey: String,
        /// The subnet.
        netuid: u16,
    },
    /// The commitment does not fit (`SpaceLimitExceeded`).
    #[error("set_commitment: {bytes} bytes exceeds the space limit of {limit}")]
    SpaceLimitExceeded {
        /// Size sent.
        bytes: usize,
        /// Largest accepted.
        limit: usize,
    },
    /// The hotkey's commitment space for the current epoch is used up (`SpaceLimitExceeded` on
    /// subtensor: each commitment costs at least 100 of `MaxSpace` bytes per epoch).
    #[error(
        "set_commitment: the hotkey's commitment space for this epoch is used up \
         (SpaceLimitExceeded); retry in the next epoch"
    )]
    CommitmentSpaceUsed,
    /// A weight reveal outside its window (`RevealTooEarly`, `ExpiredWeightCommit`).
    #[error("reveal_weights: {reason}")]
    RevealWindow {
        /// The chain's error and what it means.
        reason: String,
    },
    /// The extrinsic's signature did not verify (`InvalidTransaction::BadProof`).
    #[error("{call}: bad signature")]
    BadSignature {
        /// The call.
        call: &'static str,
    },
    /// The extrinsic's nonce is not the signer's next one (`InvalidTransaction::Stale` /
    /// `Future`): a replay, or a race with another sender using the same key.
    #[error("{call}: nonce {nonce} is not the signer's next nonce {expected}")]
    BadNonce {
        /// The call.
        call: &'static str,
        /// The nonce signed.
        nonce: u64,
        /// The account's next nonce.
        expected: u64,
    },
    /// The call's arguments are invalid (length mismatch, duplicate or unknown uids, ...).
    #[error("{call}: {reason}")]
    Invalid {
        /// The call.
        call: &'static str,
        /// Why.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("{call}: no answer from the chain after {seconds} s")]
    Timeout {
        /// The call or storage item.
        call: &'static str,
        /// How long we waited.
        seconds: u64,
    },
    /// The node, the connection or the local database failed.
    #[error("{item}: {reason}")]
    Backend {
        /// The call or storage item.
        item: &'static str,
        /// Why.
        reason: String,
    },
}

/// Access to a subtensor-like chain: what a validator reads (metagraph, commitments, weights)
/// and the two extrinsics it and a miner send. Dyn-compatible, so the implementation can be
/// chosen at run time (`Arc<dyn Chain>`). Extrinsics are signed by `signer` and return the block
/// they were included in.
#[async_trait]
pub trait Chain: Send + Sync {
    /// The latest block number.
    async fn current_block(&self) -> Result<u64, ChainError>;
    /// Neurons and hyperparameters of `netuid`.
    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError>;
    /// Every commitment of `netuid` (`Commitments.CommitmentOf`), oldest first.
    async fn commitments(&self, netuid: u16) -> Result<Vec<CommitmentRecord>, ChainError>;
    /// `Commitments.set_commitment` signed by `signer`; returns the inclusion block.
    async fn set_commitment(
        &self,
        signer: &Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<u64, ChainError>;
    /// `SubtensorModule.set_weights` signed by `signer`; returns the inclusion block.
    async fn set_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError>;
    /// `SubtensorModule.commit_weights(netuid, hash)` signed by `signer`; returns the inclusion
    /// block. Chains without hash commit-reveal refuse it.
    async fn commit_weights(
        &self,
        _signer: &Signer,
        _netuid: u16,
        _hash: [u8; 32],
    ) -> Result<u64, ChainError> {
        Err(ChainError::Invalid {
            call: "commit_weights",
            reason: "this chain does not take weight commits".into(),
        })
    }
    /// `SubtensorModule.reveal_weights` signed by `signer`; returns the inclusion block.
    async fn reveal_weights(
        &self,
        _signer: &Signer,
        _netuid: u16,
        _uids: &[u16],
        _values: &[u16],
        _salt: &[u16],
        _version_key: u64,
    ) -> Result<u64, ChainError> {
        Err(ChainError::Invalid {
            call: "reveal_weights",
            reason: "this chain does not take weight reveals".into(),
        })
    }
    /// The epoch index the chain stored with `hotkey`'s unrevealed commit `hash`
    /// (`SubtensorModule.WeightCommits`); `None` when the chain has no such commit.
    async fn weight_commit_epoch(
        &self,
        _netuid: u16,
        _hotkey: &AccountId,
        _hash: [u8; 32],
    ) -> Result<Option<u64>, ChainError> {
        Ok(None)
    }
    /// The subnet's epoch index (`SubtensorModule.SubnetEpochIndex`); `None` when the chain
    /// has none.
    async fn epoch_index(&self, _netuid: u16) -> Result<Option<u64>, ChainError> {
        Ok(None)
    }
    /// The weights `validator_uid` last set on `netuid` (`SubtensorModule.Weights`), by uid, with
    /// the block they were set at (`None`: never set).
    async fn weights(
        &self,
        netuid: u16,
        validator_uid: u16,
    ) -> Result<(Vec<(u16, u16)>, Option<u64>), ChainError>;
}
