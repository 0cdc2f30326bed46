//! The validator's own SQLite database: submissions seen, losses with their cache key, the jobs
//! actually started and finished, moving-average scores, epoch reports and pending weights.
//!
//! Everything is written before it is acted on, so a coordinator killed at any point continues
//! where it stopped and never trains a cached submission again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The version of the schema this code writes.
const SCHEMA_VERSION: i64 = 1;

/// A state database problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state database: {0}")]
pub struct StateError(pub String);

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> Self {
        StateError(e.to_string())
    }
}

/// What a loss is valid for: the dataset revision, the eval set, the base model and the training
/// config. Any change of the last three makes every cached loss stale.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheKey {
    /// The committed dataset revision (40 hex).
    pub revision: String,
    /// SHA-256 of the eval set's canonical rows.
    pub eval_hash: String,
    /// SHA-256 of the model's config and weights.
    pub model_id: String,
    /// SHA-256 of the training config.
    pub config_hash: String,
}

/// One training job as recorded: started always, finished when it produced an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    /// Row id.
    pub id: i64,
    /// The epoch it belonged to.
    pub epoch: u64,
    /// The miner.
    pub uid: u16,
    /// The dataset revision.
    pub revision: String,
    /// Whether it finished with an outcome.
    pub finished: bool,
}

/// Weights decided for an epoch, stored before they are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWeights {
    /// The epoch.
    pub epoch: u64,
    /// Uids and u16 values.
    pub weights: Vec<(u16, u16)>,
    /// Version key to send.
    pub version_key: u64,
    /// Block at which they were decided.
    pub created_block: u64,
}

/// The validator state.
pub struct State {
    db: Mutex<Connection>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl State {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StateError(format!("{}: {e}", dir.display())))?;
        }
        let db =
            Connection::open(path).map_err(|e| StateError(format!("{}: {e}", path.display())))?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        let version: Option<i64> = db
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse().ok());
        match version {
            None => {
                db.execute_batch(
                    "CREATE TABLE submissions (hotkey TEXT NOT NULL, commitment TEXT NOT NULL, uid INTEGER NOT NULL,
                         commit_block INTEGER NOT NULL, first_seen_epoch INTEGER NOT NULL,
                         PRIMARY KEY (hotkey, commitment));
                     CREATE TABLE losses (revision TEXT NOT NULL, eval_hash TEXT NOT NULL, model_id TEXT NOT NULL,
                         config_hash TEXT NOT NULL, outcome TEXT NOT NULL, worker TEXT, created_at INTEGER NOT NULL,
                         PRIMARY KEY (revision, eval_hash, model_id, config_hash));
                     CREATE TABLE job_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, epoch INTEGER NOT NULL,
                         uid INTEGER NOT NULL, revision TEXT NOT NULL, started_at INTEGER NOT NULL,
                         finished_at INTEGER);
                     CREATE TABLE scores (uid INTEGER PRIMARY KEY, hotkey TEXT NOT NULL, score REAL NOT NULL);
                     CREATE TABLE epochs (epoch INTEGER PRIMARY KEY, started_block INTEGER NOT NULL,
                         started_at INTEGER NOT NULL, finished_at INTEGER, report TEXT);
                     CREATE TABLE pending_weights (epoch INTEGER PRIMARY KEY, weights TEXT NOT NULL,
                         version_key INTEGER NOT NULL, created_block INTEGER NOT NULL, sent_block INTEGER);",
                )?;
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(StateError(format!(
                    "{}: schema version {other} is not supported by this build (expects {SCHEMA_VERSION})",
                    path.display()
                )))
            }
        }
        Ok(Self { db: Mutex::new(db) })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StateError> {
        let mut db = self
            .db
            .lock()
            .map_err(|_| StateError("lock poisoned".into()))?;
        f(&mut db).map_err(StateError::from)
    }

    /// Records a submission the first time it is seen.
    pub fn record_submission(
        &self,
        uid: u16,
        hotkey: &str,
        commitment: &str,
        commit_block: u64,
        epoch: u64,
    ) -> Result<(), StateError> {
        self.with(|db| {
            db.execute(
                "INSERT OR IGNORE INTO submissions (hotkey, commitment, uid, commit_block, first_seen_epoch)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hotkey, commitment, uid, commit_block as i64, epoch as i64],
            )
            .map(|_| ())
        })
    }

    /// Submissions recorded so far: (uid, hotkey, commitment, commit block).
    pub fn submissions(&self) -> Result<Vec<(u16, String, String, u64)>, StateError> {
        self.with(|db| {
            let mut stmt =
                db.prepare("SELECT uid, hotkey, commitment, commit_block FROM submissions ORDER BY commit_block, uid")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64)))?;
            rows.collect()
        })
    }

    /// The stored outcome (JSON) for a key, if any.
    pub fn cached_outcome(&self, key: &CacheKey) -> Result<Option<String>, StateError> {
        self.with(|db| {
            db.query_row(
                "SELECT outcome FROM losses WHERE revision = ?1 AND eval_hash = ?2 AND model_id = ?3 AND config_hash = ?4",
                params![key.revision, key.eval_hash, key.model_id, key.config_hash],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Whether a revision was ever evaluated, under any key.
    pub fn ever_evaluated(&self, revision: &str) -> Result<bool, StateError> {
        self.with(|db| {
            db.query_row(
                "SELECT 1 FROM losses WHERE revision = ?1 LIMIT 1",
                [revision],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }

    /// Records that a job starts; returns its id.
    pub fn begin_job(&self, epoch: u64, uid: u16, revision: &str) -> Result<i64, StateError> {
        self.with(|db| {
            db.execute(
                "INSERT INTO job_runs (epoch, uid, revision, started_at) VALUES (?1, ?2, ?3, ?4)",
                params![epoch as i64, uid, revision, now()],
            )?;
            Ok(db.last_insert_rowid())
        })
    }

    /// Stores a job's outcome under its cache key and marks the job finished, atomically.
    pub fn finish_job(
        &self,
        job: i64,
        key: &CacheKey,
        outcome_json: &str,
        worker: &str,
    ) -> Result<(), StateError> {
        self.with(|db| {
            let tx = db.transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO losses (revision, eval_hash, model_id, config_hash, outcome, worker, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![key.revision, key.eval_hash, key.model_id, key.config_hash, outcome_json, worker, now()],
            )?;
            tx.execute("UPDATE job_runs SET finished_at = ?2 WHERE id = ?1", params![job, now()])?;
            tx.commit()
        })
    }

    /// Every job run, oldest first.
    pub fn job_runs(&self) -> Result<Vec<JobRun>, StateError> {
        self.with(|db| {
            let mut stmt =
                db.prepare("SELECT id, epoch, uid, revision, finished_at IS NOT NULL FROM job_runs ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(JobRun {
                    id: r.get(0)?,
                    epoch: r.get::<_, i64>(1)? as u64,
                    uid: r.get(2)?,
                    revision: r.get(3)?,
                    finished: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Moving-average scores by uid, with the hotkey they belong to.
    pub fn scores(&self) -> Result<BTreeMap<u16, (String, f64)>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare("SELECT uid, hotkey, score FROM scores")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, u16>(0)?, (r.get(1)?, r.get(2)?))))?;
            rows.collect()
        })
    }

    /// Replaces all scores.
    pub fn set_scores(&self, scores: &BTreeMap<u16, (String, f64)>) -> Result<(), StateError> {
        self.with(|db| {
            let tx = db.transaction()?;
            tx.execute("DELETE FROM scores", [])?;
            for (uid, (hotkey, score)) in scores {
                tx.execute(
                    "INSERT INTO scores (uid, hotkey, score) VALUES (?1, ?2, ?3)",
                    params![uid, hotkey, score],
                )?;
            }
            tx.commit()
        })
    }

    /// The unfinished epoch to resume, if any: (epoch, started block).
    pub fn open_epoch(&self) -> Result<Option<(u64, u64)>, StateError> {
        self.with(|db| {
            db.query_row(
                "SELECT epoch, started_block FROM epochs WHERE finished_at IS NULL ORDER BY epoch DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .optional()
        })
    }

    /// Starts the next epoch at `block`; returns its number.
    pub fn begin_epoch(&self, block: u64) -> Result<u64, StateError> {
        self.with(|db| {
            let next: i64 =
                db.query_row("SELECT COALESCE(MAX(epoch), 0) + 1 FROM epochs", [], |r| {
                    r.get(0)
                })?;
            db.execute(
                "INSERT INTO epochs (epoch, started_block, started_at) VALUES (?1, ?2, ?3)",
                params![next, block as i64, now()],
            )?;
            Ok(next as u64)
        })
    }

    /// Finishes an epoch with its report (JSON).
    pub fn finish_epoch(&self, epoch: u64, report_json: &str) -> Result<(), StateError> {
        self.with(|db| {
            db.execute(
                "UPDATE epochs SET finished_at = ?2, report = ?3 WHERE epoch = ?1",
                params![epoch as i64, now(), report_json],
            )
            .map(|_| ())
        })
    }

    /// The report (JSON) of the latest finished epoch.
    pub fn last_report(&self) -> Result<Option<String>, StateError> {
        self.with(|db| {
            db.query_row(
                "SELECT report FROM epochs WHERE finished_at IS NOT NULL ORDER BY epoch DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Stores weights to send (before sending them).
    pub fn queue_weights(&self, pending: &PendingWeights) -> Result<(), StateError> {
        let weights =
            serde_json::to_string(&pending.weights).map_err(|e| StateError(e.to_string()))?;
        self.with(|db| {
            db.execute(
                "INSERT OR REPLACE INTO pending_weights (epoch, weights, version_key, created_block, sent_block)
                 VALUES (?1, ?2, ?3, ?4, NULL)",
                params![pending.epoch as i64, weights, pending.version_key as i64, pending.created_block as i64],
            )
            .map(|_| ())
        })
    }

    /// Marks an epoch's weights as included at `block`.
    pub fn mark_weights_sent(&self, epoch: u64, block: u64) -> Result<(), StateError> {
        self.with(|db| {
            db.execute(
                "UPDATE pending_weights SET sent_block = ?2 WHERE epoch = ?1",
                params![epoch as i64, block as i64],
            )
            .map(|_| ())
        })
    }

    /// The newest weights not yet sent.
    pub fn pending_weights(&self) -> Result<Option<PendingWeights>, StateError> {
        let row: Option<(i64, String, i64, i64)> = self.with(|db| {
            db.query_row(
                "SELECT epoch, weights, version_key, created_block FROM pending_weights
                 WHERE sent_block IS NULL ORDER BY epoch DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })?;
        row.map(|(epoch, weights, version_key, created_block)| {
            Ok(PendingWeights {
                epoch: epoch as u64,
                weights: serde_json::from_str(&weights)
                    .map_err(|e| StateError(format!("pending_weights: {e}")))?,
                version_key: version_key as u64,
                created_block: created_block as u64,
            })
        })
        .transpose()
    }

    /// The block of the last weights sent, if any.
    pub fn last_weights_block(&self) -> Result<Option<u64>, StateError> {
        self.with(|db| {
            db.query_row("SELECT MAX(sent_block) FROM pending_weights", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|b| b.map(|b| b as u64))
        })
    }

    /// A stored value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        self.with(|db| {
            db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
    }

    /// Stores a value in the `meta` table.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.with(|db| {
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(config: &str) -> CacheKey {
        CacheKey {
            revision: "a".repeat(40),
            eval_hash: "e".into(),
            model_id: "m".into(),
            config_hash: config.into(),
        }
    }

    #[test]
    fn everything_survives_a_reopen_and_the_cache_needs_the_whole_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.sqlite");
        {
            let state = State::open(&path).expect("opens");
            let epoch = state.begin_epoch(10).expect("epoch");
            assert_eq!(epoch, 1);
            state
                .record_submission(3, "hk", "a/b:1:x", 5, epoch)
                .expect("submission");
            state
                .record_submission(3, "hk", "a/b:1:x", 5, epoch)
                .expect("idempotent");
            let job = state.begin_job(epoch, 3, &"a".repeat(40)).expect("job");
            state
                .finish_job(job, &key("c1"), "{\"loss\":1}", "cpu")
                .expect("finish");
            let unfinished = state.begin_job(epoch, 4, &"b".repeat(40)).expect("job");
            assert!(unfinished > job);
            let mut scores = BTreeMap::new();
            scores.insert(3u16, ("hk".to_string(), 0.5));
            state.set_scores(&scores).expect("scores");
            state
                .queue_weights(&PendingWeights {
                    epoch,
                    weights: vec![(3, 65535)],
                    version_key: 1,
                    created_block: 12,
                })
                .expect("queued");
        }
        let state = State::open(&path).expect("reopens");
        assert_eq!(state.open_epoch().expect("open"), Some((1, 10)));
        assert_eq!(state.submissions().expect("subs").len(), 1);
        assert_eq!(
            state.cached_outcome(&key("c1")).expect("hit").as_deref(),
            Some("{\"loss\":1}")
        );
        assert_eq!(
            state.cached_outcome(&key("c2")).expect("miss"),
            None,
            "another config hash misses"
        );
        assert!(state.ever_evaluated(&"a".repeat(40)).expect("ever"));
        let runs = state.job_runs().expect("runs");
        assert_eq!(
            runs.iter().map(|r| r.finished).collect::<Vec<_>>(),
            vec![true, false]
        );
        assert_eq!(state.scores().expect("scores")[&3].1, 0.5);
        let pending = state.pending_weights().expect("pending").expect("some");
        assert_eq!(pending.weights, vec![(3, 65535)]);
        state.mark_weights_sent(1, 13).expect("sent");
        assert_eq!(state.pending_weights().expect("pending"), None);
        assert_eq!(state.last_weights_block().expect("block"), Some(13));
        state.finish_epoch(1, "{}").expect("finish");
        assert_eq!(state.open_epoch().expect("open"), None);
        assert_eq!(state.begin_epoch(20).expect("next"), 2);
    }
}
