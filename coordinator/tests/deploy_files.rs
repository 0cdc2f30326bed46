//! The service files shipped under `deploy/` start `coordinator` with arguments the real parser
//! accepts: the systemd unit's `ExecStart`, the pm2 file's `args` and the pm2 one-liner are run
//! through the binary with `--help` appended (clap refuses an unknown flag before it prints
//! help).

use std::process::Command;

fn deploy(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the binary with `args` and `--help`; panics with stderr unless clap accepts them.
fn accepted(source: &str, args: &[String]) {
    assert!(
        args.iter().any(|a| a == "run"),
        "{source}: no `run` in {args:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{source}: {args:?} refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The words after `/usr/local/bin/coordinator` (and pm2's `--`) on a command line.
fn after_binary(line: &str) -> Vec<String> {
    let rest = line
        .split_once("/usr/local/bin/coordinator")
        .expect("the binary")
        .1;
    let rest = rest.split_once(" -- ").map_or(rest, |(_, r)| r);
    rest.split_whitespace().map(String::from).collect()
}

#[test]
fn the_systemd_unit_and_the_pm2_files_start_the_coordinator_with_valid_flags() {
    let unit = deploy("murmuration-validator.service").replace("\\\n", " ");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    accepted("ExecStart", &after_binary(exec));
    assert!(unit.contains("KillSignal=SIGTERM"), "{unit}");

    let pm2 = deploy("pm2.config.js");
    let line = pm2
        .lines()
        .find(|l| l.contains("pm2 start /usr/local/bin/coordinator"))
        .expect("the pm2 one-liner");
    accepted("pm2 one-liner", &after_binary(line));
    let args = pm2.split_once("args: [").expect("args").1;
    let args = args.split_once(']').expect("args end").0;
    let args: Vec<String> = args
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    accepted("pm2 args", &args);
}
