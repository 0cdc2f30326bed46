//! sr25519 keys in Bittensor's wallet layout.
//!
//! A wallet is `<root>/<name>/` with `coldkeypub.txt` and `hotkeys/<hotkey>` (`docs/subtensor.md`). A
//! hotkey file is unencrypted JSON: `secretSeed` (0x + 64 hex, the sr25519 mini-secret),
//! `publicKey` and `accountId` (0x + 64 hex), `ss58Address` and `cryptoType` 1 (sr25519), the
//! fields btwallet reads; `hotkeys/<hotkey>pub.txt` and `coldkeypub.txt` carry the public fields
//! only. This module keeps only the hotkey secret: the devnet's coldkeys are public placeholders.
//!
//! Secrets never appear in `Debug`, `Display`, logs or errors: the seed lives in a
//! [`SecretSeed`] whose `Debug` is redacted and whose bytes are wiped on drop, and a [`Signer`]
//! shows only its address.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::TryRngCore;
use subxt_signer::sr25519::Keypair;

use crate::account::{AccountId, KeyError};
use crate::hotkey::Hotkey;

/// A 32-byte sr25519 mini-secret (`secretSeed`). Its `Debug` is redacted and its bytes are
/// overwritten when it is dropped.
pub struct SecretSeed([u8; 32]);

impl SecretSeed {
    /// Wraps seed bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretSeed(bytes)
    }

    /// A fresh seed from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = SecretSeed([0u8; 32]);
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed.0)
            .map_err(|e| KeyError(format!("the OS random source failed: {e}")))?;
        Ok(seed)
    }

    /// The seed bytes (for writing the key file; do not log them).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSeed(<redacted>)")
    }
}

impl Drop for SecretSeed {
    fn drop(&mut self) {
        for byte in self.0.iter_mut() {
            // SAFETY: `byte` is a valid, aligned, exclusive reference into our own array.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// An sr25519 key pair that signs extrinsics (the `Signer` of the [`crate::chain::Chain`] calls).
/// Its `Debug` shows only the address.
#[derive(Clone)]
pub struct Signer {
    hotkey: Hotkey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.account())
    }
}

impl Signer {
    /// The key of a 32-byte mini-secret (expanded as sp-core and btwallet do).
    pub fn from_seed(seed: &SecretSeed) -> Result<Self, KeyError> {
        Keypair::from_secret_key(*seed.expose())
            .map(Signer::from_keypair)
            .map_err(|_| KeyError("invalid sr25519 secret seed".into()))
    }

    /// The key of a BIP-39 mnemonic (no password), as btwallet derives `secretPhrase`.
    pub fn from_phrase(phrase: &str) -> Result<Self, KeyError> {
        let mnemonic = subxt_signer::bip39::Mnemonic::parse(phrase)
            .map_err(|_| KeyError("secretPhrase is not a valid BIP-39 mnemonic".into()))?;
        Keypair::from_phrase(&mnemonic, None)
            .map(Signer::from_keypair)
            .map_err(|_| KeyError("secretPhrase does not give an sr25519 key".into()))
    }

    /// A fresh key from the OS random source, with the seed to store.
    pub fn generate() -> Result<(Self, SecretSeed), KeyError> {
        let seed = SecretSeed::generate()?;
        Ok((Self::from_seed(&seed)?, seed))
    }

    /// Wraps a subxt-signer key pair (e.g. `subxt_signer::sr25519::dev::alice()`).
    pub fn from_keypair(keypair: Keypair) -> Self {
        Signer {
            hotkey: Hotkey::from(keypair),
        }
    }

    /// The signing key, for the subtensor client.
    pub fn hotkey(&self) -> &Hotkey {
        &self.hotkey
    }

    /// The public key.
    pub fn account(&self) -> AccountId {
        AccountId(self.hotkey.public_key())
    }

    /// An sr25519 signature of `message` (signing context `substrate`, as the runtime checks).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.hotkey.sign(message)
    }
}

/// Whether `signature` is `account`'s sr25519 signature of `message`.
pub fn verify(account: &AccountId, message: &[u8], signature: &[u8; 64]) -> bool {
    subxt_signer::sr25519::verify(
        &subxt_signer::sr25519::Signature(*signature),
        message,
        &subxt_signer::sr25519::PublicKey(account.0),
    )
}

/// Where a Bittensor wallet's files are (`--wallet.path`, `--wallet.name`, `--wallet.hotkey`).
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

    /// `<root>/<name>/hotkeys/<hotkey>pub.txt`, the hotkey's public companion.
    pub fn hotkey_pub_file(&self) -> PathBuf {
        self.root
            .join(&self.name)
            .join("hotkeys")
            .join(format!("{}pub.txt", self.hotkey))
    }

    /// `<root>/<name>/coldkeypub.txt`.
    pub fn coldkeypub_file(&self) -> PathBuf {
        self.root.join(&self.name).join("coldkeypub.txt")
    }

    /// Refuses wallet and hotkey names that are not one plain path component.
    fn check(&self) -> Result<(), KeyError> {
        for (what, value) in [("wallet name", &self.name), ("hotkey name", &self.hotkey)] {
            let plain = !value.is_empty()
                && value != "."
                && value != ".."
                && !value.contains(['/', '\\', '\0']);
            if !plain {
                return Err(KeyError(format!(
                    "{what} {value:?} must be one plain file name (no '/', '\\', '..')"
                )));
            }
        }
        Ok(())
    }
}

fn public_json(account: &AccountId) -> serde_json::Value {
    serde_json::json!({
        "accountId": account.to_hex(),
        "publicKey": account.to_hex(),
        "ss58Address": account.to_ss58(),
        "cryptoType": 1,
    })
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |e| KeyError(format!("{}: {e}", path.display()))
}

/// Writes `text` to `path` only if it does not exist yet: written to a private temporary file
/// (mode 0600 on Unix) and linked into place, so the file never exists half-written or readable
/// by others, and an existing file is never replaced.
fn write_new(path: &Path, text: &str, private: bool) -> Result<(), KeyError> {
    let dir = path
        .parent()
        .ok_or_else(|| KeyError(format!("{}: no parent directory", path.display())))?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:08x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = (|| {
        let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
        file.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        std::fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError(format!(
                    "{}: already exists; refusing to overwrite a key file",
                    path.display()
                ))
            } else {
                KeyError(format!("{}: {e}", path.display()))
            }
        })
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Creates a new hotkey in `wallet` from OS randomness and returns it. Refuses to overwrite an
/// existing hotkey file. The wallet's `coldkeypub.txt` is kept when present (one coldkey, many
/// hotkeys); otherwise a new coldkey is made and only its public part is written.
pub fn create_wallet(wallet: &WalletPath) -> Result<Signer, KeyError> {
    wallet.check()?;
    let hotkey_file = wallet.hotkey_file();
    if hotkey_file.exists() {
        return Err(KeyError(format!(
            "{}: already exists; refusing to overwrite a key file",
            hotkey_file.display()
        )));
    }
    let coldkey_file = wallet.coldkeypub_file();
    if coldkey_file.exists() {
        load_coldkeypub(wallet)?;
    } else {
        let (coldkey, _) = Signer::generate()?;
        write_new(
            &coldkey_file,
            &public_json(&coldkey.account()).to_string(),
            false,
        )?;
    }
    let (hotkey, seed) = Signer::generate()?;
    let mut json = public_json(&hotkey.account());
    json["secretSeed"] = serde_json::Value::String(format!("0x{}", hex::encode(seed.expose())));
    write_new(&hotkey_file, &json.to_string(), true)?;
    let pub_file = wallet.hotkey_pub_file();
    if !pub_file.exists() {
        write_new(
            &pub_file,
            &public_json(&hotkey.account()).to_string(),
            false,
        )?;
    }
    Ok(hotkey)
}

/// Loads the wallet's hotkey, creating the wallet first if the hotkey file does not exist.
pub fn load_or_create_wallet(wallet: &WalletPath) -> Result<Signer, KeyError> {
    if wallet.hotkey_file().exists() {
        load_hotkey(wallet)
    } else {
        create_wallet(wallet)
    }
}

/// Reads a hotkey file in btwallet's order: `secretPhrase` (BIP-39), `secretSeed`, then the
/// 64-byte `privateKey` (checked against the file's `publicKey`, `accountId` or `ss58Address`);
/// when phrase and seed are both present they must give the same key, and `ss58Address`, when
/// present, must match it. Encrypted files and ed25519 keys (`cryptoType` 0) are refused with a
/// message saying so. No error contains the secret.
pub fn load_hotkey(wallet: &WalletPath) -> Result<Signer, KeyError> {
    wallet.check()?;
    let path = wallet.hotkey_file();
    let fail = |reason: &str| KeyError(format!("{}: {reason}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let trimmed = text.trim_start();
    if ["$NACL", "$ANSIBLE_VAULT", "gAAAAA"]
        .iter()
        .any(|p| trimmed.starts_with(p))
    {
        return Err(fail(
            "the hotkey is encrypted; only unencrypted hotkey files are supported",
        ));
    }
    let json: serde_json::Value =
        serde_json::from_str(trimmed).map_err(|_| fail("not a JSON key file"))?;
    if json.get("cryptoType").and_then(|v| v.as_u64()) == Some(0) {
        return Err(fail(
            "an ed25519 key (cryptoType 0); hotkeys must be sr25519",
        ));
    }
    let field = |name: &str| json.get(name).and_then(|v| v.as_str());
    let from_seed = field("secretSeed")
        .map(|seed| {
            let digits = seed.strip_prefix("0x").unwrap_or(seed);
            let bytes = hex::decode(digits)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| fail("secretSeed must be 0x + 64 hex digits"))?;
            Signer::from_seed(&SecretSeed::from_bytes(bytes)).map_err(|e| fail(&e.0))
        })
        .transpose()?;
    let from_phrase = field("secretPhrase")
        .map(|phrase| Signer::from_phrase(phrase).map_err(|e| fail(&e.0)))
        .transpose()?;
    let signer = match (from_phrase, from_seed) {
        (Some(p), Some(s)) if p.account() != s.account() => {
            return Err(fail("secretPhrase and secretSeed give different keys"))
        }
        (Some(p), _) => p,
        (None, Some(s)) => s,
        (None, None) if json.get("privateKey").is_some() => {
            let bytes = field("privateKey")
                .and_then(|k| hex::decode(k.strip_prefix("0x").unwrap_or(k)).ok())
                .ok_or_else(|| fail("privateKey must be 0x + 128 hex digits"))?;
            let public = match (
                field("publicKey").or(field("accountId")),
                field("ss58Address"),
            ) {
                (Some(hex_key), _) => AccountId::from_hex(hex_key).map_err(|e| fail(&e.0))?,
                (None, Some(address)) => AccountId::from_ss58(address).map_err(|e| fail(&e.0))?,
                (None, None) => {
                    return Err(fail(
                        "a privateKey without publicKey or ss58Address cannot be checked",
                    ))
                }
            };
            let hotkey = Hotkey::from_private_key(&bytes, public.0).map_err(|e| fail(&e))?;
            Signer { hotkey }
        }
        (None, None) => return Err(fail("no secretSeed or secretPhrase field")),
    };
    if let Some(address) = field("ss58Address") {
        if address != signer.account().to_ss58() {
            return Err(fail("ss58Address does not match the secret key"));
        }
    }
    Ok(signer)
}

/// Reads the coldkey's public key from `coldkeypub.txt`: JSON with `ss58Address` (or
/// `publicKey`), or the legacy form holding just the SS58 address.
pub fn load_coldkeypub(wallet: &WalletPath) -> Result<AccountId, KeyError> {
    wallet.check()?;
    let path = wallet.coldkeypub_file();
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let text = text.trim();
    let fail = |e: KeyError| KeyError(format!("{}: {e}", path.display()));
    if !text.starts_with('{') {
        return AccountId::from_ss58(text.trim_matches('"')).map_err(fail);
    }
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| KeyError(format!("{}: not JSON: {e}", path.display())))?;
    let field = |name: &str| json.get(name).and_then(|v| v.as_str());
    match (field("ss58Address"), field("publicKey")) {
        (Some(address), _) => AccountId::from_ss58(address).map_err(fail),
        (None, Some(public)) => AccountId::from_hex(public).map_err(fail),
        (None, None) => Err(KeyError(format!(
            "{}: no ss58Address or publicKey field",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(root: &Path, name: &str) -> WalletPath {
        WalletPath {
            root: root.to_path_buf(),
            name: name.into(),
            hotkey: "default".into(),
        }
    }

    #[test]
    fn alice_has_her_well_known_address() {
        let alice = Signer::from_keypair(subxt_signer::sr25519::dev::alice());
        assert_eq!(
            alice.account().to_hex(),
            "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
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
        assert_eq!(
            "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
                .parse::<AccountId>()
                .expect("hex parses"),
            alice.account()
        );
        let err = AccountId::from_ss58("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ")
            .expect_err("bad checksum");
        assert!(err.0.contains("checksum"), "{err}");
        assert!(AccountId::from_ss58("0OIl").is_err(), "not base58");
    }

    #[test]
    fn alice_from_her_seed_file() {
        // Alice's mini-secret (the well-known dev key: from_secret_key(0xe5be9a50…) gives d43593c7…).
        let dir = tempfile::tempdir().expect("tempdir");
        let w = wallet(dir.path(), "alice");
        std::fs::create_dir_all(w.hotkey_file().parent().expect("dir")).expect("mkdir");
        std::fs::write(
            w.hotkey_file(),
            r#"{"secretSeed":"0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a","ss58Address":"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"}"#,
        )
        .expect("write");
        assert_eq!(
            load_hotkey(&w).expect("loads").account().to_ss58(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
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
        let w = wallet(dir.path(), "validator");
        let created = create_wallet(&w).expect("created");
        let loaded = load_hotkey(&w).expect("loaded");
        assert_eq!(created.account(), loaded.account());
        let coldkey = load_coldkeypub(&w).expect("coldkey");
        assert_ne!(coldkey, created.account());
        let text = std::fs::read_to_string(w.hotkey_file()).expect("file");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        for field in ["accountId", "publicKey", "ss58Address", "secretSeed"] {
            assert!(json[field].is_string(), "{field} in {text}");
        }
        assert_eq!(json["ss58Address"], created.account().to_ss58());
        let seed = json["secretSeed"]
            .as_str()
            .expect("seed")
            .trim_start_matches("0x")
            .to_string();
        assert_eq!(seed.len(), 64);
        assert!(!format!("{loaded:?} {created:?}").contains(&seed));
        let public: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(w.hotkey_pub_file()).expect("pub"))
                .expect("json");
        assert!(public.get("secretSeed").is_none());
        assert_eq!(public["ss58Address"], created.account().to_ss58());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(w.hotkey_file())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the hotkey file is private");
        }
        let seed_value = SecretSeed::from_bytes([7; 32]);
        assert_eq!(format!("{seed_value:?}"), "SecretSeed(<redacted>)");
    }

    #[test]
    fn an_existing_hotkey_is_never_overwritten_and_a_second_hotkey_shares_the_coldkey() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = wallet(dir.path(), "miner");
        let first = create_wallet(&w).expect("created");
        let err = create_wallet(&w).expect_err("exists");
        assert!(err.0.contains("refusing to overwrite"), "{err}");
        assert_eq!(
            load_hotkey(&w).expect("still there").account(),
            first.account()
        );
        assert_eq!(
            load_or_create_wallet(&w).expect("loads").account(),
            first.account()
        );
        let second = WalletPath {
            hotkey: "second".into(),
            ..w.clone()
        };
        let coldkey = load_coldkeypub(&w).expect("coldkey");
        let other = load_or_create_wallet(&second).expect("creates");
        assert_ne!(other.account(), first.account());
        assert_eq!(load_coldkeypub(&second).expect("same coldkey"), coldkey);
    }

    #[test]
    fn bad_key_files_are_refused_with_the_file_and_reason_and_no_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = wallet(dir.path(), "bad");
        let path = w.hotkey_file();
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        let cases: [(&str, &str); 7] = [
            ("$NACL\x01\x02", "encrypted"),
            ("not json", "not a JSON key file"),
            (r#"{"secretSeed":"0x1234"}"#, "64 hex digits"),
            (r#"{"secretPhrase":"word word secret"}"#, "BIP-39"),
            (r#"{"privateKey":"0xabcd"}"#, "privateKey"),
            (r#"{"cryptoType":0,"secretSeed":"0x00"}"#, "ed25519"),
            (
                r#"{"secretSeed":"0x0101010101010101010101010101010101010101010101010101010101010101","ss58Address":"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"}"#,
                "does not match",
            ),
        ];
        for (content, reason) in cases {
            std::fs::write(&path, content).expect("write");
            let err = load_hotkey(&w).expect_err(content);
            assert!(
                err.0.contains(reason) && err.0.contains(&path.display().to_string()),
                "{content}: {err}"
            );
            assert!(
                !err.0.contains("0101") && !err.0.contains("secret\""),
                "{err}"
            );
            assert!(!err.0.contains("word word"), "{err}");
        }
        let traversal = WalletPath {
            name: "../x".into(),
            ..w.clone()
        };
        assert!(load_hotkey(&traversal)
            .expect_err("bad name")
            .0
            .contains("wallet name"));
        assert!(create_wallet(&traversal).is_err());
    }

    #[test]
    fn a_phrase_only_hotkey_loads_and_must_agree_with_its_seed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = wallet(dir.path(), "phrase");
        let path = w.hotkey_file();
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        let phrase = subxt_signer::DEV_PHRASE;
        let expected = Signer::from_keypair(
            Keypair::from_phrase(
                &subxt_signer::bip39::Mnemonic::parse(phrase).expect("mnemonic"),
                None,
            )
            .expect("key"),
        );
        std::fs::write(
            &path,
            serde_json::json!({ "secretPhrase": phrase }).to_string(),
        )
        .expect("write");
        assert_eq!(
            load_hotkey(&w).expect("loads").account(),
            expected.account()
        );
        std::fs::write(
            &path,
            serde_json::json!({ "secretPhrase": phrase, "secretSeed": format!("0x{}", "01".repeat(32)) })
                .to_string(),
        )
        .expect("write");
        let err = load_hotkey(&w).expect_err("disagree");
        assert!(err.0.contains("different keys"), "{err}");
    }

    /// A hotkey file written by the Python `bittensor-wallet` 4.1.1 (PyPI; `regenerate_hotkey`
    /// from the public substrate dev phrase): each of its three secret fields alone gives the
    /// same key.
    #[test]
    fn a_btwallet_keyfile_loads_from_phrase_seed_or_private_key() {
        const PHRASE: &str =
            "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
        const SEED: &str = "0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e";
        const PRIVATE: &str = "0x05d65584630d16cd4af6d0bec10f34bb504a5dcb62dba2122d49f5a663763d0afd190cce74df356432b410bd64682309d6dedb27c76845daf388557cbac3ca34";
        const PUBLIC: &str = "0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a";
        const SS58: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";
        let dir = tempfile::tempdir().expect("tempdir");
        let w = wallet(dir.path(), "btwallet");
        let path = w.hotkey_file();
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        let files = [
            serde_json::json!({"secretPhrase": PHRASE, "secretSeed": SEED, "privateKey": PRIVATE,
                "publicKey": PUBLIC, "accountId": PUBLIC, "ss58Address": SS58, "cryptoType": 1}),
            serde_json::json!({"secretPhrase": PHRASE}),
            serde_json::json!({"secretSeed": SEED}),
            serde_json::json!({"privateKey": PRIVATE, "publicKey": PUBLIC}),
            serde_json::json!({"privateKey": PRIVATE, "ss58Address": SS58}),
        ];
        for file in files {
            std::fs::write(&path, file.to_string()).expect("write");
            let signer = load_hotkey(&w).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(signer.account().to_ss58(), SS58, "{file}");
            let sig = signer.sign(b"set_weights");
            assert!(verify(&signer.account(), b"set_weights", &sig), "{file}");
        }
        // A privateKey that is not the file's public key is refused, without the secret.
        let other = format!("0x{}", "11".repeat(32));
        std::fs::write(
            &path,
            serde_json::json!({"privateKey": PRIVATE, "publicKey": other}).to_string(),
        )
        .expect("write");
        let err = load_hotkey(&w).expect_err("mismatch");
        assert!(
            err.0.contains("does not give the file's public key"),
            "{err}"
        );
        assert!(!err.0.contains("05d65584"), "{err}");
    }

    #[test]
    fn legacy_coldkeypub_holds_just_the_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = wallet(dir.path(), "legacy");
        std::fs::create_dir_all(dir.path().join("legacy")).expect("mkdir");
        std::fs::write(
            w.coldkeypub_file(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY\n",
        )
        .expect("write");
        assert_eq!(
            load_coldkeypub(&w).expect("loads").to_ss58(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        std::fs::write(w.coldkeypub_file(), "{}").expect("write");
        assert!(load_coldkeypub(&w)
            .expect_err("empty")
            .0
            .contains("no ss58Address"));
    }
}
