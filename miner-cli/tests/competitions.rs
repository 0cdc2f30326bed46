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
        training = { epochs = 1 }\n"
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
                    "2: eval set org/evals@0123456789abcdef0123456789abcdef01234567, rows used 30, training overrides: epochs = 1"
                ),
            "{source}: {listing}"
        );
    }
}
