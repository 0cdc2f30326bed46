//! The real client against the local Hub server over real HTTP on 127.0.0.1.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hub::server::HubServer;
use hub::{ClientConfig, HubClient, HubError, RepoKind, RetryPolicy, Token};

const ALICE: &str = "hf_alice_secret_token";
const BOB: &str = "hf_bob_secret_token";

fn rows(n: usize, tag: &str) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "{{\"system\":null,\"conversations\":[{{\"role\":\"user\",\"content\":\"q{i} {tag}\"}},{{\"role\":\"assistant\",\"content\":\"a{i} {tag}\"}}]}}\n"
        ));
    }
    out.into_bytes()
}

async fn server() -> HubServer {
    let s = HubServer::start().await.expect("server starts");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    s
}

fn client(url: &str, token: Option<&str>, cache: &Path) -> HubClient {
    let cfg =
        ClientConfig::new(url, token.and_then(Token::new), cache, false).with_retry(RetryPolicy {
            retries: 2,
            base_delay: Duration::from_millis(10),
        });
    HubClient::new(cfg).expect("client")
}

#[tokio::test]
async fn upload_commit_download_validate() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = client(s.url(), Some(ALICE), dir.path());
    let data = rows(20, "first");
    let sha = alice
        .publish_dataset("alice/ds", &data, true)
        .await
        .unwrap();
    assert_eq!(sha.len(), 40);
    assert_eq!(
        s.branch(RepoKind::Dataset, "alice/ds", "main").as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(s.is_private(RepoKind::Dataset, "alice/ds"), Some(true));

    // Another cache, so the bytes come over HTTP.
    let dir2 = tempfile::tempdir().unwrap();
    let reader = client(s.url(), Some(ALICE), dir2.path());
    let got = reader
        .fetch_dataset("alice/ds", &sha, 1 << 20)
        .await
        .unwrap();
    assert_eq!(got, data);
    let ds = protocol::dataset::parse_dataset(&got, &protocol::dataset::DatasetLimits::default())
        .unwrap();
    assert_eq!(ds.rows.len(), 20);
    assert_eq!(ds.rows[3].conversations[1].content, "a3 first");

    // Concurrent fetches of one file (two miners committing the same repo) both succeed.
    let dir3 = tempfile::tempdir().unwrap();
    let (a, b) = (
        client(s.url(), Some(ALICE), dir3.path()),
        client(s.url(), Some(ALICE), dir3.path()),
    );
    let (ra, rb) = tokio::join!(
        a.fetch_dataset("alice/ds", &sha, 1 << 20),
        b.fetch_dataset("alice/ds", &sha, 1 << 20)
    );
    assert_eq!((ra.unwrap(), rb.unwrap()), (data.clone(), data.clone()));
    // The token never shows in Debug output.
    assert!(!format!("{a:?}").contains(ALICE));

    // Python-compatible cache layout.
    let folder = dir2.path().join("datasets--alice--ds");
    let snap = folder.join("snapshots").join(&sha).join("data.jsonl");
    assert!(snap.is_file());
    let target = std::fs::read_link(&snap).unwrap();
    assert!(target.starts_with("../../blobs"), "{target:?}");
    let blobs: Vec<_> = std::fs::read_dir(folder.join("blobs")).unwrap().collect();
    assert_eq!(blobs.len(), 1);
    assert_eq!(std::fs::read(&snap).unwrap(), data);

    // Publishing again moves main; visibility flips.
    let data2 = rows(5, "second");
    let sha2 = alice
        .publish_dataset("alice/ds", &data2, true)
        .await
        .unwrap();
    assert_ne!(sha, sha2);
    alice.set_visibility("alice/ds", true).await.unwrap();
    assert_eq!(s.is_private(RepoKind::Dataset, "alice/ds"), Some(false));
    let info = alice
        .repo_info(RepoKind::Dataset, "alice/ds", None)
        .await
        .unwrap();
    assert_eq!(info.sha, sha2);
    assert_eq!(info.private, Some(false));
    assert!(info.files.iter().any(|f| f == "data.jsonl"));
}

#[tokio::test]
async fn private_repos_and_auth() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = client(s.url(), Some(ALICE), dir.path());
    let sha = alice
        .publish_dataset("alice/secret", &rows(3, "s"), true)
        .await
        .unwrap();

    let bob = client(s.url(), Some(BOB), dir.path().join("b").as_path());
    let err = bob
        .fetch_dataset("alice/secret", &sha, 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HubError::NotFound {
            repo: "alice/secret".into()
        }
    );

    let anon = client(s.url(), None, dir.path().join("c").as_path());
    let err = anon
        .fetch_dataset("alice/secret", &sha, 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::Private { repo, .. } if repo == "alice/secret"),
        "{err}"
    );
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");

    // Writes: no token, a bad token, someone else's namespace and repo.
    let err = anon
        .publish_dataset("alice/other", b"x\n", true)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err}");
    let bad = client(s.url(), Some("hf_wrong"), dir.path().join("d").as_path());
    let err = bad
        .publish_dataset("alice/other", b"x\n", true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::Unauthorized { reason, .. } if reason.contains("refused")),
        "{err}"
    );
    assert!(!err.to_string().contains("hf_wrong"));
    let err = bob
        .publish_dataset("alice/bobs", b"x\n", true)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err}");
    assert_eq!(s.is_private(RepoKind::Dataset, "alice/bobs"), None);
    let err = bob.set_visibility("alice/secret", true).await.unwrap_err();
    assert_eq!(
        err,
        HubError::NotFound {
            repo: "alice/secret".into()
        }
    );
    assert_eq!(s.is_private(RepoKind::Dataset, "alice/secret"), Some(true));

    // Public now: bob and anonymous readers see it.
    alice.set_visibility("alice/secret", true).await.unwrap();
    assert_eq!(
        anon.fetch_dataset("alice/secret", &sha, 1 << 20)
            .await
            .unwrap(),
        rows(3, "s")
    );
    // A public repo still cannot be written by others.
    let err = bob
        .publish_dataset("alice/secret", b"x\n", false)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err}");

    let err = anon
        .fetch_dataset("nobody/none", &sha, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Private { .. }), "{err}");
    let err = bob
        .fetch_dataset("nobody/none", &sha, 10)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HubError::NotFound {
            repo: "nobody/none".into()
        }
    );
    let err = bob.fetch_dataset("../etc", &sha, 10).await.unwrap_err();
    assert!(matches!(err, HubError::BadRepo { .. }));
}

#[tokio::test]
async fn moved_branch_and_pinned_revisions() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = client(s.url(), Some(ALICE), dir.path());
    let old = rows(4, "old");
    let sha1 = alice
        .publish_dataset("alice/moving", &old, false)
        .await
        .unwrap();
    let sha2 = alice
        .publish_dataset("alice/moving", &rows(4, "new"), false)
        .await
        .unwrap();
    assert_ne!(sha1, sha2);

    let reader = client(s.url(), None, dir.path().join("r").as_path());
    assert_eq!(
        reader
            .fetch_dataset("alice/moving", &sha1, 1 << 20)
            .await
            .unwrap(),
        old
    );
    assert_eq!(
        reader
            .fetch_dataset("alice/moving", &sha2, 1 << 20)
            .await
            .unwrap(),
        rows(4, "new")
    );

    for bad in ["main", "v1", &sha1[..12], "refs/pr/1"] {
        let err = reader
            .fetch_dataset("alice/moving", bad, 1 << 20)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HubError::RevisionNotFound { reason, .. } if reason.contains("40-hex")),
            "{bad}: {err}"
        );
    }
    // A sha that was never committed.
    let err = reader
        .fetch_dataset("alice/moving", &"0".repeat(40), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err}");

    // A branch named like a sha: the Hub resolves the name to another commit.
    let fake = "ab".repeat(20);
    s.set_branch(RepoKind::Dataset, "alice/moving", &fake, &sha1)
        .unwrap();
    let err = reader
        .fetch_dataset("alice/moving", &fake, 1 << 20)
        .await
        .unwrap_err();
    match &err {
        HubError::ShaMismatch {
            repo,
            revision,
            reason,
        } => {
            assert_eq!(repo, "alice/moving");
            assert_eq!(revision, &fake);
            assert!(reason.contains(&sha1), "{reason}");
        }
        other => panic!("expected ShaMismatch, got {other}"),
    }
}

#[tokio::test]
async fn oversize_is_cut_short() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'x'; 24 << 20];
    s.create_repo(RepoKind::Dataset, "alice/big", false)
        .unwrap();
    let sha = s
        .commit(RepoKind::Dataset, "alice/big", &[("data.jsonl", &big)])
        .unwrap();
    let reader = client(s.url(), None, dir.path());

    // Announced size over the cap: refused before any body byte.
    s.clear_requests();
    let err = reader
        .fetch_dataset("alice/big", &sha, 64 << 10)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HubError::TooLarge {
            repo: "alice/big".into(),
            revision: sha.clone(),
            file: "data.jsonl".into(),
            limit: 64 << 10
        }
    );
    let sent: u64 = s.requests().iter().map(|r| r.bytes_sent).sum();
    assert_eq!(sent, 0, "{:?}", s.requests());

    // A server that announces no size and ignores Range: the stream is dropped past the cap.
    s.set_hide_sizes(true);
    s.set_ignore_range(true);
    s.clear_requests();
    let err = reader
        .fetch_dataset("alice/big", &sha, 64 << 10)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HubError::TooLarge { limit, .. } if limit == 64 << 10),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gets: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("resolve"))
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    eprintln!(
        "hidden size: {} of {} bytes sent",
        gets[0].bytes_sent,
        big.len()
    );
    // What the kernel's socket buffers absorb (a few MB on loopback) is sent; the rest is not.
    assert!(
        gets[0].bytes_sent < (big.len() as u64) / 3,
        "sent {} of {}",
        gets[0].bytes_sent,
        big.len()
    );

    // Honouring Range, the server sends at most cap + 1 bytes.
    s.set_ignore_range(false);
    s.clear_requests();
    let err = reader
        .fetch_dataset("alice/big", &sha, 64 << 10)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::TooLarge { .. }), "{err}");
    let sent: u64 = s.requests().iter().map(|r| r.bytes_sent).sum();
    assert_eq!(sent, (64 << 10) + 1);
    // Nothing was cached.
    assert!(hub::cache::lookup(
        dir.path(),
        RepoKind::Dataset,
        "alice/big",
        &sha,
        "data.jsonl"
    )
    .is_none());

    // Under the cap it downloads (chunked, no sizes) and verifies the sha256 ETag.
    let got = reader
        .fetch_dataset("alice/big", &sha, 32 << 20)
        .await
        .unwrap();
    assert_eq!(got.len(), big.len());
}

#[tokio::test]
async fn a_trickling_server_is_cut_off_at_the_download_deadline() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    s.create_repo(RepoKind::Dataset, "alice/slow", false)
        .unwrap();
    let data = rows(4, "slow");
    let sha = s
        .commit(RepoKind::Dataset, "alice/slow", &[("data.jsonl", &data)])
        .unwrap();
    // A byte a second: every read arrives well within the read timeout, the file never does.
    s.set_trickle(Some(Duration::from_secs(1)));
    let cfg = ClientConfig::new(s.url(), None, dir.path(), false)
        .with_retry(RetryPolicy {
            retries: 2,
            base_delay: Duration::from_millis(10),
        })
        .with_download_deadline(Duration::from_secs(3));
    let reader = HubClient::new(cfg).expect("client");
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        reader.fetch_dataset("alice/slow", &sha, 1 << 20),
    )
    .await
    .expect("the deadline ends the download, not the test's timeout");
    let elapsed = started.elapsed();
    let err = result.expect_err("too slow");
    assert!(
        err.to_string().contains("download deadline of 3 s"),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    assert!(
        hub::cache::lookup(
            dir.path(),
            RepoKind::Dataset,
            "alice/slow",
            &sha,
            "data.jsonl"
        )
        .is_none(),
        "nothing half-read is cached"
    );
    // At full speed the same file downloads.
    s.set_trickle(None);
    assert_eq!(
        reader
            .fetch_dataset("alice/slow", &sha, 1 << 20)
            .await
            .unwrap(),
        data
    );
}

#[tokio::test]
async fn retries_on_5xx() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = client(s.url(), Some(ALICE), dir.path());
    let data = rows(2, "r");
    let sha = alice
        .publish_dataset("alice/flaky", &data, false)
        .await
        .unwrap();

    let reader = client(s.url(), None, dir.path().join("r").as_path());
    s.clear_requests();
    s.fail_next(2, 503);
    assert_eq!(
        reader
            .fetch_dataset("alice/flaky", &sha, 1 << 20)
            .await
            .unwrap(),
        data
    );
    let statuses: Vec<u16> = s.requests().iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], &[503, 503, 200], "{statuses:?}");

    // A body cut off mid-transfer is fetched again.
    let long = rows(300, "long");
    let lsha = alice
        .publish_dataset("alice/long", &long, false)
        .await
        .unwrap();
    s.clear_requests();
    s.truncate_next(1, 5000);
    assert_eq!(
        reader
            .fetch_dataset("alice/long", &lsha, 1 << 20)
            .await
            .unwrap(),
        long
    );
    let gets = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/resolve/"))
        .count();
    assert_eq!(gets, 2);
    // Cut every time: an error after the retries, naming the file.
    let reader_b = client(s.url(), None, dir.path().join("rb").as_path());
    s.truncate_next(10, 5000);
    let err = reader_b
        .fetch_dataset("alice/long", &lsha, 1 << 20)
        .await
        .unwrap_err();
    eprintln!("all cut: {err}");
    assert!(
        matches!(&err, HubError::Io(m) if m.contains("alice/long") && m.contains("data.jsonl") && m.contains("3 tries")),
        "{err}"
    );
    s.truncate_next(0, 0);

    // Every answer a 500: an error after 1 + 2 tries, naming the repo.
    let reader = client(s.url(), None, dir.path().join("r2").as_path());
    s.clear_requests();
    s.fail_next(100, 500);
    let err = reader
        .fetch_dataset("alice/flaky", &sha, 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::Io(m) if m.contains("alice/flaky") && m.contains("500")),
        "{err}"
    );
    assert_eq!(s.requests().len(), 3);
    s.fail_next(0, 500);

    // A stalled answer times out and is retried.
    let cfg = ClientConfig::new(s.url(), None, dir.path().join("r3"), false)
        .with_retry(RetryPolicy {
            retries: 2,
            base_delay: Duration::from_millis(10),
        })
        .with_timeouts(Duration::from_secs(2), Duration::from_millis(300));
    let reader = HubClient::new(cfg).unwrap();
    s.delay_next(1, Duration::from_millis(1500));
    let started = std::time::Instant::now();
    assert_eq!(
        reader
            .fetch_dataset("alice/flaky", &sha, 1 << 20)
            .await
            .unwrap(),
        data
    );
    // It gave up on the stalled answer instead of waiting for it.
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn offline_uses_only_the_cache() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = client(s.url(), Some(ALICE), dir.path());
    let data = rows(3, "o");
    let sha = alice
        .publish_dataset("alice/off", &data, false)
        .await
        .unwrap();
    let cache = dir.path().join("cache");
    let online = client(s.url(), None, &cache);
    assert_eq!(
        online
            .fetch_dataset("alice/off", &sha, 1 << 20)
            .await
            .unwrap(),
        data
    );
    let url = s.url().to_string();
    s.stop().await;

    // The server is gone: a cache hit needs no network, online or offline.
    assert_eq!(
        online
            .fetch_dataset("alice/off", &sha, 1 << 20)
            .await
            .unwrap(),
        data
    );
    // The cap applies to cached files too.
    let err = online
        .fetch_dataset("alice/off", &sha, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::TooLarge { .. }));
    let offline = HubClient::new(ClientConfig::new(&url, None, &cache, true)).unwrap();
    assert_eq!(
        offline
            .fetch_dataset("alice/off", &sha, 1 << 20)
            .await
            .unwrap(),
        data
    );
    let err = offline
        .fetch_dataset_file("alice/off", &sha, "other.jsonl", 1 << 20)
        .await
        .unwrap_err();
    match &err {
        HubError::OfflineMissing {
            repo,
            revision,
            file,
            ..
        } => {
            assert_eq!(
                (repo.as_str(), revision.as_str(), file.as_str()),
                ("alice/off", sha.as_str(), "other.jsonl")
            );
        }
        other => panic!("expected OfflineMissing, got {other}"),
    }
    assert!(err.to_string().contains("other.jsonl") && err.to_string().contains("HF_HUB_OFFLINE"));
    let err = offline
        .publish_dataset("alice/off", b"x", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("offline"));
    // Online with the server stopped and a cache miss: a network error after the retries.
    let err = online
        .fetch_dataset_file("alice/off", &sha, "other.jsonl", 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Io(_)), "{err}");
}

#[tokio::test]
async fn model_files_and_eval_set() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    s.create_repo(RepoKind::Model, "alice/tiny", false).unwrap();
    let index = br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#;
    let shard2 = vec![7u8; (1 << 20) + 5];
    let sha = s
        .commit(
            RepoKind::Model,
            "alice/tiny",
            &[
                ("config.json", b"{\"hidden_size\":8}"),
                ("tokenizer.json", b"{}"),
                ("model.safetensors.index.json", index),
                ("model-00001-of-00002.safetensors", b"shard-one"),
                ("model-00002-of-00002.safetensors", &shard2),
            ],
        )
        .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let c = client(s.url(), None, dir.path()).with_progress(Arc::new(
        move |_f: &str, done: u64, _t: Option<u64>| {
            seen2.fetch_max(done, Ordering::SeqCst);
        },
    ));
    let m = c.download_model("alice/tiny").await.unwrap();
    assert_eq!(m.revision, sha);
    assert_eq!(std::fs::read(&m.config).unwrap(), b"{\"hidden_size\":8}");
    assert_eq!(m.weights.len(), 2);
    assert_eq!(std::fs::read(&m.weights[0]).unwrap(), b"shard-one");
    assert_eq!(
        std::fs::metadata(&m.weights[1]).unwrap().len(),
        shard2.len() as u64
    );
    assert!(seen.load(Ordering::SeqCst) >= shard2.len() as u64);
    let folder = dir.path().join("models--alice--tiny");
    assert_eq!(
        std::fs::read_to_string(folder.join("refs/main"))
            .unwrap()
            .trim(),
        sha
    );
    assert!(folder
        .join("snapshots")
        .join(&sha)
        .join("config.json")
        .is_file());

    // Offline: served from the cache through refs/main; a missing file is named.
    let off = HubClient::new(ClientConfig::new(s.url(), None, dir.path(), true)).unwrap();
    let m2 = off.download_model("alice/tiny").await.unwrap();
    assert_eq!(m2, m);
    let err = off
        .download_model_files("alice/tiny", None, &["generation_config.json"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::OfflineMissing { file, .. } if file == "generation_config.json"),
        "{err}"
    );

    // A missing file online.
    let err = c
        .download_model_files("alice/tiny", Some(&sha), &["nope.bin"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::FileNotFound { file, .. } if file == "nope.bin"),
        "{err}"
    );

    // The eval set, pinned.
    s.create_repo(RepoKind::Dataset, "alice/eval", false)
        .unwrap();
    let ev = rows(6, "eval");
    let esha = s
        .commit(RepoKind::Dataset, "alice/eval", &[("data.jsonl", &ev)])
        .unwrap();
    let p = c
        .download_eval_set(&format!("alice/eval@{esha}"), 1 << 20)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), ev);
    let err = c
        .download_eval_set("alice/eval", 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }));
    let err = c
        .download_eval_set("alice/eval@main", 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }));
}
