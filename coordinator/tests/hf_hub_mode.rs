//! The `coordinator` binary with `[hub] kind = "huggingface"`: the demo miners' datasets, the base
//! model and the eval set all go through the Hugging Face client (hf-hub 1.x) against the `hub`
//! crate's local Hub server on 127.0.0.1, then a second run works from the cache alone with
//! `HF_HUB_OFFLINE=1` and the server gone.

use std::path::{Path, PathBuf};

use hub::server::HubServer;
use hub::RepoKind;
use protocol::scoring::EpochReport;

mod common;

use common::{coordinator, demo_dir, QUICK_TRAINING};

fn write_config(dir: &Path, endpoint: &str, model: &str, eval: &str) -> PathBuf {
    let text = format!(
        r#"
[coordinator]
state_dir = "state"
[hub]
kind = "huggingface"
endpoint = "{endpoint}"
cache_dir = "{cache}"
[model]
source = "{model}"
[eval]
set = "{eval}"
[devnet]
tempo = 10
weights_rate_limit = 10
demo_dir = "{demo}"
{QUICK_TRAINING}"#,
        cache = dir.join("hf-cache").display(),
        demo = demo_dir().display(),
    );
    common::write_config(dir, &text)
}

/// Runs `coordinator run --epochs 1 --json` with a clean Hugging Face environment.
fn run_epoch(dir: &Path, config: &Path, token: &str, offline: bool) -> EpochReport {
    let mut cmd = coordinator(config);
    cmd.args(["run", "--epochs", "1", "--json"])
        .env("HF_HOME", dir.join("hf-home"))
        .env("HF_TOKEN", token)
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_HUB_CACHE");
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    } else {
        cmd.env_remove("HF_HUB_OFFLINE");
    }
    let out = cmd.output().expect("coordinator runs");
    common::reports(&out).into_iter().next().expect("a report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_epoch_with_datasets_model_and_eval_set_on_a_hugging_face_hub() {
    let dir = tempfile::tempdir().unwrap();
    let server = HubServer::start().await.unwrap();
    // The demo miners publish under the `demo` namespace with this user's token.
    server.add_user("demo", "hf_demo_token");

    let model_dir = dir.path().join("tiny-model");
    worker::write_tiny_model(&model_dir, 7).unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&model_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((name, std::fs::read(&path).unwrap()));
    }
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    server
        .create_repo(RepoKind::Model, "acme/tiny-qwen", false)
        .unwrap();
    let model_sha = server
        .commit(RepoKind::Model, "acme/tiny-qwen", &files)
        .unwrap();
    let eval = std::fs::read(common::eval_set()).unwrap();
    server
        .create_repo(RepoKind::Dataset, "acme/eval", false)
        .unwrap();
    let eval_sha = server
        .commit(RepoKind::Dataset, "acme/eval", &[("data.jsonl", &eval)])
        .unwrap();

    let config = write_config(
        dir.path(),
        server.url(),
        &format!("acme/tiny-qwen@{model_sha}"),
        &format!("acme/eval@{eval_sha}"),
    );
    let d = dir.path().to_path_buf();
    let c = config.clone();
    let report = tokio::task::spawn_blocking(move || run_epoch(&d, &c, "hf_demo_token", false))
        .await
        .unwrap();

    let line = |uid: u16| report.miners.iter().find(|m| m.uid == uid).unwrap();
    assert!(
        line(1).eval_loss.is_some_and(|l| l.is_finite()),
        "{report:?}"
    );
    assert!(
        line(2).eval_loss.is_some_and(|l| l.is_finite()),
        "{report:?}"
    );
    assert!(
        line(1).eval_loss < line(2).eval_loss,
        "on-topic beats off-topic"
    );
    assert!(line(3).reason.contains("line 7"), "{:?}", line(3));
    assert_eq!(line(5).reason, "duplicate of uid 1");
    assert!(report.weights_block.is_some());
    // Published private, fetched with the token, cached in the Python layout.
    assert_eq!(
        server.is_private(RepoKind::Dataset, "demo/on-topic"),
        Some(true)
    );
    let cache = dir.path().join("hf-cache");
    assert!(cache
        .join(format!(
            "models--acme--tiny-qwen/snapshots/{model_sha}/config.json"
        ))
        .exists());
    assert!(cache
        .join(format!(
            "datasets--acme--eval/snapshots/{eval_sha}/data.jsonl"
        ))
        .exists());
    assert!(cache.join("datasets--demo--on-topic/snapshots").is_dir());

    // Server gone, offline: model, eval set and datasets all come from the cache.
    server.stop().await;
    let d = dir.path().to_path_buf();
    let again = tokio::task::spawn_blocking(move || run_epoch(&d, &config, "hf_demo_token", true))
        .await
        .unwrap();
    let line2 = again.miners.iter().find(|m| m.uid == 1).unwrap();
    assert_eq!(
        line2.eval_loss,
        line(1).eval_loss,
        "same loss, from the cache"
    );
    assert!(line2.cached);
}
