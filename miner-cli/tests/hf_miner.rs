//! miner-cli with the devnet chain and a Hugging Face hub (the in-process local Hub server):
//! submit uploads a private repo and commits, then makes it public by default (`--keep-private`
//! keeps it private, with a warning); the token comes from `.env` or `HUGGINGFACE_TOKEN` and is
//! never printed; the validator fetches the public repo through the HF client and scores it;
//! status, fetch-all (resumable) and overlap work against it.

mod common;

use common::{config, demo, epoch, miner, ok};
use hub::server::HubServer;
use hub::RepoKind;

const ALICE: &str = "hf_alice_token";
const BOB: &str = "hf_bob_token";

#[test]
fn hugging_face_submit_score_status_fetch_all_and_overlap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(HubServer::start()).expect("hub server");
    server.add_user("alice", ALICE);
    server.add_user("bob", BOB);
    let cache = dir.path().join("hf-cache");
    let config = config(
        dir.path(),
        &format!(
            "[hub]\nkind = \"huggingface\"\nendpoint = \"{}\"\ncache_dir = \"{}\"\nparallel_downloads = 2\n",
            server.url(),
            cache.display()
        ),
    );
    assert_eq!(epoch(&config).trained, 0);
    for name in ["alice", "bob"] {
        let out = ok(&config, &["--wallet.name", name, "register"], None, &[]);
        assert!(out.contains("registered as uid"), "{out}");
    }

    // Alice: the token from .env in the directory she runs in; no visibility flag, and the repo
    // is public once the commitment landed (the Python miner's `--competition_id` spelling).
    let alice_dir = dir.path().join("alice");
    std::fs::create_dir_all(&alice_dir).expect("mkdir");
    std::fs::write(alice_dir.join(".env"), format!("HF_TOKEN={ALICE}\n")).expect(".env");
    let on_topic = demo("on_topic");
    let out = ok(
        &config,
        &[
            "--wallet.name",
            "alice",
            "submit",
            "--dataset_path",
            &on_topic,
            "--hf_repo_id",
            "alice/set",
            "--competition_id",
            "1",
        ],
        Some(&alice_dir),
        &[],
    );
    assert!(
        out.contains("uploaded data.jsonl")
            && out.contains("committed alice/set:1:")
            && out.contains("alice/set is now public"),
        "{out}"
    );
    assert!(!out.contains(ALICE), "the token is never printed: {out}");
    assert_eq!(
        server.is_private(RepoKind::Dataset, "alice/set"),
        Some(false)
    );
    let sha = server
        .branch(RepoKind::Dataset, "alice/set", "main")
        .expect("main");
    assert!(out.contains(&format!("alice/set:1:{sha}")), "{out}");

    // Bob: HUGGINGFACE_TOKEN (the miner guides' name) in the environment, and --keep-private:
    // the repo stays private, with a warning that validators cannot read it.
    let bob_out = miner(
        &config,
        &[
            "--wallet.name",
            "bob",
            "submit",
            "--dataset_path",
            &demo("off_topic"),
            "--hf_repo_id",
            "bob/set",
            "--keep-private",
        ],
        None,
        &[("HUGGINGFACE_TOKEN", BOB)],
    );
    let out = String::from_utf8_lossy(&bob_out.stdout);
    let warning = String::from_utf8_lossy(&bob_out.stderr);
    assert!(bob_out.status.success(), "{out}{warning}");
    assert!(
        out.contains("committed bob/set:1:") && !out.contains("now public"),
        "{out}"
    );
    assert!(
        warning.contains("warning: --keep-private")
            && warning.contains("validators cannot read it"),
        "{warning}"
    );
    assert!(
        !out.contains(BOB) && !warning.contains(BOB),
        "token printed"
    );
    assert_eq!(server.is_private(RepoKind::Dataset, "bob/set"), Some(true));

    // A bad token names the repo and fails before anything is committed.
    let bad = miner(
        &config,
        &[
            "--wallet.name",
            "bob",
            "submit",
            "--dataset_path",
            &demo("off_topic"),
            "--hf_repo_id",
            "bob/other",
        ],
        None,
        &[("HF_TOKEN", "hf_wrong")],
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("bob/other") && !stderr.contains("hf_wrong"),
        "{stderr}"
    );

    // The validator (no token) fetches Alice's public repo through the HF client and scores it;
    // Bob's private repo is a fetch failure with a reason.
    let report = epoch(&config);
    assert_eq!(report.trained, 1, "{report}");
    let bob_line = report
        .miners
        .iter()
        .find(|m| m.reason.contains("bob/set"))
        .unwrap_or_else(|| panic!("bob's fetch failure: {report}"));
    assert!(bob_line.eval_loss.is_none());

    let status = ok(&config, &["--wallet.name", "alice", "status"], None, &[]);
    assert!(
        status.contains(&format!("commitment alice/set:1:{sha}"))
            && status.contains("win rate 1.000"),
        "{status}"
    );

    // fetch-all as Alice: hers downloads, Bob's private one fails with its reason; a second run
    // skips what is there.
    let out_dir = dir.path().join("datasets");
    let out_str = out_dir.to_str().expect("utf8");
    let fetched = ok(
        &config,
        &["--wallet.name", "alice", "fetch-all", "--out", out_str],
        Some(&alice_dir),
        &[],
    );
    assert!(
        fetched.contains("downloaded 1, skipped 0")
            && fetched.contains("failed 1")
            && fetched.contains("failed: uid")
            && fetched.contains("bob/set"),
        "{fetched}"
    );
    assert!(out_dir.join(format!("alice__set@{sha}.jsonl")).exists());
    let again = ok(
        &config,
        &["--wallet.name", "alice", "fetch-all", "--out", out_str],
        Some(&alice_dir),
        &[],
    );
    assert!(again.contains("downloaded 0, skipped 1"), "{again}");

    // A newcomer whose file copies Alice's rows would be scored a duplicate of Alice's uid.
    let alice_uid = report
        .miners
        .iter()
        .find(|m| m.eval_loss.is_some())
        .expect("alice scored")
        .uid;
    // 30 of Alice's rows (reordered) and 10 others: 75 % of the smaller set is shared.
    let alice_rows = std::fs::read_to_string(&on_topic).expect("demo");
    let other_rows = std::fs::read_to_string(demo("off_topic")).expect("demo");
    let mut copied: Vec<&str> = alice_rows.lines().take(30).collect();
    copied.reverse();
    copied.extend(other_rows.lines().take(10));
    let copy = dir.path().join("copy.jsonl");
    std::fs::write(&copy, copied.join("\n")).expect("write");
    let overlap = ok(
        &config,
        &[
            "--wallet.name",
            "carol",
            "overlap",
            copy.to_str().expect("utf8"),
            "--dir",
            out_str,
        ],
        None,
        &[],
    );
    assert!(
        overlap.contains(&format!("DUPLICATE of uid {alice_uid}")) && overlap.contains("alice/set"),
        "{overlap}"
    );
    // Alice's own file is hers: compared as her existing commitment, not a duplicate.
    let own = ok(
        &config,
        &[
            "--wallet.name",
            "alice",
            "overlap",
            &on_topic,
            "--dir",
            out_str,
        ],
        None,
        &[],
    );
    assert!(
        own.contains("already committed") && own.contains("not a duplicate"),
        "{own}"
    );
    let off = ok(
        &config,
        &[
            "--wallet.name",
            "carol",
            "overlap",
            &demo("off_topic"),
            "--dir",
            out_str,
        ],
        None,
        &[],
    );
    assert!(off.contains("not a duplicate"), "{off}");
}
