//! The embedded devnet: a small, persistent chain for one machine in one SQLite file — subnets,
//! neurons, commitments with the block they landed in, weights per validator, account nonces and
//! a block clock. Several processes (the coordinator, miner-cli) may use the same file at once:
//! it is in WAL mode and every extrinsic is one `IMMEDIATE` transaction.
//!
//! **Extrinsics** are signed as on subtensor: an [`Extrinsic`] carries the signer's account, its
//! nonce, the [`Call`] and an sr25519 signature over [`Extrinsic::payload`] (a SCALE-like
//! encoding of a devnet genesis id, the call name, its arguments and the nonce). The devnet
//! checks the nonce (replays fail), verifies the signature against the account, then applies
//! the call with subtensor's checks. A failing extrinsic changes nothing (unlike subtensor, where
//! a failed dispatch still uses a nonce and a block).
//!
//! **Block clock**: `current_block = max(stored height, elapsed ms since genesis / block_time_ms)`.
//! Every applied extrinsic (and admin registration) is included in a block of its own: the height
//! becomes `current_block + 1` and is stored with what was written. Genesis and the block time
//! are fixed when the file is created.
//!
//! **Differences from subtensor**, on purpose: one commitment is at most
//! [`MAX_COMMITMENT_BYTES`] (one `Raw128` field; subtensor's limit is a per-epoch space budget,
//! `MaxSpace` 3100 with at least 100 bytes charged per call, `docs/subtensor.md`); weights are stored
//! as sent (subtensor re-normalises them to sum 65535); registration is an admin call with the
//! stake and validator permit given, not burned registration; commit-reveal can be switched on
//! (then `set_weights` fails as on subtensor) but commit/reveal calls are not implemented.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::account::AccountId;
use crate::chain::{Chain, ChainError, CommitmentRecord, Metagraph, Neuron, SubnetParams};
use crate::wallet::{verify, Signer};

/// Largest commitment the devnet stores: one `Raw128` field, the same bound the commitment
/// string has (`protocol::commitment::MAX_COMMITMENT_BYTES`).
pub use protocol::commitment::MAX_COMMITMENT_BYTES;

/// A devnet call, as the runtime dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `Commitments.set_commitment(netuid, Raw(data))`.
    SetCommitment {
        /// The subnet.
        netuid: u16,
        /// The committed bytes.
        data: Vec<u8>,
    },
    /// `SubtensorModule.set_weights(netuid, dests, weights, version_key)`.
    SetWeights {
        /// The subnet.
        netuid: u16,
        /// Destination uids.
        uids: Vec<u16>,
        /// u16 weights, one per uid.
        weights: Vec<u16>,
        /// The weights version key.
        version_key: u64,
    },
}

impl Call {
    /// The call's name, as used in errors.
    pub fn name(&self) -> &'static str {
        match self {
            Call::SetCommitment { .. } => "set_commitment",
            Call::SetWeights { .. } => "set_weights",
        }
    }

    /// SCALE-like encoding: the name and each argument (little-endian integers, vectors with a
    /// compact length prefix).
    fn encode(&self, out: &mut Vec<u8>) {
        encode_bytes(self.name().as_bytes(), out);
        match self {
            Call::SetCommitment { netuid, data } => {
                out.extend_from_slice(&netuid.to_le_bytes());
                encode_bytes(data, out);
            }
            Call::SetWeights {
                netuid,
                uids,
                weights,
                version_key,
            } => {
                out.extend_from_slice(&netuid.to_le_bytes());
                for list in [uids, weights] {
                    encode_compact(list.len(), out);
                    for v in list {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
                out.extend_from_slice(&version_key.to_le_bytes());
            }
        }
    }
}

/// SCALE compact encoding of a length (lengths here stay far below 2^30).
fn encode_compact(n: usize, out: &mut Vec<u8>) {
    let n = n as u64;
    if n < 1 << 6 {
        out.push((n << 2) as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&(((n << 2) | 1) as u16).to_le_bytes());
    } else if n < 1 << 30 {
        out.extend_from_slice(&(((n << 2) | 2) as u32).to_le_bytes());
    } else {
        out.push(0b11 | (4 << 2));
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    encode_compact(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// A signed devnet extrinsic: who, which nonce, what, and the signature over [`Self::payload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extrinsic {
    /// The signing account (a hotkey).
    pub signer: AccountId,
    /// The signer's nonce this extrinsic uses.
    pub nonce: u64,
    /// The call.
    pub call: Call,
    /// sr25519 signature of the payload.
    pub signature: [u8; 64],
}

impl Extrinsic {
    /// Signs `call` with `signer` at `nonce` for the devnet with genesis id `genesis`.
    pub fn sign(genesis: &[u8; 32], signer: &Signer, nonce: u64, call: Call) -> Self {
        let payload = Self::payload_of(genesis, &call, nonce);
        Extrinsic {
            signer: signer.account(),
            nonce,
            signature: signer.sign(&payload),
            call,
        }
    }

    /// The signed bytes: `"murmuration-devnet\0"` ‖ genesis id ‖ call ‖ nonce (u64 LE). The
    /// genesis id keeps an extrinsic from one devnet file from replaying on another.
    pub fn payload(&self, genesis: &[u8; 32]) -> Vec<u8> {
        Self::payload_of(genesis, &self.call, self.nonce)
    }

    fn payload_of(genesis: &[u8; 32], call: &Call, nonce: u64) -> Vec<u8> {
        let mut out = b"murmuration-devnet\0".to_vec();
        out.extend_from_slice(genesis);
        call.encode(&mut out);
        out.extend_from_slice(&nonce.to_le_bytes());
        out
    }
}

/// The devnet chain: one SQLite file, shared safely by several handles and processes.
pub struct DevnetChain {
    db: Mutex<Connection>,
    genesis: [u8; 32],
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn db_err(item: &'static str) -> impl Fn(rusqlite::Error) -> ChainError {
    move |e| ChainError::Backend {
        item,
        reason: e.to_string(),
    }
}

/// Reads a 32-byte account column, refusing anything else.
fn account_at(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<AccountId> {
    let bytes: Vec<u8> = row.get(idx)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(AccountId)
        .map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                idx,
                Type::Blob,
                format!("an account id of {} bytes, not 32", bytes.len()).into(),
            )
        })
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS clock (id INTEGER PRIMARY KEY CHECK (id = 0),
        genesis_ms INTEGER NOT NULL, block_time_ms INTEGER NOT NULL, height INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS subnets (netuid INTEGER PRIMARY KEY, tempo INTEGER NOT NULL,
        weights_rate_limit INTEGER NOT NULL, weights_version_key INTEGER NOT NULL,
        commit_reveal INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS neurons (netuid INTEGER NOT NULL, uid INTEGER NOT NULL,
        hotkey BLOB NOT NULL, coldkey BLOB NOT NULL, stake INTEGER NOT NULL,
        validator_permit INTEGER NOT NULL, registered_block INTEGER NOT NULL,
        last_update INTEGER NOT NULL,
        PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey));
    CREATE TABLE IF NOT EXISTS commitments (netuid INTEGER NOT NULL, hotkey BLOB NOT NULL,
        data BLOB NOT NULL, block INTEGER NOT NULL, PRIMARY KEY (netuid, hotkey));
    CREATE TABLE IF NOT EXISTS weights (netuid INTEGER NOT NULL, validator_uid INTEGER NOT NULL,
        uid INTEGER NOT NULL, value INTEGER NOT NULL, block INTEGER NOT NULL,
        PRIMARY KEY (netuid, validator_uid, uid));
    CREATE TABLE IF NOT EXISTS weight_sets (netuid INTEGER NOT NULL,
        validator_uid INTEGER NOT NULL, block INTEGER NOT NULL,
        PRIMARY KEY (netuid, validator_uid));
    CREATE TABLE IF NOT EXISTS nonces (account BLOB PRIMARY KEY, nonce INTEGER NOT NULL);";

impl DevnetChain {
    /// Opens the devnet in `path`, creating it (genesis now, `block_time_ms` per block) when the
    /// file is new; an existing devnet keeps its genesis and block time.
    pub fn open(path: &Path, block_time_ms: u64) -> Result<Self, ChainError> {
        let fail = |e: &dyn std::fmt::Display| ChainError::Backend {
            item: "devnet",
            reason: format!("{}: {e}", path.display()),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let mut db = Connection::open(path).map_err(|e| fail(&e))?;
        db.busy_timeout(Duration::from_secs(10))
            .map_err(|e| fail(&e))?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail(&e))?;
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(&e))?;
        tx.execute_batch(SCHEMA).map_err(|e| fail(&e))?;
        tx.execute(
            "INSERT OR IGNORE INTO clock (id, genesis_ms, block_time_ms, height) VALUES (0, ?1, ?2, 0)",
            params![now_ms(), block_time_ms.max(1) as i64],
        )
        .map_err(|e| fail(&e))?;
        let genesis_ms: i64 = tx
            .query_row("SELECT genesis_ms FROM clock WHERE id = 0", [], |r| {
                r.get(0)
            })
            .map_err(|e| fail(&e))?;
        tx.commit().map_err(|e| fail(&e))?;
        let mut hasher = Sha256::new();
        hasher.update(b"murmuration-devnet genesis\0");
        hasher.update(genesis_ms.to_le_bytes());
        Ok(Self {
            db: Mutex::new(db),
            genesis: hasher.finalize().into(),
        })
    }

    /// This devnet's genesis id, part of every signed payload.
    pub fn genesis(&self) -> [u8; 32] {
        self.genesis
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ChainError>,
    ) -> Result<T, ChainError> {
        let mut db = self.db.lock().map_err(|_| ChainError::Backend {
            item: "devnet",
            reason: "database lock poisoned".into(),
        })?;
        f(&mut db)
    }

    /// Runs `f` in one `IMMEDIATE` transaction, committed when `f` succeeds.
    fn write<T>(
        &self,
        item: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, ChainError>,
    ) -> Result<T, ChainError> {
        self.with_db(|db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err(item))?;
            let out = f(&tx)?;
            tx.commit().map_err(db_err(item))?;
            Ok(out)
        })
    }

    /// Runs `f` on one consistent snapshot.
    fn read<T>(
        &self,
        item: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, ChainError>,
    ) -> Result<T, ChainError> {
        self.with_db(|db| {
            let tx = db.transaction().map_err(db_err(item))?;
            f(&tx)
        })
    }

    fn block_of(db: &Connection) -> Result<u64, ChainError> {
        let (genesis, block_time, height): (i64, i64, i64) = db
            .query_row(
                "SELECT genesis_ms, block_time_ms, height FROM clock WHERE id = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db_err("System.Number"))?;
        let elapsed = (now_ms() - genesis).max(0) / block_time.max(1);
        Ok(height.max(elapsed) as u64)
    }

    /// Includes an extrinsic: the next block number, stored as the new height.
    fn next_block(db: &Connection) -> Result<u64, ChainError> {
        let block = Self::block_of(db)? + 1;
        db.execute(
            "UPDATE clock SET height = ?1 WHERE id = 0",
            params![block as i64],
        )
        .map_err(db_err("System.Number"))?;
        Ok(block)
    }

    fn require_subnet(db: &Connection, call: &'static str, netuid: u16) -> Result<(), ChainError> {
        db.query_row("SELECT 1 FROM subnets WHERE netuid = ?1", [netuid], |_| {
            Ok(())
        })
        .optional()
        .map_err(db_err(call))?
        .ok_or(ChainError::UnknownNetuid { call, netuid })
    }

    /// Creates `netuid`, or updates its tempo and rate limit (admin call: the devnet's sudo).
    pub fn create_subnet(
        &self,
        netuid: u16,
        tempo: u64,
        weights_rate_limit: u64,
    ) -> Result<(), ChainError> {
        let call = "create_subnet";
        if tempo == 0 || tempo > u64::from(u16::MAX) {
            return Err(ChainError::Invalid {
                call,
                reason: format!("tempo {tempo} must be 1..=65535 blocks"),
            });
        }
        self.write(call, |tx| {
            tx.execute(
                "INSERT INTO subnets (netuid, tempo, weights_rate_limit, weights_version_key, commit_reveal)
                 VALUES (?1, ?2, ?3, 0, 0)
                 ON CONFLICT(netuid) DO UPDATE SET tempo = excluded.tempo,
                     weights_rate_limit = excluded.weights_rate_limit",
                params![netuid, tempo as i64, weights_rate_limit as i64],
            )
            .map_err(db_err(call))?;
            Ok(())
        })
    }

    /// Sets `WeightsVersionKey` of `netuid` (admin call, `sudo_set_weights_version_key`).
    pub fn set_weights_version_key(&self, netuid: u16, key: u64) -> Result<(), ChainError> {
        let call = "sudo_set_weights_version_key";
        self.write(call, |tx| {
            Self::require_subnet(tx, call, netuid)?;
            tx.execute(
                "UPDATE subnets SET weights_version_key = ?2 WHERE netuid = ?1",
                params![netuid, key as i64],
            )
            .map_err(db_err(call))?;
            Ok(())
        })
    }

    /// Switches commit-reveal of `netuid` (admin call,
    /// `sudo_set_commit_reveal_weights_enabled`); while on, `set_weights` is refused.
    pub fn set_commit_reveal(&self, netuid: u16, enabled: bool) -> Result<(), ChainError> {
        let call = "sudo_set_commit_reveal_weights_enabled";
        self.write(call, |tx| {
            Self::require_subnet(tx, call, netuid)?;
            tx.execute(
                "UPDATE subnets SET commit_reveal = ?2 WHERE netuid = ?1",
                params![netuid, enabled],
            )
            .map_err(db_err(call))?;
            Ok(())
        })
    }

    /// Moves the clock `blocks` ahead (admin call for tests and demos: skip a rate limit or a
    /// tempo without waiting); returns the new current block.
    pub fn advance_blocks(&self, blocks: u64) -> Result<u64, ChainError> {
        self.write("System.Number", |tx| {
            let block = Self::block_of(tx)?.saturating_add(blocks);
            tx.execute(
                "UPDATE clock SET height = ?1 WHERE id = 0",
                params![block as i64],
            )
            .map_err(db_err("System.Number"))?;
            Ok(block)
        })
    }

    /// Whether `netuid` exists.
    pub fn has_subnet(&self, netuid: u16) -> Result<bool, ChainError> {
        self.with_db(|db| {
            db.query_row("SELECT 1 FROM subnets WHERE netuid = ?1", [netuid], |_| {
                Ok(())
            })
            .optional()
            .map(|r| r.is_some())
            .map_err(db_err("SubtensorModule.NetworksAdded"))
        })
    }

    /// Registers a hotkey with the given coldkey, stake and validator permit (admin call standing
    /// in for burned registration) in a block of its own; returns its uid, the next free one. A
    /// hotkey already registered keeps its uid and is not changed.
    pub fn register_neuron(
        &self,
        netuid: u16,
        hotkey: AccountId,
        coldkey: AccountId,
        stake: u64,
        validator_permit: bool,
    ) -> Result<u16, ChainError> {
        let call = "burned_register";
        self.write(call, |tx| {
            Self::require_subnet(tx, call, netuid)?;
            if let Some(uid) = tx
                .query_row(
                    "SELECT uid FROM neurons WHERE netuid = ?1 AND hotkey = ?2",
                    params![netuid, hotkey.0.as_slice()],
                    |r| r.get::<_, u16>(0),
                )
                .optional()
                .map_err(db_err(call))?
            {
                return Ok(uid);
            }
            let next: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(uid) + 1, 0) FROM neurons WHERE netuid = ?1",
                    [netuid],
                    |r| r.get(0),
                )
                .map_err(db_err(call))?;
            let uid = u16::try_from(next).map_err(|_| ChainError::Invalid {
                call,
                reason: format!("netuid {netuid} is full ({next} uids)"),
            })?;
            let block = Self::next_block(tx)?;
            tx.execute(
                "INSERT INTO neurons (netuid, uid, hotkey, coldkey, stake, validator_permit,
                     registered_block, last_update) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
                params![
                    netuid,
                    uid,
                    hotkey.0.as_slice(),
                    coldkey.0.as_slice(),
                    stake as i64,
                    validator_permit,
                    block as i64
                ],
            )
            .map_err(db_err(call))?;
            Ok(uid)
        })
    }

    /// The next nonce of `account` (`System.Account.nonce`).
    pub fn nonce(&self, account: &AccountId) -> Result<u64, ChainError> {
        self.with_db(|db| Self::nonce_of(db, account))
    }

    fn nonce_of(db: &Connection, account: &AccountId) -> Result<u64, ChainError> {
        db.query_row(
            "SELECT nonce FROM nonces WHERE account = ?1",
            [account.0.as_slice()],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|n| n.unwrap_or(0) as u64)
        .map_err(db_err("System.Account"))
    }

    /// Submits an extrinsic signed elsewhere; returns the block it was included in.
    pub fn submit(&self, xt: &Extrinsic) -> Result<u64, ChainError> {
        self.write(xt.call.name(), |tx| self.apply(tx, xt))
    }

    /// Signs `call` with `signer` at its next nonce and applies it, in one transaction.
    fn sign_and_submit(&self, signer: &Signer, call: Call) -> Result<u64, ChainError> {
        self.write(call.name(), |tx| {
            let nonce = Self::nonce_of(tx, &signer.account())?;
            let xt = Extrinsic::sign(&self.genesis, signer, nonce, call);
            self.apply(tx, &xt)
        })
    }

    /// Checks the nonce and the signature, uses the nonce, dispatches the call in a new block.
    fn apply(&self, tx: &Transaction<'_>, xt: &Extrinsic) -> Result<u64, ChainError> {
        let name = xt.call.name();
        let expected = Self::nonce_of(tx, &xt.signer)?;
        if xt.nonce != expected {
            return Err(ChainError::BadNonce {
                call: name,
                nonce: xt.nonce,
                expected,
            });
        }
        if !verify(&xt.signer, &xt.payload(&self.genesis), &xt.signature) {
            return Err(ChainError::BadSignature { call: name });
        }
        tx.execute(
            "INSERT INTO nonces (account, nonce) VALUES (?1, 1)
             ON CONFLICT(account) DO UPDATE SET nonce = nonce + 1",
            [xt.signer.0.as_slice()],
        )
        .map_err(db_err("System.Account"))?;
        match &xt.call {
            Call::SetCommitment { netuid, data } => {
                Self::do_set_commitment(tx, &xt.signer, *netuid, data)
            }
            Call::SetWeights {
                netuid,
                uids,
                weights,
                version_key,
            } => Self::do_set_weights(tx, &xt.signer, *netuid, uids, weights, *version_key),
        }
    }

    /// The signer's uid on `netuid`, or why it has none.
    fn uid_of(
        tx: &Transaction<'_>,
        call: &'static str,
        who: &AccountId,
        netuid: u16,
    ) -> Result<u16, ChainError> {
        Self::require_subnet(tx, call, netuid)?;
        tx.query_row(
            "SELECT uid FROM neurons WHERE netuid = ?1 AND hotkey = ?2",
            params![netuid, who.0.as_slice()],
            |r| r.get::<_, u16>(0),
        )
        .optional()
        .map_err(db_err(call))?
        .ok_or_else(|| ChainError::NotRegistered {
            call,
            hotkey: who.to_ss58(),
            netuid,
        })
    }

    fn do_set_commitment(
        tx: &Transaction<'_>,
        who: &AccountId,
        netuid: u16,
        data: &[u8],
    ) -> Result<u64, ChainError> {
        let call = "set_commitment";
        Self::uid_of(tx, call, who, netuid)?;
        if data.len() > MAX_COMMITMENT_BYTES {
            return Err(ChainError::SpaceLimitExceeded {
                bytes: data.len(),
                limit: MAX_COMMITMENT_BYTES,
            });
        }
        let block = Self::next_block(tx)?;
        tx.execute(
            "INSERT OR REPLACE INTO commitments (netuid, hotkey, data, block) VALUES (?1, ?2, ?3, ?4)",
            params![netuid, who.0.as_slice(), data, block as i64],
        )
        .map_err(db_err(call))?;
        Ok(block)
    }

    /// `do_set_weights` with subtensor's checks, in its order (`docs/subtensor.md`).
    fn do_set_weights(
        tx: &Transaction<'_>,
        who: &AccountId,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        let call = "set_weights";
        Self::require_subnet(tx, call, netuid)?;
        let (rate, required, reveal): (i64, i64, bool) = tx
            .query_row(
                "SELECT weights_rate_limit, weights_version_key, commit_reveal FROM subnets WHERE netuid = ?1",
                [netuid],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db_err(call))?;
        if reveal {
            return Err(ChainError::CommitRevealEnabled { netuid });
        }
        let invalid = |reason: String| Err(ChainError::Invalid { call, reason });
        if uids.len() != weights.len() {
            return invalid(format!("{} uids but {} weights", uids.len(), weights.len()));
        }
        let n: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM neurons WHERE netuid = ?1",
                [netuid],
                |r| r.get(0),
            )
            .map_err(db_err(call))?;
        if uids.len() as i64 > n {
            return invalid(format!(
                "{} uids but the subnet has {n} neurons",
                uids.len()
            ));
        }
        let validator = Self::uid_of(tx, call, who, netuid)?;
        let required = required as u64;
        if required != 0 && version_key < required {
            return Err(ChainError::IncorrectVersionKey {
                sent: version_key,
                required,
            });
        }
        let (permit, last_update): (bool, i64) = tx
            .query_row(
                "SELECT validator_permit, last_update FROM neurons WHERE netuid = ?1 AND uid = ?2",
                params![netuid, validator],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db_err(call))?;
        let current = Self::block_of(tx)?;
        if last_update > 0 {
            let since = current.saturating_sub(last_update as u64);
            if since < rate as u64 {
                return Err(ChainError::RateLimited {
                    blocks_left: rate as u64 - since,
                });
            }
        }
        let only_self = uids.iter().all(|u| *u == validator);
        if !permit && !only_self {
            return Err(ChainError::NoValidatorPermit {
                hotkey: who.to_ss58(),
                netuid,
            });
        }
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|p| p[0] == p[1]) {
            return invalid(format!("uid {} appears twice", pair[0]));
        }
        if let Some(bad) = sorted.iter().find(|u| i64::from(**u) >= n) {
            return invalid(format!("uid {bad} does not exist on netuid {netuid}"));
        }
        let block = Self::next_block(tx)?;
        tx.execute(
            "DELETE FROM weights WHERE netuid = ?1 AND validator_uid = ?2",
            params![netuid, validator],
        )
        .map_err(db_err(call))?;
        for (u, w) in uids.iter().zip(weights) {
            tx.execute(
                "INSERT INTO weights (netuid, validator_uid, uid, value, block) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![netuid, validator, u, w, block as i64],
            )
            .map_err(db_err(call))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO weight_sets (netuid, validator_uid, block) VALUES (?1, ?2, ?3)",
            params![netuid, validator, block as i64],
        )
        .map_err(db_err(call))?;
        tx.execute(
            "UPDATE neurons SET last_update = ?3 WHERE netuid = ?1 AND uid = ?2",
            params![netuid, validator, block as i64],
        )
        .map_err(db_err(call))?;
        Ok(block)
    }
}

#[async_trait]
impl Chain for DevnetChain {
    async fn current_block(&self) -> Result<u64, ChainError> {
        self.with_db(|db| Self::block_of(db))
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        let item = "NeuronInfoRuntimeApi.get_neurons_lite";
        self.read(item, |tx| {
            let block = Self::block_of(tx)?;
            let (tempo, rate, version, reveal): (i64, i64, i64, bool) = tx
                .query_row(
                    "SELECT tempo, weights_rate_limit, weights_version_key, commit_reveal FROM subnets WHERE netuid = ?1",
                    [netuid],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db_err(item))?
                .ok_or(ChainError::UnknownNetuid {
                    call: "metagraph",
                    netuid,
                })?;
            let mut stmt = tx
                .prepare(
                    "SELECT uid, hotkey, coldkey, stake, validator_permit, last_update FROM neurons
                     WHERE netuid = ?1 ORDER BY uid",
                )
                .map_err(db_err(item))?;
            let neurons = stmt
                .query_map([netuid], |r| {
                    Ok(Neuron {
                        uid: r.get(0)?,
                        hotkey: account_at(r, 1)?,
                        coldkey: account_at(r, 2)?,
                        stake: r.get::<_, i64>(3)? as u64,
                        // The devnet has alpha stake only: no root subnet, no TAO.
                        alpha_stake: r.get::<_, i64>(3)? as u64,
                        tao_stake: Some(0),
                        total_stake: Some(r.get::<_, i64>(3)? as u64),
                        validator_permit: r.get(4)?,
                        last_update: r.get::<_, i64>(5)? as u64,
                        active: true,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(db_err(item))?;
            Ok(Metagraph {
                netuid,
                block,
                params: SubnetParams {
                    tempo: tempo as u64,
                    weights_rate_limit: rate as u64,
                    weights_version_key: version as u64,
                    commit_reveal_enabled: reveal,
                    reveal_period: 1,
                    max_weights_limit: u64::from(u16::MAX),
                    min_allowed_weights: 0,
                },
                epoch_index: None,
                neurons,
            })
        })
    }

    async fn commitments(&self, netuid: u16) -> Result<Vec<CommitmentRecord>, ChainError> {
        let item = "Commitments.CommitmentOf";
        self.read(item, |tx| {
            Self::require_subnet(tx, "commitments", netuid)?;
            let mut stmt = tx
                .prepare(
                    "SELECT n.uid, c.hotkey, c.data, c.block FROM commitments c
                     LEFT JOIN neurons n ON n.netuid = c.netuid AND n.hotkey = c.hotkey
                     WHERE c.netuid = ?1 ORDER BY c.block, c.hotkey",
                )
                .map_err(db_err(item))?;
            let rows = stmt
                .query_map([netuid], |r| {
                    Ok(CommitmentRecord {
                        uid: r.get(0)?,
                        hotkey: account_at(r, 1)?,
                        data: r.get(2)?,
                        block: r.get::<_, i64>(3)? as u64,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(db_err(item))?;
            Ok(rows)
        })
    }

    async fn set_commitment(
        &self,
        signer: &Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<u64, ChainError> {
        self.sign_and_submit(
            signer,
            Call::SetCommitment {
                netuid,
                data: data.to_vec(),
            },
        )
    }

    async fn set_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        self.sign_and_submit(
            signer,
            Call::SetWeights {
                netuid,
                uids: uids.to_vec(),
                weights: weights.to_vec(),
                version_key,
            },
        )
    }

    async fn weights(
        &self,
        netuid: u16,
        validator_uid: u16,
    ) -> Result<(Vec<(u16, u16)>, Option<u64>), ChainError> {
        let item = "SubtensorModule.Weights";
        self.read(item, |tx| {
            Self::require_subnet(tx, "weights", netuid)?;
            let mut stmt = tx
                .prepare(
                    "SELECT uid, value FROM weights WHERE netuid = ?1 AND validator_uid = ?2 ORDER BY uid",
                )
                .map_err(db_err(item))?;
            let weights = stmt
                .query_map(params![netuid, validator_uid], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(db_err(item))?;
            let block: Option<i64> = tx
                .query_row(
                    "SELECT block FROM weight_sets WHERE netuid = ?1 AND validator_uid = ?2",
                    params![netuid, validator_uid],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err(item))?;
            Ok((weights, block.map(|b| b as u64)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Signer {
        Signer::generate().expect("key").0
    }

    #[test]
    fn compact_lengths_follow_scale() {
        let enc = |n| {
            let mut out = Vec::new();
            encode_compact(n, &mut out);
            out
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x04]);
        assert_eq!(enc(63), [0xfc]);
        assert_eq!(enc(64), [0x01, 0x01]);
        assert_eq!(enc(16383), [0xfd, 0xff]);
        assert_eq!(enc(16384), [0x02, 0x00, 0x01, 0x00]);
    }

    #[tokio::test]
    async fn neurons_commitments_and_weights_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("devnet.sqlite");
        let (validator, miner, stranger) = (key(), key(), key());
        {
            let chain = DevnetChain::open(&path, 60_000).expect("opens");
            chain.create_subnet(1, 100, 10).expect("subnet");
            assert_eq!(
                chain
                    .register_neuron(1, validator.account(), key().account(), 1000, true)
                    .expect("reg"),
                0
            );
            assert_eq!(
                chain
                    .register_neuron(1, miner.account(), key().account(), 0, false)
                    .expect("reg"),
                1
            );
            let b1 = chain
                .set_commitment(&miner, 1, b"alice/data:1:abc")
                .await
                .expect("commit");
            let b2 = chain
                .set_commitment(&miner, 1, b"alice/data:1:def")
                .await
                .expect("recommit");
            assert!(b2 > b1, "each extrinsic is a new block");
            let err = chain
                .set_commitment(&stranger, 1, b"x")
                .await
                .expect_err("unregistered");
            assert!(matches!(err, ChainError::NotRegistered { .. }), "{err}");
            let err = chain
                .set_commitment(&miner, 1, &[b'x'; 129])
                .await
                .expect_err("too long");
            assert!(matches!(
                err,
                ChainError::SpaceLimitExceeded { bytes: 129, .. }
            ));
            chain
                .set_weights(&validator, 1, &[0, 1], &[0, 65535], 1)
                .await
                .expect("weights");
            let err = chain
                .set_weights(&validator, 1, &[1], &[65535], 1)
                .await
                .expect_err("rate limited");
            assert!(matches!(err, ChainError::RateLimited { .. }), "{err}");
            let err = chain.metagraph(9).await.expect_err("no subnet");
            assert!(err.to_string().contains("netuid 9"));
        }
        let chain = DevnetChain::open(&path, 60_000).expect("reopens");
        let meta = chain.metagraph(1).await.expect("metagraph");
        assert_eq!(meta.neurons.len(), 2);
        assert_eq!(meta.neurons[1].hotkey, miner.account());
        assert!(meta.neurons[0].validator_permit);
        let commitments = chain.commitments(1).await.expect("commitments");
        assert_eq!(commitments.len(), 1);
        assert_eq!(commitments[0].data, b"alice/data:1:def");
        assert_eq!(commitments[0].uid, Some(1));
        let (weights, block) = chain.weights(1, 0).await.expect("weights");
        assert_eq!(weights, vec![(0, 0), (1, 65535)]);
        assert!(block.is_some());
        assert_eq!(meta.neurons[0].last_update, block.expect("block"));
    }
}
