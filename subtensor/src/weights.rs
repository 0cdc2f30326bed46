//! Weight payloads and hash commit-reveal (`docs/subtensor.md`, subtensor
//! `pallets/subtensor/src/subnets/weights.rs`).
//!
//! A commit is `commit_weights(netuid, H256)` with
//!
//! ```text
//! hash = BlakeTwo256( SCALE( account_id: [u8; 32], netuid_index: u16,
//!                            uids: Vec<u16>, values: Vec<u16>, salt: Vec<u16>, version_key: u64 ) )
//! ```
//!
//! (`get_commit_hash`; `netuid_index = mechanism_id * 4096 + netuid`, the main mechanism is 0).
//! The chain stores the commit with the subnet's epoch index (`SubnetEpochIndex`) and accepts
//! `reveal_weights(netuid, uids, values, salt, version_key)` only while the epoch index equals
//! `commit_epoch + RevealPeriodEpochs` (`is_reveal_block_range`); earlier is `RevealTooEarly`,
//! later `ExpiredWeightCommit`.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use parity_scale_codec::Encode;
use serde::{Deserialize, Serialize};

/// Number of `u16` words in a salt (what the Python SDK uses).
pub const SALT_WORDS: usize = 8;

/// The storage index of a subnet's main mechanism (`NetUidStorageIndex` for mechanism 0).
pub fn netuid_index(netuid: u16) -> u16 {
    netuid
}

/// `BlakeTwo256` of the SCALE tuple the chain hashes for a weight commit (see the module doc).
pub fn commit_hash(
    account: &[u8; 32],
    netuid_index: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> [u8; 32] {
    let encoded = (account, netuid_index, uids, values, salt, version_key).encode();
    let mut hasher = Blake2b::<U32>::new();
    hasher.update(&encoded);
    hasher.finalize().into()
}

/// A fresh random salt.
pub fn random_salt() -> Vec<u16> {
    (0..SALT_WORDS).map(|_| rand::random::<u16>()).collect()
}

/// A weight commit that was (or is about to be) sent and still has to be revealed: everything
/// `reveal_weights` needs, and where the commit landed. The validator stores it before sending
/// the commit, so a restart can still reveal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// The subnet.
    pub netuid: u16,
    /// The committing hotkey (hex of the 32-byte public key).
    pub hotkey: String,
    /// Destination uids.
    pub uids: Vec<u16>,
    /// u16 weights, same order as `uids`.
    pub values: Vec<u16>,
    /// The salt hashed with them.
    pub salt: Vec<u16>,
    /// The version key hashed with them.
    pub version_key: u64,
    /// The commit hash (hex).
    pub hash: String,
    /// The block the commit was included in (`None` until known).
    pub commit_block: Option<u64>,
    /// The chain's epoch index stored with the commit (`None` until known).
    pub commit_epoch: Option<u64>,
}

/// Where a pending commit stands against the chain's current epoch index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevealWindow {
    /// Too early: wait for the epoch index to reach `reveal_epoch`.
    Wait {
        /// The epoch index at which the reveal is accepted.
        reveal_epoch: u64,
    },
    /// Reveal now.
    Open,
    /// The reveal epoch has passed; the chain dropped the commit.
    Expired,
}

/// `is_reveal_block_range` / `is_commit_expired` on the client side.
pub fn reveal_window(commit_epoch: u64, reveal_period: u64, current_epoch: u64) -> RevealWindow {
    let reveal_epoch = commit_epoch.saturating_add(reveal_period);
    match current_epoch.cmp(&reveal_epoch) {
        std::cmp::Ordering::Less => RevealWindow::Wait { reveal_epoch },
        std::cmp::Ordering::Equal => RevealWindow::Open,
        std::cmp::Ordering::Greater => RevealWindow::Expired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected value computed independently with Python's `hashlib.blake2b(digest_size=32)`
    /// over hand-built SCALE bytes:
    /// `d43593c7…a27d | 0100 | 08 0000 0100 | 08 6400 c800 | 20 0100…0800 | 0700000000000000`.
    #[test]
    fn commit_hash_matches_an_independent_blake2b() {
        let alice: [u8; 32] =
            hex::decode("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
                .unwrap()
                .try_into()
                .unwrap();
        let hash = commit_hash(
            &alice,
            1,
            &[0, 1],
            &[100, 200],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            7,
        );
        assert_eq!(
            hex::encode(hash),
            "fe4b106f9802ee959b700047568945c8726ff26e584e03e201ea1b55eb0da428"
        );
        // Any part changes the hash.
        let other = commit_hash(
            &alice,
            1,
            &[0, 1],
            &[100, 201],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            7,
        );
        assert_ne!(hash, other);
    }

    #[test]
    fn reveal_window_follows_the_chain_rule() {
        assert_eq!(
            reveal_window(10, 1, 10),
            RevealWindow::Wait { reveal_epoch: 11 }
        );
        assert_eq!(reveal_window(10, 1, 11), RevealWindow::Open);
        assert_eq!(reveal_window(10, 1, 12), RevealWindow::Expired);
        assert_eq!(reveal_window(10, 3, 13), RevealWindow::Open);
    }

    #[test]
    fn salts_are_random_and_sized() {
        let (a, b) = (random_salt(), random_salt());
        assert_eq!(a.len(), SALT_WORDS);
        assert_ne!(a, b);
    }
}
