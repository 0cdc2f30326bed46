//! Chain access for Murmuration: the [`Chain`] trait the validator and miner-cli use, its two
//! implementations — a subtensor node through subxt 0.51's dynamic API, and the embedded devnet
//! — and the keys and flags that go with them (`docs/subtensor.md` has the calls and encodings).
//!
//! - [`chain`]: the [`Chain`] trait, the metagraph and commitment types, [`ChainError`].
//! - [`subtensor_chain`]: [`Chain`] on a subtensor node ([`SubtensorChain`]).
//! - [`devnet`] (feature `devnet`): the embedded chain in one SQLite file.
//! - [`client`]: the online subxt client (connection, timeouts, reads, signed extrinsics).
//! - [`connect`]: the first connection attempt and its cause, the endless reconnect policy.
//! - [`account`]: account ids and their SS58 addresses.
//! - [`wallet`]: sr25519 keys in Bittensor's wallet layout, the [`Signer`].
//! - [`hotkey`]: the signing key (mini-secret, mnemonic or btwallet `privateKey`).
//! - [`args`]: the `--subtensor.network`, `--netuid` and `--wallet.*` flags over `cluster.toml`,
//!   and the connection they describe.
//! - [`logging`]: the `--logging.*` and `--log-format` flags and the `tracing` subscriber.
//! - [`commitment_data`]: the Commitments pallet's `Data` / `Registration` codec.
//! - [`weights`]: commit hashes, salts, reveal windows, the pending-commit record.
//! - [`network`]: `--subtensor.network` names and URLs.
//! - [`error`]: what the online client reports, naming the item or call.
//! - [`testnode`] (feature `test-node`): a small in-memory subtensor behind subxt's mock RPC
//!   client, for tests of the online paths without a network.

pub mod account;
pub mod args;
pub mod chain;
pub mod client;
pub mod commitment_data;
pub mod connect;
#[cfg(feature = "devnet")]
pub mod devnet;
pub mod error;
pub mod hotkey;
pub mod logging;
pub mod network;
pub mod subtensor_chain;
#[cfg(feature = "test-node")]
pub mod testnode;
pub mod wallet;
pub mod weights;

pub use account::AccountId;
pub use args::ChainArgs;
pub use chain::{Chain, ChainError, CommitmentRecord, Metagraph, Neuron, SubnetParams};
pub use client::{ChainCommitment, Subtensor, WeightCommit};
#[cfg(feature = "devnet")]
pub use devnet::DevnetChain;
pub use error::Error;
pub use hotkey::Hotkey;
pub use logging::{LogArgs, LogFormat};
pub use network::Network;
pub use subtensor_chain::SubtensorChain;
pub use subxt_signer::sr25519::Keypair;
pub use wallet::{Signer, WalletPath};
