//! sr25519 keys in Bittensor's wallet layout, and SS58 addresses.
//!
//! A hotkey file `<wallet_path>/<name>/hotkeys/<hotkey>` is JSON with `secretSeed` (0x + 64 hex),
//! `publicKey`, `accountId` and `ss58Address` (chain.md §4); `coldkeypub.txt` holds the coldkey's
//! public part. Secrets never appear in `Debug`, `Display` or errors.

use std::fmt;
use std::path::{Path, PathBuf};

use blake2::{Blake2b512, Digest};
use rand::RngCore;
use subxt_signer::sr25519::{Keypair, PublicKey};

/// The SS58 address format of Bittensor (generic Substrate, 42).
pub const SS58_PREFIX: u16 = 42;

/// A 32-byte sr25519 public key, shown as its SS58 address.
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
            .map_err(|_| KeyError(format!("{text:?} is not base58")))?;
        if bytes.len() != 35 || bytes[0] != SS58_PREFIX as u8 {
            return Err(KeyError(format!(
                "{text:?} is not an SS58 address with prefix 42"
            )));
        }
        let checksum = ss58_checksum(&bytes[..33]);
        if bytes[33..] != checksum[..2] {
            return Err(KeyError(format!("{text:?} has a bad SS58 checksum")));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[1..33]);
        Ok(AccountId(key))
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

impl From<PublicKey> for AccountId {
    fn from(key: PublicKey) -> Self {
        AccountId(key.0)
    }
}

/// A key problem, naming the file; never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// An sr25519 key pair that signs extrinsics. Its `Debug` shows only the address.
#[derive(Clone)]
pub struct Signer {
    keypair: Keypair,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.account())
    }
}

impl Signer {
    /// A key from a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Result<Self, KeyError> {
        Keypair::from_secret_key(seed)
            .map(|keypair| Signer { keypair })
            .map_err(|_| KeyError("invalid sr25519 secret seed".into()))
    }

    /// A fresh key from the OS random source; returns the seed to store.
    pub fn generate() -> Result<(Self, [u8; 32]), KeyError> {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Ok((Self::from_seed(seed)?, seed))
    }

    /// Wraps a subxt-signer key pair (e.g. a dev account).
    pub fn from_keypair(keypair: Keypair) -> Self {
        Signer { keypair }
    }

    /// The public key.
    pub fn account(&self) -> AccountId {
        self.keypair.public_key().into()
    }

    /// An sr25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.keypair.sign(message).0
    }
}

/// Whether `signature` is `account`'s sr25519 signature of `message`.
pub fn verify(account: &AccountId, message: &[u8], signature: &[u8; 64]) -> bool {
    subxt_signer::sr25519::verify(
        &subxt_signer::sr25519::Signature(*signature),
        message,
        &PublicKey(account.0),
    )
}

/// Where a Bittensor wallet's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletPath {
    /// `--wallet.path`, e.g. `~/.bittensor/wallets`.
    pub root: PathBuf,
    /// `--wallet.name`.
    pub name: String,
    /// `--wallet.hotkey`.
    pub hotkey: String,
}

impl WalletPath {
    /// `<root>/<name>/hotkeys/<hotkey>`.
    pub fn hotkey_file(&self) -> PathBuf {
        self.root
            .join(&self.name)
            .join("hotkeys")
            .join(&self.hotkey)
    }

    /// `<root>/<name>/coldkeypub.txt`.
    pub fn coldkeypub_file(&self) -> PathBuf {
        self.root.join(&self.name).join("coldkeypub.txt")
    }
}

fn key_json(account: &AccountId, seed: Option<&[u8; 32]>) -> serde_json::Value {
    let public = format!("0x{}", hex::encode(account.0));
    let mut json = serde_json::json!({
        "accountId": public,
        "publicKey": public,
        "ss58Address": account.to_ss58(),
    });
    if let Some(seed) = seed {
        json["secretSeed"] = serde_json::Value::String(format!("0x{}", hex::encode(seed)));
    }
    json
}

fn write_private(path: &Path, text: &str) -> Result<(), KeyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| KeyError(format!("{}: {e}", dir.display())))?;
    }
    std::fs::write(path, text).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Creates a wallet with a new hotkey and a new coldkey (only its public part is kept).
pub fn create_wallet(wallet: &WalletPath) -> Result<Signer, KeyError> {
    let (hotkey, seed) = Signer::generate()?;
    let (coldkey, _) = Signer::generate()?;
    write_private(
        &wallet.hotkey_file(),
        &key_json(&hotkey.account(), Some(&seed)).to_string(),
    )?;
    write_private(
        &wallet.coldkeypub_file(),
        &key_json(&coldkey.account(), None).to_string(),
    )?;
    Ok(hotkey)
}

/// Reads a hotkey file (`secretSeed` or a 64-byte-or-shorter `privateKey`'s first 32 bytes are
/// not accepted: only `secretSeed`; a `secretPhrase` alone is refused with a clear message).
pub fn load_hotkey(wallet: &WalletPath) -> Result<Signer, KeyError> {
    let path = wallet.hotkey_file();
    let text =
        std::fs::read_to_string(&path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
        KeyError(format!(
            "{}: not a JSON key file (encrypted keys are not supported)",
            path.display()
        ))
    })?;
    let seed = json
        .get("secretSeed")
        .and_then(|v| v.as_str())
        .ok_or_else(|| KeyError(format!("{}: no secretSeed field", path.display())))?;
    let bytes = hex::decode(seed.trim_start_matches("0x"))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            KeyError(format!(
                "{}: secretSeed must be 0x + 64 hex digits",
                path.display()
            ))
        })?;
    let signer =
        Signer::from_seed(bytes).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
    if let Some(address) = json.get("ss58Address").and_then(|v| v.as_str()) {
        if address != signer.account().to_ss58() {
            return Err(KeyError(format!(
                "{}: ss58Address does not match the secret seed",
                path.display()
            )));
        }
    }
    Ok(signer)
}

/// Reads the coldkey's public key from `coldkeypub.txt`.
pub fn load_coldkeypub(wallet: &WalletPath) -> Result<AccountId, KeyError> {
    let path = wallet.coldkeypub_file();
    let text =
        std::fs::read_to_string(&path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| KeyError(format!("{}: not JSON: {e}", path.display())))?;
    let address = json
        .get("ss58Address")
        .and_then(|v| v.as_str())
        .ok_or_else(|| KeyError(format!("{}: no ss58Address field", path.display())))?;
    AccountId::from_ss58(address).map_err(|e| KeyError(format!("{}: {e}", path.display())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alice_has_her_well_known_address() {
        let alice = Signer::from_keypair(subxt_signer::sr25519::dev::alice());
        assert_eq!(
            hex::encode(alice.account().0),
            "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
        );
        assert_eq!(
            alice.account().to_ss58(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        assert_eq!(
            AccountId::from_ss58("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
                .expect("parses"),
            alice.account()
        );
        assert!(AccountId::from_ss58("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ").is_err());
    }

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let (a, _) = Signer::generate().expect("key");
        let (b, _) = Signer::generate().expect("key");
        let sig = a.sign(b"set_weights");
        assert!(verify(&a.account(), b"set_weights", &sig));
        assert!(!verify(&b.account(), b"set_weights", &sig));
        assert!(!verify(&a.account(), b"set_weight", &sig));
    }

    #[test]
    fn wallet_files_round_trip_and_never_print_the_seed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wallet = WalletPath {
            root: dir.path().to_path_buf(),
            name: "validator".into(),
            hotkey: "default".into(),
        };
        let created = create_wallet(&wallet).expect("created");
        let loaded = load_hotkey(&wallet).expect("loaded");
        assert_eq!(created.account(), loaded.account());
        load_coldkeypub(&wallet).expect("coldkey");
        let text = std::fs::read_to_string(wallet.hotkey_file()).expect("file");
        let seed: serde_json::Value = serde_json::from_str(&text).expect("json");
        let seed = seed["secretSeed"]
            .as_str()
            .expect("seed")
            .trim_start_matches("0x")
            .to_string();
        assert!(!format!("{loaded:?}").contains(&seed));
        std::fs::write(wallet.hotkey_file(), "{\"secretPhrase\":\"word word\"}").expect("write");
        let err = load_hotkey(&wallet).expect_err("no seed");
        assert!(
            err.0.contains("secretSeed") && !err.0.contains("word word"),
            "{err}"
        );
    }
}
