//! Competitions through the real binaries on the devnet: a commitment naming a competition the
//! validator's `[[competitions]]` table does not list gets weight 0 with "unknown competition X";
//! a competition's training overrides are part of the loss cache key; `miner-cli
//! --list-competitions` reads the table from the config or from a published file (a path or an
//! http:// URL served on 127.0.0.1); `submit` refuses an unknown id before uploading.

mod common;

use std::io::{Read, Write};

use common::{config, demo, epoch, miner, ok};

/// Serves `body` once over HTTP on 127.0.0.1; the URL of `/competitions.toml`.
fn serve_once(body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/competitions.toml")
}

#[test]
fn unknown_competitions_get_weight_zero_and_overrides_are_in_the_cache_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Without a table every id is scored: alice commits under 1, bob under 7 (with a warning).
    let open = config(dir.path(), "");
    assert_eq!(epoch(&open).trained, 0);
    for name in ["alice", "bob"] {
        ok(&open, &["--wallet.name", name, "register"], None, &[]);
    }
    ok(
        &open,
        &[
            "--wallet.name",
            "alice",
            "submit",
            "--dataset_path",
            &demo("on_topic"),
            "--hf_repo_id",
            "alice/set",
        ],
        None,
        &[],
    );
    let bob = miner(
        &open,
        &[
            "--wallet.name",
            "bob",
            "submit",
            "--dataset_path",
            &demo("off_topic"),
            "--hf_repo_id",
            "bob/set",
            "--competition_id",
            "7",
        ],
        None,
        &[],
    );
    assert!(bob.status.success(), "{bob:?}");
    assert!(String::from_utf8_lossy(&bob.stdout).contains("committed bob/set:7:"));

    // The validator's config lists competition 1 only: bob's commitment gets weight 0.
    let listed = config(dir.path(), "[[competitions]]\nid = \"1\"\n");
    let report = epoch(&listed);
    assert_eq!(report.trained, 1, "{report}");
    let line = |report: &protocol::scoring::EpochReport, reason: &str| {
        report
            .miners
            .iter()
            .find(|m| m.reason == reason)
            .cloned()
            .unwrap_or_else(|| panic!("no line with reason {reason:?}: {report}"))
    };
    let bob_line = line(&report, "unknown competition 7");
    assert_eq!(bob_line.weight_u16, 0);
    assert!(bob_line.eval_loss.is_none());
    let alice_line = line(&report, "");
    assert!(alice_line.eval_loss.is_some() && alice_line.weight_u16 > 0);

    let listing = ok(&listed, &["--list_competitions"], None, &[]);
    assert!(
        listing.contains("validator config knows: 1 (")
            && listing.contains("any other id gets weight 0")
            && listing.contains("competition 7: 1 commitment(s)"),
        "{listing}"
    );

    // submit refuses an id the config does not list, before uploading or committing.
    let refused = miner(
        &listed,
        &[
            "--wallet.name",
            "bob",
            "submit",
            "--dataset_path",
            &demo("off_topic"),
            "--hf_repo_id",
            "bob/two",
            "--competition",
            "8",
        ],
        None,
        &[],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("unknown competition 8")
            && stderr.contains("nothing was uploaded"),
        "{stderr}"
    );
    assert!(dir.path().join("state/hub/bob/set").exists());
    assert!(!dir.path().join("state/hub/bob/two").exists());

    // An unchanged table reuses the cached loss; a training override of competition 1 is a new
    // cache key, so alice is trained again.
    assert_eq!(epoch(&listed).trained, 0);
    let overridden = config(
        dir.path(),
        "[[competitions]]\nid = \"1\"\ntraining = { seed = 43 }\n",
    );
    let report = epoch(&overridden);
    assert_eq!(report.trained, 1, "{report}");

    // A published competitions file, from a path and from a URL.
    let published = "[[competitions]]\nid = \"1\"\n\n[[competitions]]\nid = \"2\"\n\
        eval_set = \"org/evals@0123456789abcdef0123456789abcdef01234567\"\nmax_rows = 30\n\
        training = { epochs = 1 }\nreward_share = 2.5\n"
        .to_string();
    let file = dir.path().join("published.toml");
    std::fs::write(&file, &published).expect("write");
    let url = serve_once(published);
    for source in [file.to_str().expect("utf8").to_string(), url] {
        let listing = ok(
            &open,
            &["--list-competitions", "--competitions-file", &source],
            None,
            &[],
        );
        assert!(
            listing.contains("validator config knows: 1, 2")
                && listing.contains(
                    "2: eval set org/evals@0123456789abcdef0123456789abcdef01234567, rows used 30, training overrides: epochs = 1, reward share 2.5"
                ),
            "{source}: {listing}"
        );
    }
}

/// The `eval loss X.XXXXX` figure `miner-cli eval` prints.
fn printed_loss(out: &str) -> f64 {
    out.split("eval loss ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no eval loss in {out}"))
}

#[test]
fn each_competition_is_scored_on_its_own_eval_set_and_paid_its_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Competition 2's eval set: the last 40 rows of the demo set, so another file and hash.
    let demo_eval = std::fs::read_to_string(common::repo().join("eval_data/data.jsonl"))
        .expect("demo eval set");
    let lines: Vec<&str> = demo_eval.lines().collect();
    let second = dir.path().join("eval-two.jsonl");
    std::fs::write(&second, lines[lines.len() - 40..].join("\n") + "\n").expect("write");
    let table = |share: f64, set: &std::path::Path| {
        format!(
            "[[competitions]]\nid = \"1\"\n\n[[competitions]]\nid = \"2\"\neval_set = \"{}\"\n\
             reward_share = {share:.1}\n",
            set.display()
        )
    };
    let two = config(dir.path(), &table(3.0, &second));
    assert_eq!(epoch(&two).trained, 0);
    for name in ["alice", "bob"] {
        ok(&two, &["--wallet.name", name, "register"], None, &[]);
    }
    for (name, data, competition) in [("alice", "on_topic", "1"), ("bob", "off_topic", "2")] {
        let repo = format!("{name}/set");
        ok(
            &two,
            &[
                "--wallet.name",
                name,
                "submit",
                "--dataset_path",
                &demo(data),
                "--hf_repo_id",
                &repo,
                "--competition",
                competition,
            ],
            None,
            &[],
        );
    }
    let report = epoch(&two);
    assert_eq!(report.trained, 2, "{report}");
    let line = |competition: &str| {
        report
            .miners
            .iter()
            .find(|m| m.competition.as_deref() == Some(competition))
            .cloned()
            .unwrap_or_else(|| panic!("no miner of competition {competition}: {report}"))
    };
    let (alice, bob) = (line("1"), line("2"));
    // Each is alone in its competition, so each wins all it can; the emission is split 1 : 3.
    assert_eq!(
        (alice.win_rate, bob.win_rate),
        (Some(1.0), Some(1.0)),
        "{report}"
    );
    assert!(
        (alice.epoch_weight - 0.25).abs() < 1e-12 && (bob.epoch_weight - 0.75).abs() < 1e-12,
        "{report}"
    );
    assert_eq!(
        (alice.weight_u16, bob.weight_u16),
        (21845, 65535),
        "{report}"
    );
    let shown = report.to_string();
    assert!(shown.contains("competition"), "{shown}");
    // `coordinator score` recomputes the same split from the report's lines.
    let input: Vec<serde_json::Value> = report
        .miners
        .iter()
        .map(|m| {
            serde_json::json!({
                "uid": m.uid,
                "block": m.commit_block.unwrap_or(0),
                "loss": m.eval_loss,
                "competition": m.competition,
            })
        })
        .collect();
    let mut score = std::process::Command::new(common::coordinator_bin())
        .arg("--config")
        .arg(&two)
        .arg("score")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("coordinator score");
    std::io::Write::write_all(
        score.stdin.as_mut().expect("stdin"),
        serde_json::to_string(&input).expect("json").as_bytes(),
    )
    .expect("write stdin");
    let out = score.wait_with_output().expect("score");
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).expect("score output");
    for m in audit["miners"].as_array().expect("miners") {
        let line = report
            .miners
            .iter()
            .find(|l| Some(u64::from(l.uid)) == m["uid"].as_u64())
            .expect("same uid");
        assert_eq!(
            m["u16"].as_u64(),
            Some(u64::from(line.weight_u16)),
            "{audit}"
        );
    }

    // Bob's loss is the loss on competition 2's set: miner-cli scores his file the same way,
    // and on competition 1's set (the demo eval set) it is another number.
    let bob_loss = bob.eval_loss.expect("bob scored");
    let on_two = ok(
        &two,
        &["eval", &demo("off_topic"), "--competition_id", "2"],
        None,
        &[],
    );
    assert!(
        on_two.contains("(40 eval rows") || on_two.contains(" 40 eval rows"),
        "{on_two}"
    );
    assert!(
        (printed_loss(&on_two) - bob_loss).abs() < 1e-5,
        "validator {bob_loss:.5}: {on_two}"
    );
    let on_one = ok(
        &two,
        &["eval", &demo("off_topic"), "--competition", "1"],
        None,
        &[],
    );
    assert!(
        (printed_loss(&on_one) - bob_loss).abs() > 1e-4,
        "the same loss on another eval set: {on_one}"
    );
    // validate measures the overlap with each eval set, naming the competitions it serves.
    let summary = ok(&two, &["validate", &demo("off_topic")], None, &[]);
    assert!(
        summary.contains("eval-two.jsonl) (competition 2): ")
            && summary.contains("data.jsonl) (competition 1): "),
        "{summary}"
    );
    let unknown = miner(
        &two,
        &["eval", &demo("off_topic"), "--competition", "9"],
        None,
        &[],
    );
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success()
            && stderr.contains("unknown competition 9")
            && stderr.contains("lists 1, 2"),
        "{stderr}"
    );

    // Competition 2's eval set is part of its loss cache key: another set retrains bob only.
    let third = dir.path().join("eval-three.jsonl");
    std::fs::write(&third, lines[..30].join("\n") + "\n").expect("write");
    let three = config(dir.path(), &table(3.0, &third));
    let report = epoch(&three);
    assert_eq!(report.trained, 1, "{report}");
    assert!(
        report
            .miners
            .iter()
            .any(|m| m.competition.as_deref() == Some("1") && m.cached),
        "{report}"
    );
}
