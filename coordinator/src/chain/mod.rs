//! Chain access behind one trait: the embedded [`devnet::DevnetChain`] implements it now, a
//! subxt client for subtensor implements it later; the coordinator and miner-cli only see
//! [`Chain`].

pub mod devnet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::keys::{AccountId, Signer};

/// One registered neuron of a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neuron {
    /// Its uid in the subnet.
    pub uid: u16,
    /// The hotkey that signs for it.
    pub hotkey: AccountId,
    /// The owning coldkey.
    pub coldkey: AccountId,
    /// Stake (alpha, in the chain's smallest unit).
    pub stake: u64,
    /// Whether it may set weights.
    pub validator_permit: bool,
    /// The block of its last weight update.
    pub last_update: u64,
}

/// What a validator needs to know about a subnet at one block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metagraph {
    /// The block this view was read at.
    pub block: u64,
    /// Blocks per tempo.
    pub tempo: u64,
    /// Blocks a validator must wait between weight settings.
    pub weights_rate_limit: u64,
    /// The chain's weights version key.
    pub weights_version_key: u64,
    /// Whether weights must go through commit-reveal.
    pub commit_reveal_enabled: bool,
    /// Every neuron, by uid.
    pub neurons: Vec<Neuron>,
}

impl Metagraph {
    /// The neuron with this hotkey.
    pub fn neuron_of(&self, hotkey: &AccountId) -> Option<&Neuron> {
        self.neurons.iter().find(|n| &n.hotkey == hotkey)
    }
}

/// A hotkey's commitment as stored on chain: raw bytes and the block they landed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentRecord {
    /// Who committed.
    pub hotkey: AccountId,
    /// The committed bytes (a `Raw` field), not yet parsed.
    pub data: Vec<u8>,
    /// The block the commitment was included in.
    pub block: u64,
}

/// Why a chain call failed; names the call or storage item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The hotkey has no uid in the subnet.
    #[error("{call}: hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered {
        /// The call.
        call: &'static str,
        /// The hotkey.
        hotkey: String,
        /// The subnet.
        netuid: u16,
    },
    /// The subnet does not exist.
    #[error("{call}: netuid {netuid} does not exist")]
    UnknownNetuid {
        /// The call.
        call: &'static str,
        /// The subnet.
        netuid: u16,
    },
    /// Weights were set too recently.
    #[error("set_weights: rate limited, {blocks_left} more block(s) to wait")]
    RateLimited {
        /// Blocks until allowed.
        blocks_left: u64,
    },
    /// The commitment does not fit.
    #[error("set_commitment: {bytes} bytes exceeds the space limit of {limit}")]
    SpaceLimitExceeded {
        /// Size sent.
        bytes: usize,
        /// Largest accepted.
        limit: usize,
    },
    /// The extrinsic's signature did not verify.
    #[error("{call}: bad signature")]
    BadSignature {
        /// The call.
        call: &'static str,
    },
    /// The call's arguments are invalid.
    #[error("{call}: {reason}")]
    Invalid {
        /// The call.
        call: &'static str,
        /// Why.
        reason: String,
    },
    /// The node or the local database failed.
    #[error("{item}: {reason}")]
    Backend {
        /// The call or storage item.
        item: &'static str,
        /// Why.
        reason: String,
    },
}

/// Access to a subtensor-like chain.
#[async_trait]
pub trait Chain: Send + Sync {
    /// The latest block number.
    async fn current_block(&self) -> Result<u64, ChainError>;
    /// Neurons and hyperparameters of `netuid`.
    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError>;
    /// Every commitment of `netuid` (`Commitments.CommitmentOf`).
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
    /// The weights `validator_uid` last set on `netuid`, with the block they were set at.
    async fn weights(
        &self,
        netuid: u16,
        validator_uid: u16,
    ) -> Result<(Vec<(u16, u16)>, Option<u64>), ChainError>;
}
