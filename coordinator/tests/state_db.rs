//! The validator's state database on real SQLite files: persistence across reopening, the
//! four-part cache key, migrations, concurrent opening and refusals of bad calls.

use std::collections::BTreeMap;

use coordinator::{CacheKey, PendingWeights, State, MIGRATIONS, SCHEMA_VERSION};

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
            .record_submission(3, "hk", "a/b:1:x", 6, epoch + 1)
            .expect("idempotent");
        let job = state.begin_job(epoch, 3, &"a".repeat(40)).expect("job");
        state
            .finish_job(job, &key("c1"), "{\"loss\":1}", "cpu")
            .expect("finish");
        let unfinished = state.begin_job(epoch, 4, &"b".repeat(40)).expect("job");
        assert!(unfinished > job);
        let mut scores = BTreeMap::new();
        scores.insert(3u16, ("hk".to_string(), 0.5));
        state.set_scores(epoch, &scores).expect("scores");
        state.set_meta("eval_hash", "e").expect("meta");
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
    let subs = state.submission_records().expect("subs");
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (subs[0].commit_block, subs[0].first_seen_epoch),
        (5, 1),
        "the first sighting is kept"
    );
    assert_eq!(
        state.cached_outcome(&key("c1")).expect("hit").as_deref(),
        Some("{\"loss\":1}")
    );
    let misses = [
        key("c2"),
        CacheKey {
            revision: "b".repeat(40),
            ..key("c1")
        },
        CacheKey {
            eval_hash: "e2".into(),
            ..key("c1")
        },
        CacheKey {
            model_id: "m2".into(),
            ..key("c1")
        },
    ];
    for miss in &misses {
        assert_eq!(state.cached_outcome(miss).expect("miss"), None, "{miss:?}");
    }
    assert!(state.ever_evaluated(&"a".repeat(40)).expect("ever"));
    assert!(!state.ever_evaluated(&"b".repeat(40)).expect("never"));
    let runs = state.job_runs().expect("runs");
    assert_eq!(runs.len(), 2);
    assert!(runs[0].finished && !runs[1].finished);
    assert_eq!(runs[0].key.as_ref(), Some(&key("c1")));
    assert_eq!(runs[0].worker.as_deref(), Some("cpu"));
    assert_eq!(runs[0].outcome.as_deref(), Some("done"));
    assert_eq!(
        (runs[1].key.as_ref(), runs[1].outcome.as_deref()),
        (None, None)
    );
    assert_eq!(state.scores().expect("scores")[&3], ("hk".to_string(), 0.5));
    assert_eq!(state.scores_epoch().expect("scores epoch"), Some(1));
    assert_eq!(state.meta("eval_hash").expect("meta").as_deref(), Some("e"));
    let pending = state.pending_weights().expect("pending").expect("some");
    assert_eq!(pending.weights, vec![(3, 65535)]);
    assert_eq!(pending.created_block, 12);
    state.mark_weights_sent(1, 13).expect("sent");
    assert_eq!(state.pending_weights().expect("pending"), None);
    assert_eq!(state.last_weights_block().expect("block"), Some(13));
    state.finish_epoch(1, "{\"epoch\":1}").expect("finish");
    assert_eq!(state.open_epoch().expect("open"), None);
    assert_eq!(
        state.report(1).expect("report").as_deref(),
        Some("{\"epoch\":1}")
    );
    assert_eq!(
        state.last_report().expect("last").as_deref(),
        Some("{\"epoch\":1}")
    );
    assert_eq!(state.begin_epoch(20).expect("next"), 2);
    assert_eq!(
        state.meta("schema_version").expect("version"),
        Some(SCHEMA_VERSION.to_string())
    );
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.sqlite");
    {
        // A file as the first schema wrote it.
        let db = rusqlite::Connection::open(&path).expect("sqlite");
        db.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta (key, value) VALUES ('schema_version', '1');",
        )
        .expect("meta");
        db.execute_batch(MIGRATIONS[0]).expect("v1");
        db.execute(
            "INSERT INTO job_runs (epoch, uid, revision, started_at, finished_at) VALUES (1, 2, ?1, 0, 5)",
            ["c".repeat(40)],
        )
        .expect("row");
    }
    let state = State::open(&path).expect("migrates");
    assert_eq!(
        state.meta("schema_version").expect("version"),
        Some(SCHEMA_VERSION.to_string())
    );
    let runs = state.job_runs().expect("runs");
    assert_eq!(runs.len(), 1);
    assert!(runs[0].finished);
    assert_eq!(runs[0].key, None, "a v1 row has no recorded key");
    let job = state.begin_job(2, 2, &"a".repeat(40)).expect("job");
    state
        .finish_job(job, &key("c"), "{}", "cpu")
        .expect("finish");
    assert_eq!(state.job_runs().expect("runs")[1].key, Some(key("c")));
    drop(state);
    State::open(&path).expect("an up-to-date file opens again");
}

#[test]
fn a_file_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.sqlite");
    {
        let db = rusqlite::Connection::open(&path).expect("sqlite");
        db.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta (key, value) VALUES ('schema_version', '99');",
        )
        .expect("meta");
    }
    let err = State::open(&path).err().expect("refused");
    assert!(
        err.0.contains("schema version 99") && err.0.contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn processes_opening_a_new_file_at_once_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.sqlite");
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let state = State::open(&path).expect("opens");
                state.begin_job(1, i, &"a".repeat(40)).expect("job")
            })
        })
        .collect();
    let mut ids: Vec<i64> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    assert_eq!(
        State::open(&path)
            .expect("opens")
            .job_runs()
            .expect("runs")
            .len(),
        6
    );
}

#[test]
fn bad_calls_are_refused_with_the_operation_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(&dir.path().join("state.sqlite")).expect("opens");
    let err = state
        .finish_job(42, &key("c"), "{}", "cpu")
        .expect_err("unknown job");
    assert!(
        err.0.contains("finish_job") && err.0.contains("job 42 was never begun"),
        "{err}"
    );
    let job = state.begin_job(1, 1, &"b".repeat(40)).expect("job");
    let err = state
        .finish_job(job, &key("c"), "{}", "cpu")
        .expect_err("other revision");
    assert!(err.0.contains("not the key's"), "{err}");
    let job = state.begin_job(1, 1, &"a".repeat(40)).expect("job");
    state
        .finish_job(job, &key("c"), "{}", "cpu")
        .expect("finish");
    let err = state
        .finish_job(job, &key("c"), "{}", "cpu")
        .expect_err("twice");
    assert!(err.0.contains("already finished"), "{err}");
    let err = state.abandon_job(job, "cpu", "died").expect_err("finished");
    assert!(err.0.contains("abandon_job"), "{err}");
    let lost = state.begin_job(1, 2, &"d".repeat(40)).expect("job");
    state
        .abandon_job(lost, "gpu0", "worker disconnected")
        .expect("abandon");
    let run = state.job_runs().expect("runs").pop().expect("run");
    assert!(!run.finished);
    assert_eq!(
        run.outcome.as_deref(),
        Some("abandoned: worker disconnected")
    );
    assert!(!state.ever_evaluated(&"d".repeat(40)).expect("not cached"));

    let err = state.finish_epoch(7, "{}").expect_err("no epoch");
    assert!(err.0.contains("epoch 7 was never begun"), "{err}");
    let err = state.mark_weights_sent(7, 1).expect_err("nothing queued");
    assert!(err.0.contains("no queued weights"), "{err}");
    let mut scores = BTreeMap::new();
    scores.insert(4u16, ("hk".to_string(), f64::NAN));
    let err = state.set_scores(1, &scores).expect_err("nan");
    assert!(err.0.contains("uid 4"), "{err}");
    assert!(state.set_meta("schema_version", "1").is_err());
    assert!(state.set_meta("scores_epoch", "1").is_err());
}

#[cfg(unix)]
#[test]
fn the_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    // New: created 0600, and SQLite's WAL file follows it.
    let path = dir.path().join("validator.sqlite");
    let state = State::open(&path).expect("opens");
    state.begin_epoch(1).expect("a write");
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("validator.sqlite-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
    drop(state);
    // An existing file left readable by others is narrowed on open.
    let old = dir.path().join("old.sqlite");
    drop(State::open(&old).expect("opens"));
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(State::open(&old).expect("reopens"));
    assert_eq!(mode(&old), 0o600);
}
