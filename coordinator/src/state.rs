//! The validator's own SQLite database (a file apart from the devnet chain): submissions seen,
//! losses under their cache key, the training jobs actually started and finished, moving-average
//! scores, epochs with their reports, weights queued before they are sent, and a `meta` table.
//!
//! Everything is written before it is acted on, so a coordinator killed at any point continues
//! where it stopped and never trains a cached submission again. Every write is one `IMMEDIATE`
//! transaction; the file is in WAL mode with a busy timeout, so `miner-cli status` or a test may
//! read it while the coordinator runs.
//!
//! Schema versions: `meta.schema_version` holds the version; [`MIGRATIONS`] brings any older
//! file up to date in one transaction on open, and a file newer than this build is refused.
//!
//! | table | key | holds |
//! |---|---|---|
//! | `submissions` | (hotkey, commitment) | uid, commit block, first epoch seen |
//! | `losses` | (revision, eval_hash, model_id, config_hash) | outcome JSON, worker, created_at |
//! | `job_runs` | id | epoch, uid, revision, started/finished at, cache key, worker, outcome |
//! | `scores` | uid | hotkey, moving-average score |
//! | `epochs` | epoch | started block/at, finished at, report JSON |
//! | `pending_weights` | epoch | (uid, u16) JSON, version key, created block, sent block |
//! | `weight_commits` | hash | a hash commit-reveal: netuid, hotkey, uids, values, salt, version key, commit block and epoch, status |
//! | `meta` | key | value |

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
pub use subtensor::weights::PendingCommit;

/// The schema migrations, in order: `MIGRATIONS[i]` takes a file from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
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
    // 2: a job run records the full cache key, the worker and how it ended.
    "ALTER TABLE job_runs ADD COLUMN eval_hash TEXT;
     ALTER TABLE job_runs ADD COLUMN model_id TEXT;
     ALTER TABLE job_runs ADD COLUMN config_hash TEXT;
     ALTER TABLE job_runs ADD COLUMN worker TEXT;
     ALTER TABLE job_runs ADD COLUMN outcome TEXT;
     CREATE INDEX job_runs_revision ON job_runs (revision);",
    // 3: weight commits waiting for their reveal (hash commit-reveal on subtensor).
    "CREATE TABLE weight_commits (hash TEXT PRIMARY KEY, netuid INTEGER NOT NULL,
         hotkey TEXT NOT NULL, uids TEXT NOT NULL, weight_values TEXT NOT NULL, salt TEXT NOT NULL,
         version_key INTEGER NOT NULL, created_at INTEGER NOT NULL, commit_block INTEGER,
         commit_epoch INTEGER, status TEXT NOT NULL DEFAULT 'pending', closed_block INTEGER);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A state database problem, naming the operation (or file) and the reason.
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

/// One training job as recorded: a row when it starts, completed when it ends.
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
    /// Whether it finished with an outcome stored under its cache key.
    pub finished: bool,
    /// The full cache key, once finished.
    pub key: Option<CacheKey>,
    /// The worker that ran it, once finished.
    pub worker: Option<String>,
    /// `done` when its outcome was stored, or why it was abandoned; `None` while running (or
    /// when the coordinator died during it).
    pub outcome: Option<String>,
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

/// How a weight commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStatus {
    /// Revealed in the given block.
    Revealed,
    /// Its reveal epoch passed (or the chain never had it); nothing to reveal any more.
    Expired,
}

/// A recorded submission: a hotkey's commitment as first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The miner's uid when seen.
    pub uid: u16,
    /// Its hotkey (SS58).
    pub hotkey: String,
    /// The commitment string.
    pub commitment: String,
    /// The block the commitment landed in.
    pub commit_block: u64,
    /// The epoch in which it was first seen.
    pub first_seen_epoch: u64,
}

/// The validator state: one SQLite connection, shared by the coordinator's tasks.
pub struct State {
    db: Mutex<Connection>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Makes the database file readable by its owner only (it holds commit-reveal salts): created
/// with mode 0600, or narrowed to it when it exists with more. SQLite gives its `-wal` and
/// `-shm` files the database file's mode.
fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn schema_version(db: &Connection) -> Result<i64, rusqlite::Error> {
    let text: Option<String> = db
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text.and_then(|v| v.parse().ok()).unwrap_or(0))
}

impl State {
    /// Opens (or creates) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let fail = |e: &dyn std::fmt::Display| StateError(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        owner_only(path).map_err(|e| fail(&e))?;
        let mut db = Connection::open(path).map_err(|e| fail(&e))?;
        db.busy_timeout(Duration::from_secs(10))
            .map_err(|e| fail(&e))?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail(&e))?;
        db.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| fail(&e))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(|e| fail(&e))?;
        if schema_version(&db).map_err(|e| fail(&e))? != SCHEMA_VERSION {
            Self::migrate(&mut db).map_err(|e| fail(&e))?;
        }
        Ok(Self { db: Mutex::new(db) })
    }

    /// Applies the missing migrations in one transaction (another process may be doing the
    /// same: the version is read again under the write lock).
    fn migrate(db: &mut Connection) -> Result<(), StateError> {
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = schema_version(&tx)?;
        if version > SCHEMA_VERSION {
            return Err(StateError(format!(
                "schema version {version} is newer than this build's {SCHEMA_VERSION}; \
                 use a newer coordinator"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            tx.execute_batch(sql)
                .map_err(|e| StateError(format!("migration to version {}: {e}", i + 1)))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StateError> {
        self.db
            .lock()
            .map_err(|_| StateError("connection lock poisoned".into()))
    }

    /// Runs `f` on the connection; an error names `op`.
    fn read<T>(
        &self,
        op: &str,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StateError> {
        let db = self.lock()?;
        f(&db).map_err(|e| StateError(format!("{op}: {e}")))
    }

    /// Runs `f` in one `IMMEDIATE` transaction, committed when it succeeds; an error names `op`.
    fn write<T>(
        &self,
        op: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut db = self.lock()?;
        let named = |e: rusqlite::Error| StateError(format!("{op}: {e}"));
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(named)?;
        let out = f(&tx).map_err(|e| {
            if e.0.starts_with(op) {
                e
            } else {
                StateError(format!("{op}: {}", e.0))
            }
        })?;
        tx.commit().map_err(named)?;
        Ok(out)
    }

    /// Records a submission the first time it is seen (again: nothing changes).
    pub fn record_submission(
        &self,
        uid: u16,
        hotkey: &str,
        commitment: &str,
        commit_block: u64,
        epoch: u64,
    ) -> Result<(), StateError> {
        self.write("record_submission", |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO submissions (hotkey, commitment, uid, commit_block, first_seen_epoch)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hotkey, commitment, uid, commit_block as i64, epoch as i64],
            )?;
            Ok(())
        })
    }

    /// Submissions recorded so far: (uid, hotkey, commitment, commit block), oldest commit first.
    pub fn submissions(&self) -> Result<Vec<(u16, String, String, u64)>, StateError> {
        Ok(self
            .submission_records()?
            .into_iter()
            .map(|s| (s.uid, s.hotkey, s.commitment, s.commit_block))
            .collect())
    }

    /// Submissions recorded so far, oldest commit first.
    pub fn submission_records(&self) -> Result<Vec<Submission>, StateError> {
        self.read("submissions", |db| {
            let mut stmt = db.prepare(
                "SELECT uid, hotkey, commitment, commit_block, first_seen_epoch FROM submissions
                 ORDER BY commit_block, uid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Submission {
                    uid: r.get(0)?,
                    hotkey: r.get(1)?,
                    commitment: r.get(2)?,
                    commit_block: r.get::<_, i64>(3)? as u64,
                    first_seen_epoch: r.get::<_, i64>(4)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// The stored outcome (JSON) for the full four-part key, if any.
    pub fn cached_outcome(&self, key: &CacheKey) -> Result<Option<String>, StateError> {
        self.read("cached_outcome", |db| {
            db.query_row(
                "SELECT outcome FROM losses WHERE revision = ?1 AND eval_hash = ?2 AND model_id = ?3 AND config_hash = ?4",
                params![key.revision, key.eval_hash, key.model_id, key.config_hash],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Whether a revision was ever evaluated, under any key (a stale loss, for the EvalQueue).
    pub fn ever_evaluated(&self, revision: &str) -> Result<bool, StateError> {
        self.read("ever_evaluated", |db| {
            db.query_row(
                "SELECT 1 FROM losses WHERE revision = ?1 LIMIT 1",
                [revision],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }

    /// Records that a training job starts (before it is sent to a worker); returns its id.
    pub fn begin_job(&self, epoch: u64, uid: u16, revision: &str) -> Result<i64, StateError> {
        self.write("begin_job", |tx| {
            tx.execute(
                "INSERT INTO job_runs (epoch, uid, revision, started_at) VALUES (?1, ?2, ?3, ?4)",
                params![epoch as i64, uid, revision, now()],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Stores a job's outcome (JSON) under its cache key and marks the job finished, atomically.
    /// The key's revision must be the job's; a job finishes once.
    pub fn finish_job(
        &self,
        job: i64,
        key: &CacheKey,
        outcome_json: &str,
        worker: &str,
    ) -> Result<(), StateError> {
        self.write("finish_job", |tx| {
            let (revision, finished): (String, Option<i64>) = tx
                .query_row(
                    "SELECT revision, finished_at FROM job_runs WHERE id = ?1",
                    [job],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| StateError(format!("job {job} was never begun")))?;
            if finished.is_some() {
                return Err(StateError(format!("job {job} has already finished")));
            }
            if revision != key.revision {
                return Err(StateError(format!(
                    "job {job} trained revision {revision}, not the key's {}",
                    key.revision
                )));
            }
            tx.execute(
                "INSERT OR REPLACE INTO losses (revision, eval_hash, model_id, config_hash, outcome, worker, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![key.revision, key.eval_hash, key.model_id, key.config_hash, outcome_json, worker, now()],
            )?;
            tx.execute(
                "UPDATE job_runs SET finished_at = ?2, eval_hash = ?3, model_id = ?4, config_hash = ?5,
                     worker = ?6, outcome = 'done' WHERE id = ?1",
                params![job, now(), key.eval_hash, key.model_id, key.config_hash, worker],
            )?;
            Ok(())
        })
    }

    /// Ends a job without an outcome (its worker failed: not the miner's fault, nothing is
    /// cached, the submission is trained again later); `reason` is recorded.
    pub fn abandon_job(&self, job: i64, worker: &str, reason: &str) -> Result<(), StateError> {
        self.write("abandon_job", |tx| {
            let changed = tx.execute(
                "UPDATE job_runs SET worker = ?2, outcome = ?3 WHERE id = ?1 AND finished_at IS NULL",
                params![job, worker, format!("abandoned: {reason}")],
            )?;
            if changed == 0 {
                return Err(StateError(format!(
                    "job {job} was never begun or has already finished"
                )));
            }
            Ok(())
        })
    }

    /// Every job run, oldest first.
    pub fn job_runs(&self) -> Result<Vec<JobRun>, StateError> {
        self.read("job_runs", |db| {
            let mut stmt = db.prepare(
                "SELECT id, epoch, uid, revision, finished_at IS NOT NULL, eval_hash, model_id,
                     config_hash, worker, outcome FROM job_runs ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                let revision: String = r.get(3)?;
                let key = match (
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ) {
                    (Some(eval_hash), Some(model_id), Some(config_hash)) => Some(CacheKey {
                        revision: revision.clone(),
                        eval_hash,
                        model_id,
                        config_hash,
                    }),
                    _ => None,
                };
                Ok(JobRun {
                    id: r.get(0)?,
                    epoch: r.get::<_, i64>(1)? as u64,
                    uid: r.get(2)?,
                    revision,
                    finished: r.get(4)?,
                    key,
                    worker: r.get(8)?,
                    outcome: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Moving-average scores by uid, with the hotkey they belong to.
    pub fn scores(&self) -> Result<BTreeMap<u16, (String, f64)>, StateError> {
        self.read("scores", |db| {
            let mut stmt = db.prepare("SELECT uid, hotkey, score FROM scores")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, u16>(0)?, (r.get(1)?, r.get(2)?))))?;
            rows.collect()
        })
    }

    /// The epoch whose moving-average update the stored scores include, if any: an epoch
    /// resumed after a crash between its score update and its end must not apply it again.
    pub fn scores_epoch(&self) -> Result<Option<u64>, StateError> {
        self.read("scores_epoch", |db| {
            db.query_row(
                "SELECT value FROM meta WHERE key = 'scores_epoch'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
        })?
        .map(|v| {
            v.parse()
                .map_err(|e| StateError(format!("scores_epoch: {v:?}: {e}")))
        })
        .transpose()
    }

    /// Replaces all scores (each must be finite) with the ones `epoch` produced, and records
    /// `epoch` as [`Self::scores_epoch`] in the same transaction (`docs/state.md`).
    pub fn set_scores(
        &self,
        epoch: u64,
        scores: &BTreeMap<u16, (String, f64)>,
    ) -> Result<(), StateError> {
        if let Some((uid, (_, score))) = scores.iter().find(|(_, (_, s))| !s.is_finite()) {
            return Err(StateError(format!(
                "set_scores: the score of uid {uid} is {score}, not a finite number"
            )));
        }
        self.write("set_scores", |tx| {
            tx.execute("DELETE FROM scores", [])?;
            for (uid, (hotkey, score)) in scores {
                tx.execute(
                    "INSERT INTO scores (uid, hotkey, score) VALUES (?1, ?2, ?3)",
                    params![uid, hotkey, score],
                )?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('scores_epoch', ?1)",
                [epoch.to_string()],
            )?;
            Ok(())
        })
    }

    /// The unfinished epoch to resume, if any: (epoch, started block).
    pub fn open_epoch(&self) -> Result<Option<(u64, u64)>, StateError> {
        self.read("open_epoch", |db| {
            db.query_row(
                "SELECT epoch, started_block FROM epochs WHERE finished_at IS NULL ORDER BY epoch DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .optional()
        })
    }

    /// Starts the next epoch (1, 2, ...) at chain block `block`; returns its number.
    pub fn begin_epoch(&self, block: u64) -> Result<u64, StateError> {
        self.write("begin_epoch", |tx| {
            let next: i64 =
                tx.query_row("SELECT COALESCE(MAX(epoch), 0) + 1 FROM epochs", [], |r| {
                    r.get(0)
                })?;
            tx.execute(
                "INSERT INTO epochs (epoch, started_block, started_at) VALUES (?1, ?2, ?3)",
                params![next, block as i64, now()],
            )?;
            Ok(next as u64)
        })
    }

    /// Finishes a begun epoch with its report (JSON).
    pub fn finish_epoch(&self, epoch: u64, report_json: &str) -> Result<(), StateError> {
        self.write("finish_epoch", |tx| {
            let changed = tx.execute(
                "UPDATE epochs SET finished_at = ?2, report = ?3 WHERE epoch = ?1",
                params![epoch as i64, now(), report_json],
            )?;
            if changed == 0 {
                return Err(StateError(format!("epoch {epoch} was never begun")));
            }
            Ok(())
        })
    }

    /// The report (JSON) of the latest finished epoch.
    pub fn last_report(&self) -> Result<Option<String>, StateError> {
        self.read("last_report", |db| {
            db.query_row(
                "SELECT report FROM epochs WHERE finished_at IS NOT NULL ORDER BY epoch DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// The report (JSON) of `epoch`, if it has finished.
    pub fn report(&self, epoch: u64) -> Result<Option<String>, StateError> {
        self.read("report", |db| {
            db.query_row(
                "SELECT report FROM epochs WHERE epoch = ?1 AND finished_at IS NOT NULL",
                [epoch as i64],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Stores an epoch's weights to send, before sending them (replacing what that epoch had
    /// queued). [`Self::pending_weights`] returns the newest epoch's.
    pub fn queue_weights(&self, pending: &PendingWeights) -> Result<(), StateError> {
        let weights =
            serde_json::to_string(&pending.weights).map_err(|e| StateError(e.to_string()))?;
        self.write("queue_weights", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO pending_weights (epoch, weights, version_key, created_block, sent_block)
                 VALUES (?1, ?2, ?3, ?4, NULL)",
                params![pending.epoch as i64, weights, pending.version_key as i64, pending.created_block as i64],
            )?;
            Ok(())
        })
    }

    /// Marks an epoch's queued weights as included at chain block `block`.
    pub fn mark_weights_sent(&self, epoch: u64, block: u64) -> Result<(), StateError> {
        self.write("mark_weights_sent", |tx| {
            let changed = tx.execute(
                "UPDATE pending_weights SET sent_block = ?2 WHERE epoch = ?1",
                params![epoch as i64, block as i64],
            )?;
            if changed == 0 {
                return Err(StateError(format!("epoch {epoch} has no queued weights")));
            }
            Ok(())
        })
    }

    /// The newest weights not yet sent.
    pub fn pending_weights(&self) -> Result<Option<PendingWeights>, StateError> {
        let row: Option<(i64, String, i64, i64)> = self.read("pending_weights", |db| {
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
                    .map_err(|e| StateError(format!("pending_weights of epoch {epoch}: {e}")))?,
                version_key: version_key as u64,
                created_block: created_block as u64,
            })
        })
        .transpose()
    }

    /// The block of the last weights sent, if any.
    pub fn last_weights_block(&self) -> Result<Option<u64>, StateError> {
        self.read("last_weights_block", |db| {
            db.query_row("SELECT MAX(sent_block) FROM pending_weights", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|b| b.map(|b| b as u64))
        })
    }

    /// A stored value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        self.read("meta", |db| {
            db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
    }

    /// Stores a value in the `meta` table (`schema_version` and `scores_epoch` are reserved).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        if key == "schema_version" || key == "scores_epoch" {
            return Err(StateError(format!(
                "set_meta: {key} is managed by the state itself"
            )));
        }
        self.write("set_meta", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
            Ok(())
        })
    }

    /// Stores a weight commit before it is sent (`commit_block`/`commit_epoch` unset), so a
    /// coordinator that dies after sending can still reveal it.
    pub fn record_weight_commit(&self, commit: &PendingCommit) -> Result<(), StateError> {
        let json = |v: &Vec<u16>| serde_json::to_string(v).map_err(|e| StateError(e.to_string()));
        let (uids, values, salt) = (
            json(&commit.uids)?,
            json(&commit.values)?,
            json(&commit.salt)?,
        );
        self.write("record_weight_commit", |tx| {
            tx.execute(
                "INSERT INTO weight_commits (hash, netuid, hotkey, uids, weight_values, salt,
                     version_key, created_at, commit_block, commit_epoch)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    commit.hash,
                    commit.netuid,
                    commit.hotkey,
                    uids,
                    values,
                    salt,
                    commit.version_key as i64,
                    now(),
                    commit.commit_block.map(|b| b as i64),
                    commit.commit_epoch.map(|e| e as i64)
                ],
            )?;
            Ok(())
        })
    }

    /// Records where a commit landed: its block and the epoch index the chain stored with it.
    pub fn set_weight_commit_landed(
        &self,
        hash: &str,
        commit_block: u64,
        commit_epoch: Option<u64>,
    ) -> Result<(), StateError> {
        self.write("set_weight_commit_landed", |tx| {
            let changed = tx.execute(
                "UPDATE weight_commits SET commit_block = ?2, commit_epoch = ?3 WHERE hash = ?1",
                params![hash, commit_block as i64, commit_epoch.map(|e| e as i64)],
            )?;
            if changed == 0 {
                return Err(StateError(format!("no weight commit {hash}")));
            }
            Ok(())
        })
    }

    /// Closes a commit: revealed at `block`, or expired.
    pub fn close_weight_commit(
        &self,
        hash: &str,
        status: CommitStatus,
        block: u64,
    ) -> Result<(), StateError> {
        let status = match status {
            CommitStatus::Revealed => "revealed",
            CommitStatus::Expired => "expired",
        };
        self.write("close_weight_commit", |tx| {
            tx.execute(
                "UPDATE weight_commits SET status = ?2, closed_block = ?3 WHERE hash = ?1",
                params![hash, status, block as i64],
            )?;
            Ok(())
        })
    }

    /// Commits not yet revealed or expired, oldest first.
    pub fn open_weight_commits(&self) -> Result<Vec<PendingCommit>, StateError> {
        type Row = (
            String,
            i64,
            String,
            String,
            String,
            String,
            i64,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = self.read("open_weight_commits", |db| {
            let mut stmt = db.prepare(
                "SELECT hash, netuid, hotkey, uids, weight_values, salt, version_key,
                     commit_block, commit_epoch
                 FROM weight_commits WHERE status = 'pending' ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(
                |(hash, netuid, hotkey, uids, values, salt, version_key, block, epoch)| {
                    let parse = |what: &str, text: &str| {
                        serde_json::from_str::<Vec<u16>>(text)
                            .map_err(|e| StateError(format!("weight commit {hash}: {what}: {e}")))
                    };
                    Ok(PendingCommit {
                        netuid: netuid as u16,
                        hotkey,
                        uids: parse("uids", &uids)?,
                        values: parse("values", &values)?,
                        salt: parse("salt", &salt)?,
                        version_key: version_key as u64,
                        commit_block: block.map(|b| b as u64),
                        commit_epoch: epoch.map(|e| e as u64),
                        hash,
                    })
                },
            )
            .collect()
    }
}
