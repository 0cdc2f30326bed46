//! The key that signs extrinsics: an sr25519 hotkey from a mini-secret or mnemonic (subxt-signer),
//! or from the 64-byte expanded secret a btwallet keyfile keeps as `privateKey` (schnorrkel).
//! Both sign with the `substrate` context, as the runtime verifies.

use subxt::config::SubstrateConfig;
use subxt::utils::{AccountId32, MultiSignature};

use crate::account::AccountId;

/// An sr25519 hotkey. Its `Debug` shows only the public key.
#[derive(Clone)]
pub enum Hotkey {
    /// From a 32-byte mini-secret (`secretSeed`) or a mnemonic (`secretPhrase`).
    Keypair(Box<subxt_signer::sr25519::Keypair>),
    /// From a 64-byte expanded secret (`privateKey`).
    Expanded(Box<schnorrkel::Keypair>),
}

impl std::fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hotkey({})", AccountId(self.public_key()))
    }
}

impl From<subxt_signer::sr25519::Keypair> for Hotkey {
    fn from(keypair: subxt_signer::sr25519::Keypair) -> Self {
        Hotkey::Keypair(Box::new(keypair))
    }
}

impl Hotkey {
    /// The key of a btwallet `privateKey`: 64 bytes, read as schnorrkel's own encoding
    /// (key ‖ nonce, what sp-core stores) or as an Ed25519-expanded secret, whichever gives
    /// `public`, the file's public key. `Err` says why (never the secret).
    pub fn from_private_key(bytes: &[u8], public: [u8; 32]) -> Result<Hotkey, String> {
        if bytes.len() != 64 {
            return Err(format!("privateKey must be 64 bytes, not {}", bytes.len()));
        }
        let readings = [
            schnorrkel::SecretKey::from_bytes(bytes).ok(),
            schnorrkel::SecretKey::from_ed25519_bytes(bytes).ok(),
        ];
        readings
            .into_iter()
            .flatten()
            .map(|secret| secret.to_keypair())
            .find(|keypair| keypair.public.to_bytes() == public)
            .map(|keypair| Hotkey::Expanded(Box::new(keypair)))
            .ok_or_else(|| "privateKey does not give the file's public key".to_string())
    }

    /// The public key (the account id).
    pub fn public_key(&self) -> [u8; 32] {
        match self {
            Hotkey::Keypair(k) => k.public_key().0,
            Hotkey::Expanded(k) => k.public.to_bytes(),
        }
    }

    /// An sr25519 signature of `message` with the `substrate` signing context.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self {
            Hotkey::Keypair(k) => k.sign(message).0,
            Hotkey::Expanded(k) => k
                .sign(schnorrkel::signing_context(b"substrate").bytes(message))
                .to_bytes(),
        }
    }
}

impl subxt::tx::Signer<SubstrateConfig> for Hotkey {
    fn account_id(&self) -> AccountId32 {
        AccountId32(self.public_key())
    }

    fn sign(&self, signer_payload: &[u8]) -> MultiSignature {
        MultiSignature::Sr25519(Hotkey::sign(self, signer_payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair expanded from a mini-secret as sp-core and btwallet do (Ed25519 mode), whose
    /// 64-byte secret is stored in both encodings: both load, and sign as the seed's key does.
    #[test]
    fn a_private_key_in_either_encoding_signs_like_its_seed() {
        let seed = [7u8; 32];
        let from_seed =
            Hotkey::from(subxt_signer::sr25519::Keypair::from_secret_key(seed).unwrap());
        let mini = schnorrkel::MiniSecretKey::from_bytes(&seed).unwrap();
        let expanded = mini.expand(schnorrkel::ExpansionMode::Ed25519);
        let public = from_seed.public_key();
        for bytes in [expanded.to_bytes(), expanded.to_ed25519_bytes()] {
            let hotkey = Hotkey::from_private_key(&bytes, public).unwrap();
            assert_eq!(hotkey.public_key(), public);
            let sig = hotkey.sign(b"payload");
            assert!(subxt_signer::sr25519::verify(
                &subxt_signer::sr25519::Signature(sig),
                b"payload",
                &subxt_signer::sr25519::PublicKey(public)
            ));
        }
        let err = Hotkey::from_private_key(&expanded.to_bytes(), [1; 32]).unwrap_err();
        assert!(err.contains("does not give the file's public key"), "{err}");
        assert!(Hotkey::from_private_key(&[0; 10], public).is_err());
        assert!(!format!("{from_seed:?}").contains("07070707"));
    }
}
