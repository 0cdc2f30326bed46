//! Account ids: the 32-byte public key of an sr25519 key pair, shown as its SS58 address.

use std::fmt;
use std::str::FromStr;

use blake2::{Blake2b512, Digest};
use subxt_signer::sr25519::PublicKey;

/// The SS58 address format of Bittensor (generic Substrate, 42).
pub const SS58_PREFIX: u16 = 42;

/// A 32-byte sr25519 public key (`AccountId32`), shown as its SS58 address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub [u8; 32]);

impl AccountId {
    /// The SS58 address (prefix 42): base58(prefix ‖ key ‖ blake2b-512("SS58PRE" ‖ prefix ‖ key)[..2]).
    pub fn to_ss58(&self) -> String {
        let mut body = vec![SS58_PREFIX as u8];
        body.extend_from_slice(&self.0);
        let checksum = ss58_checksum(&body);
        body.extend_from_slice(&checksum[..2]);
        bs58::encode(body).into_string()
    }

    /// Parses an SS58 address with prefix 42, checking its checksum.
    pub fn from_ss58(text: &str) -> Result<Self, KeyError> {
        let bytes = bs58::decode(text)
            .into_vec()
            .map_err(|_| KeyError(format!("address {text:?} is not base58")))?;
        if bytes.len() != 35 || bytes[0] != SS58_PREFIX as u8 {
            return Err(KeyError(format!(
                "address {text:?} is not a 32-byte SS58 address with prefix {SS58_PREFIX}"
            )));
        }
        let checksum = ss58_checksum(&bytes[..33]);
        if bytes[33..] != checksum[..2] {
            return Err(KeyError(format!(
                "address {text:?} has a bad SS58 checksum"
            )));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[1..33]);
        Ok(AccountId(key))
    }

    /// Parses `0x` + 64 hex digits (the `publicKey` / `accountId` form).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        hex::decode(digits)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(AccountId)
            .ok_or_else(|| KeyError(format!("public key {text:?} is not 0x + 64 hex digits")))
    }

    /// `0x` + 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

fn ss58_checksum(body: &[u8]) -> Vec<u8> {
    let mut hasher = Blake2b512::new();
    hasher.update(b"SS58PRE");
    hasher.update(body);
    hasher.finalize().to_vec()
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ss58())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.to_ss58())
    }
}

impl FromStr for AccountId {
    type Err = KeyError;

    /// An SS58 address, or `0x` + 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("0x") {
            Self::from_hex(s)
        } else {
            Self::from_ss58(s)
        }
    }
}

impl From<PublicKey> for AccountId {
    fn from(key: PublicKey) -> Self {
        AccountId(key.0)
    }
}

impl serde::Serialize for AccountId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_ss58())
    }
}

impl<'de> serde::Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AccountId::from_ss58(&text).map_err(serde::de::Error::custom)
    }
}

/// A key problem, naming the file or the value; never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);
