//! Profiles and the production guard through the real `coordinator` binary: `init` writes a
//! starting config from the production profile and names what to fill in; `check` passes it;
//! the shipped devnet `cluster.toml` pointed at finney is refused with one line per key, before
//! any connection, and `--allow-demo-settings` does not lift that on finney.

use std::path::Path;
use std::process::Output;

mod common;

use common::{coordinator, repo};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_writes_a_production_config_that_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("validator.toml");
    let out_str = out_path.to_str().unwrap();
    let out = coordinator(Path::new("unused.toml"))
        .args(["init", "--network", "finney", "--out", out_str])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for key in ["set = ", "wallet_name = ", "wallet_hotkey = ", "device = "] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("validator.toml:") && l.contains(key)),
            "{key} not listed to fill in: {stdout}"
        );
    }
    assert!(
        !stdout.contains("netuid = 96"),
        "finney's netuid is known: {stdout}"
    );
    let written = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        written.contains("mode = \"finney\"") && written.contains("Qwen/Qwen2.5-1.5B-Instruct")
    );

    // It is not overwritten without --force.
    let again = coordinator(Path::new("unused.toml"))
        .args(["init", "--network", "finney", "--out", out_str])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(text(&again).1.contains("refusing to overwrite"));

    // `check` accepts it as it is (nothing is downloaded or connected to).
    let out = coordinator(&out_path).arg("check").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
    assert!(
        stdout.contains("valid for finney") && stdout.contains("netuid 96"),
        "{stdout}"
    );

    // On test, the netuid is the operator's to fill in.
    let test_path = dir.path().join("test.toml");
    let out = coordinator(Path::new("unused.toml"))
        .args([
            "init",
            "--network",
            "test",
            "--out",
            test_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("netuid = 96"), "{stdout}");
    assert!(std::fs::read_to_string(&test_path)
        .unwrap()
        .contains("mode = \"test\""));
}

#[test]
fn the_devnet_demo_config_is_refused_on_finney_one_line_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster.toml");
    std::fs::copy(repo().join("cluster.toml"), &config).unwrap();

    // On the devnet it is fine.
    let out = coordinator(&config).arg("check").output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);

    let out = coordinator(&config)
        .args(["check", "--subtensor.network", "finney", "--netuid", "96"])
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, key) in lines
        .iter()
        .zip(["model.source", "eval.set", "workers[0].device"])
    {
        assert!(
            line.contains("refusing to set weights on finney")
                && line.contains(&format!(": {key}: ")),
            "{line}"
        );
    }

    // `run` refuses the same way before connecting anywhere, and the override is for testnets.
    for extra in [&[][..], &["--allow-demo-settings"][..]] {
        let out = coordinator(&config)
            .args([
                "run",
                "--epochs",
                "1",
                "--subtensor.network",
                "finney",
                "--netuid",
                "96",
            ])
            .args(extra)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert_eq!(
            stderr.matches("refusing to set weights on finney").count(),
            3,
            "{stderr}"
        );
        assert!(!stderr.contains("connect"), "{stderr}");
        assert_eq!(
            stderr.contains("--allow-demo-settings is for test and local networks only"),
            !extra.is_empty(),
            "{stderr}"
        );
    }
    assert!(!dir.path().join("state").exists(), "nothing was started");
}
