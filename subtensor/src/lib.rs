//! Subtensor access for Murmuration through subxt 0.51's dynamic API (chain.md): the metagraph
//! (`get_neurons_lite`, `get_subnet_hyperparams`), miners' commitments (`Commitments` pallet),
//! and weights, plain or through hash commit-reveal.
//!
//! - [`client`]: the online client (connection, timeouts, reads, signed extrinsics).
//! - [`commitment_data`]: the Commitments pallet's `Data` / `Registration` codec.
//! - [`hotkey`]: the signing key (mini-secret, mnemonic or btwallet `privateKey`).
//! - [`weights`]: commit hashes, salts, reveal windows, the pending-commit record.
//! - [`network`]: `--subtensor.network` names and URLs.
//! - [`error`]: what can fail, naming the item or call.
//! - [`testnode`] (feature `test-node`): a small in-memory subtensor behind subxt's mock RPC
//!   client, for tests of the online paths without a network.

pub mod client;
pub mod commitment_data;
pub mod error;
pub mod hotkey;
pub mod network;
#[cfg(feature = "test-node")]
pub mod testnode;
pub mod weights;

pub use client::{ChainCommitment, Metagraph, Neuron, SubnetParams, Subtensor, WeightCommit};
pub use error::Error;
pub use hotkey::Hotkey;
pub use network::Network;
pub use subxt_signer::sr25519::Keypair;
