//! The embedded devnet: a small, persistent chain for one machine in one SQLite file — neurons,
//! commitments with the block they landed in, weights per validator, a block clock, tempo and a
//! weights rate limit. Extrinsics are signed with sr25519 hotkeys and verified before they apply,
//! as on subtensor.
//!
//! Block clock: every extrinsic is included in a new block (height + 1), and the height also
//! advances with wall time at `block_time_ms` since genesis, so a running devnet ticks like a chain.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Chain, ChainError, CommitmentRecord, Metagraph, Neuron};
use crate::keys::{verify, AccountId, Signer};

/// Largest commitment the devnet stores (one `Raw128` field; subtensor's real limit is a
/// per-tempo space budget, chain.md §2.2).
pub const MAX_COMMITMENT_BYTES: usize = 128;

/// The devnet chain.
pub struct DevnetChain {
    db: Mutex<Connection>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn db_err(item: &'static str) -> impl Fn(rusqlite::Error) -> ChainError {
    move |e| ChainError::Backend {
        item,
        reason: e.to_string(),
    }
}

fn account(bytes: Vec<u8>) -> AccountId {
    let mut key = [0u8; 32];
    let n = bytes.len().min(32);
    key[..n].copy_from_slice(&bytes[..n]);
    AccountId(key)
}

/// The bytes a devnet extrinsic's signature covers: call name, netuid, arguments and the
/// signer's nonce (replay protection).
fn payload(call: &str, netuid: u16, args: &[u8], nonce: u64) -> Vec<u8> {
    let mut out = b"murmuration-devnet/".to_vec();
    out.extend_from_slice(call.as_bytes());
    out.push(0);
    out.extend_from_slice(&netuid.to_le_bytes());
    out.extend_from_slice(&nonce.to_le_bytes());
    out.extend_from_slice(args);
    out
}

impl DevnetChain {
    /// Opens (or creates) the devnet in `path`, with genesis now and `block_time_ms` per block.
    pub fn open(path: &Path, block_time_ms: u64) -> Result<Self, ChainError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ChainError::Backend {
                item: "devnet",
                reason: format!("{}: {e}", dir.display()),
            })?;
        }
        let db = Connection::open(path).map_err(|e| ChainError::Backend {
            item: "devnet",
            reason: format!("{}: {e}", path.display()),
        })?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS clock (id INTEGER PRIMARY KEY CHECK (id = 0), genesis_ms INTEGER NOT NULL,
                 block_time_ms INTEGER NOT NULL, height INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS subnets (netuid INTEGER PRIMARY KEY, tempo INTEGER NOT NULL,
                 weights_rate_limit INTEGER NOT NULL, weights_version_key INTEGER NOT NULL,
                 commit_reveal INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS neurons (netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey BLOB NOT NULL,
                 coldkey BLOB NOT NULL, stake INTEGER NOT NULL, validator_permit INTEGER NOT NULL,
                 registered_block INTEGER NOT NULL, last_update INTEGER NOT NULL,
                 PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey));
             CREATE TABLE IF NOT EXISTS commitments (netuid INTEGER NOT NULL, hotkey BLOB NOT NULL, data BLOB NOT NULL,
                 block INTEGER NOT NULL, PRIMARY KEY (netuid, hotkey));
             CREATE TABLE IF NOT EXISTS weights (netuid INTEGER NOT NULL, validator_uid INTEGER NOT NULL,
                 uid INTEGER NOT NULL, value INTEGER NOT NULL, block INTEGER NOT NULL,
                 PRIMARY KEY (netuid, validator_uid, uid));
             CREATE TABLE IF NOT EXISTS weight_sets (netuid INTEGER NOT NULL, validator_uid INTEGER NOT NULL,
                 block INTEGER NOT NULL, PRIMARY KEY (netuid, validator_uid));
             CREATE TABLE IF NOT EXISTS nonces (account BLOB PRIMARY KEY, nonce INTEGER NOT NULL);",
        )
        .map_err(db_err("devnet schema"))?;
        db.execute(
            "INSERT OR IGNORE INTO clock (id, genesis_ms, block_time_ms, height) VALUES (0, ?1, ?2, 0)",
            params![now_ms() as i64, block_time_ms.max(1) as i64],
        )
        .map_err(db_err("devnet clock"))?;
        Ok(Self { db: Mutex::new(db) })
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

    fn block_of(db: &Connection) -> Result<u64, ChainError> {
        let (genesis, block_time, height): (i64, i64, i64) = db
            .query_row(
                "SELECT genesis_ms, block_time_ms, height FROM clock WHERE id = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db_err("System.Number"))?;
        let elapsed = (now_ms() as i64 - genesis).max(0) / block_time.max(1);
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

    /// Creates `netuid` (admin call: the devnet's sudo).
    pub fn create_subnet(
        &self,
        netuid: u16,
        tempo: u64,
        weights_rate_limit: u64,
    ) -> Result<(), ChainError> {
        self.with_db(|db| {
            db.execute(
                "INSERT OR REPLACE INTO subnets (netuid, tempo, weights_rate_limit, weights_version_key, commit_reveal)
                 VALUES (?1, ?2, ?3, 0, 0)",
                params![netuid, tempo as i64, weights_rate_limit as i64],
            )
            .map_err(db_err("create_subnet"))?;
            Ok(())
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

    /// Registers a hotkey (admin call standing in for burned registration); returns its uid.
    pub fn register_neuron(
        &self,
        netuid: u16,
        hotkey: AccountId,
        coldkey: AccountId,
        stake: u64,
        validator_permit: bool,
    ) -> Result<u16, ChainError> {
        self.with_db(|db| {
            let tx = db.transaction().map_err(db_err("burned_register"))?;
            tx.query_row("SELECT 1 FROM subnets WHERE netuid = ?1", [netuid], |_| Ok(()))
                .optional()
                .map_err(db_err("burned_register"))?
                .ok_or(ChainError::UnknownNetuid {
                    call: "burned_register",
                    netuid,
                })?;
            if let Some(uid) = tx
                .query_row(
                    "SELECT uid FROM neurons WHERE netuid = ?1 AND hotkey = ?2",
                    params![netuid, hotkey.0.to_vec()],
                    |r| r.get::<_, u16>(0),
                )
                .optional()
                .map_err(db_err("burned_register"))?
            {
                return Ok(uid);
            }
            let uid: u16 = tx
                .query_row("SELECT COALESCE(MAX(uid) + 1, 0) FROM neurons WHERE netuid = ?1", [netuid], |r| r.get(0))
                .map_err(db_err("burned_register"))?;
            let block = Self::next_block(&tx)?;
            tx.execute(
                "INSERT INTO neurons (netuid, uid, hotkey, coldkey, stake, validator_permit, registered_block, last_update)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
                params![netuid, uid, hotkey.0.to_vec(), coldkey.0.to_vec(), stake as i64, validator_permit, block as i64],
            )
            .map_err(db_err("burned_register"))?;
            tx.commit().map_err(db_err("burned_register"))?;
            Ok(uid)
        })
    }

    /// Signs `call` with `signer`'s next nonce and verifies it as the runtime would; returns the
    /// signer's uid on `netuid`.
    fn authorise(
        tx: &rusqlite::Transaction<'_>,
        call: &'static str,
        signer: &Signer,
        netuid: u16,
        args: &[u8],
    ) -> Result<u16, ChainError> {
        let who = signer.account();
        let nonce: u64 = tx
            .query_row(
                "SELECT nonce FROM nonces WHERE account = ?1",
                [who.0.to_vec()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(db_err("System.Account"))?
            .unwrap_or(0) as u64;
        let message = payload(call, netuid, args, nonce);
        let signature = signer.sign(&message);
        if !verify(&who, &message, &signature) {
            return Err(ChainError::BadSignature { call });
        }
        tx.execute(
            "INSERT INTO nonces (account, nonce) VALUES (?1, 1) ON CONFLICT(account) DO UPDATE SET nonce = nonce + 1",
            [who.0.to_vec()],
        )
        .map_err(db_err("System.Account"))?;
        tx.query_row("SELECT 1 FROM subnets WHERE netuid = ?1", [netuid], |_| {
            Ok(())
        })
        .optional()
        .map_err(db_err(call))?
        .ok_or(ChainError::UnknownNetuid { call, netuid })?;
        tx.query_row(
            "SELECT uid FROM neurons WHERE netuid = ?1 AND hotkey = ?2",
            params![netuid, who.0.to_vec()],
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
}

#[async_trait]
impl Chain for DevnetChain {
    async fn current_block(&self) -> Result<u64, ChainError> {
        self.with_db(|db| Self::block_of(db))
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        self.with_db(|db| {
            let block = Self::block_of(db)?;
            let (tempo, rate, version, reveal): (i64, i64, i64, bool) = db
                .query_row(
                    "SELECT tempo, weights_rate_limit, weights_version_key, commit_reveal FROM subnets WHERE netuid = ?1",
                    [netuid],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db_err("SubtensorModule.Tempo"))?
                .ok_or(ChainError::UnknownNetuid {
                    call: "metagraph",
                    netuid,
                })?;
            let mut stmt = db
                .prepare(
                    "SELECT uid, hotkey, coldkey, stake, validator_permit, last_update FROM neurons
                     WHERE netuid = ?1 ORDER BY uid",
                )
                .map_err(db_err("SubtensorModule.Keys"))?;
            let neurons = stmt
                .query_map([netuid], |r| {
                    Ok(Neuron {
                        uid: r.get(0)?,
                        hotkey: account(r.get(1)?),
                        coldkey: account(r.get(2)?),
                        stake: r.get::<_, i64>(3)? as u64,
                        validator_permit: r.get(4)?,
                        last_update: r.get::<_, i64>(5)? as u64,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(db_err("SubtensorModule.Keys"))?;
            Ok(Metagraph {
                block,
                tempo: tempo as u64,
                weights_rate_limit: rate as u64,
                weights_version_key: version as u64,
                commit_reveal_enabled: reveal,
                neurons,
            })
        })
    }

    async fn commitments(&self, netuid: u16) -> Result<Vec<CommitmentRecord>, ChainError> {
        self.with_db(|db| {
            let mut stmt = db
                .prepare("SELECT hotkey, data, block FROM commitments WHERE netuid = ?1 ORDER BY block, hotkey")
                .map_err(db_err("Commitments.CommitmentOf"))?;
            stmt.query_map([netuid], |r| {
                Ok(CommitmentRecord {
                    hotkey: account(r.get(0)?),
                    data: r.get(1)?,
                    block: r.get::<_, i64>(2)? as u64,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db_err("Commitments.CommitmentOf"))
        })
    }

    async fn set_commitment(
        &self,
        signer: &Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<u64, ChainError> {
        if data.len() > MAX_COMMITMENT_BYTES {
            return Err(ChainError::SpaceLimitExceeded {
                bytes: data.len(),
                limit: MAX_COMMITMENT_BYTES,
            });
        }
        self.with_db(|db| {
            let tx = db.transaction().map_err(db_err("set_commitment"))?;
            Self::authorise(&tx, "set_commitment", signer, netuid, data)?;
            let block = Self::next_block(&tx)?;
            tx.execute(
                "INSERT OR REPLACE INTO commitments (netuid, hotkey, data, block) VALUES (?1, ?2, ?3, ?4)",
                params![netuid, signer.account().0.to_vec(), data, block as i64],
            )
            .map_err(db_err("set_commitment"))?;
            tx.commit().map_err(db_err("set_commitment"))?;
            Ok(block)
        })
    }

    async fn set_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        let call = "set_weights";
        if uids.len() != weights.len() {
            return Err(ChainError::Invalid {
                call,
                reason: format!("{} uids but {} weights", uids.len(), weights.len()),
            });
        }
        let mut args = version_key.to_le_bytes().to_vec();
        for (u, w) in uids.iter().zip(weights) {
            args.extend_from_slice(&u.to_le_bytes());
            args.extend_from_slice(&w.to_le_bytes());
        }
        self.with_db(|db| {
            let tx = db.transaction().map_err(db_err(call))?;
            let validator = Self::authorise(&tx, call, signer, netuid, &args)?;
            let (rate, chain_version): (i64, i64) = tx
                .query_row(
                    "SELECT weights_rate_limit, weights_version_key FROM subnets WHERE netuid = ?1",
                    [netuid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err(call))?;
            if version_key < chain_version as u64 {
                return Err(ChainError::Invalid {
                    call,
                    reason: format!("version key {version_key} is below the chain's {chain_version}"),
                });
            }
            let n: i64 = tx
                .query_row("SELECT COUNT(*) FROM neurons WHERE netuid = ?1", [netuid], |r| r.get(0))
                .map_err(db_err(call))?;
            if let Some(bad) = uids.iter().find(|u| i64::from(**u) >= n) {
                return Err(ChainError::Invalid {
                    call,
                    reason: format!("uid {bad} does not exist"),
                });
            }
            let current = Self::block_of(&tx)?;
            let last: Option<i64> = tx
                .query_row(
                    "SELECT block FROM weight_sets WHERE netuid = ?1 AND validator_uid = ?2",
                    params![netuid, validator],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err(call))?;
            if let Some(last) = last {
                let since = current.saturating_sub(last as u64);
                if since < rate as u64 {
                    return Err(ChainError::RateLimited {
                        blocks_left: rate as u64 - since,
                    });
                }
            }
            let block = Self::next_block(&tx)?;
            tx.execute("DELETE FROM weights WHERE netuid = ?1 AND validator_uid = ?2", params![netuid, validator])
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
            tx.commit().map_err(db_err(call))?;
            Ok(block)
        })
    }

    async fn weights(
        &self,
        netuid: u16,
        validator_uid: u16,
    ) -> Result<(Vec<(u16, u16)>, Option<u64>), ChainError> {
        self.with_db(|db| {
            let mut stmt = db
                .prepare("SELECT uid, value FROM weights WHERE netuid = ?1 AND validator_uid = ?2 ORDER BY uid")
                .map_err(db_err("SubtensorModule.Weights"))?;
            let weights = stmt
                .query_map(params![netuid, validator_uid], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(db_err("SubtensorModule.Weights"))?;
            let block: Option<i64> = db
                .query_row(
                    "SELECT block FROM weight_sets WHERE netuid = ?1 AND validator_uid = ?2",
                    params![netuid, validator_uid],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("SubtensorModule.Weights"))?;
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
        let (weights, block) = chain.weights(1, 0).await.expect("weights");
        assert_eq!(weights, vec![(0, 0), (1, 65535)]);
        assert!(block.is_some());
        assert_eq!(meta.neurons[0].last_update, block.expect("block"));
    }
}
