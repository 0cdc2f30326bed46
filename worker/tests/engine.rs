//! The engine end to end on the tiny model, on CPU: the `worker` CLI trains and evaluates, LoRA
//! on data from the eval distribution beats the base model, and bad inputs give clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use protocol::config::TrainingConfig;
use protocol::dataset::Row;
use worker::{Device, Engine, EngineError, JobOptions};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rows(path: &Path, limit: usize) -> Vec<Row> {
    std::fs::read_to_string(path)
        .expect("readable")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit)
        .map(|l| serde_json::from_str(l).expect("valid row"))
        .collect()
}

fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    worker::write_tiny_model(&model, 7).expect("tiny model");
    model
}

fn fast_config(epochs: usize) -> TrainingConfig {
    TrainingConfig {
        epochs,
        max_seq_len: 256,
        lr: 2e-3,
        warmup_steps: 2,
        lora_rank: 8,
        lora_alpha: 16.0,
        ..TrainingConfig::default()
    }
}

#[test]
fn worker_eval_cli_trains_two_epochs_and_beats_the_base_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let train = repo_root().join("eval_data/demo/on_topic.jsonl");
    let eval = dir.path().join("eval.jsonl");
    let eval_text: Vec<String> = std::fs::read_to_string(repo_root().join("eval_data/data.jsonl"))
        .expect("eval set")
        .lines()
        .take(60)
        .map(String::from)
        .collect();
    std::fs::write(&eval, eval_text.join("\n")).expect("write eval");
    let config = dir.path().join("training.toml");
    let run = |epochs: usize| -> serde_json::Value {
        std::fs::write(
            &config,
            format!(
                "[training]\nepochs = {epochs}\nmax_seq_len = 256\nlr = 2e-3\nwarmup_steps = 2\nlora_rank = 8\nlora_alpha = 16.0\nmax_rows = 64\n"
            ),
        )
        .expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_worker"))
            .args(["eval", "--json", "--model"])
            .arg(&model)
            .arg("--train")
            .arg(&train)
            .arg("--eval")
            .arg(&eval)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("worker runs");
        assert!(
            out.status.success(),
            "worker eval failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
    };
    let base = run(0);
    let tuned = run(2);
    assert_eq!(base["steps"], 0);
    // 64 rows, micro-batch 2, grad-accum 4: 32 micro-batches, 8 steps per epoch, 16 in all.
    assert_eq!(tuned["steps"], 16);
    assert_eq!(tuned["train_losses"].as_array().map(Vec::len), Some(16));
    assert_eq!(tuned["train_rows"], 64);
    assert_eq!(tuned["eval_rows"], 60);
    assert_eq!(tuned["eval_rows_skipped"], 0);
    for key in ["train_tokens", "seconds"] {
        assert!(tuned[key].as_f64().is_some_and(|v| v > 0.0), "{key}");
    }
    let (base_loss, tuned_loss) = (
        base["eval_loss"].as_f64().expect("loss"),
        tuned["eval_loss"].as_f64().expect("loss"),
    );
    assert!(
        tuned_loss < base_loss,
        "tuned {tuned_loss} should be below base {base_loss}"
    );
}

#[test]
fn same_seed_same_loss_and_adapter_round_trips_through_peft_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let engine = Engine::load(&model, &Device::Cpu).expect("loads");
    let train = rows(&repo_root().join("eval_data/demo/on_topic.jsonl"), 16);
    let eval_rows = rows(&repo_root().join("eval_data/data.jsonl"), 20);
    let config = fast_config(1);
    let eval = engine.prepare_eval(&eval_rows, &config).expect("eval set");
    let never = AtomicBool::new(false);
    let saved = dir.path().join("adapter");
    let options = JobOptions {
        save_adapter: Some(saved.clone()),
        ..JobOptions::default()
    };
    let first = engine
        .run_job_with(&train, &eval, &config, &options, &never, &mut |_| {})
        .expect("job");
    let second = engine
        .run_job(&train, &eval, &config, &never, &mut |_| {})
        .expect("job");
    assert_eq!(
        first.eval_loss, second.eval_loss,
        "deterministic on one device"
    );
    assert_eq!(first.train_losses, second.train_losses);
    assert!(saved.join("adapter_model.safetensors").exists());
    let config_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(saved.join("adapter_config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(config_json["peft_type"], "LORA");
    assert_eq!(config_json["r"], 8);
    // Evaluating the saved adapter without training reproduces the trained model's loss.
    let reload = JobOptions {
        init_adapter: Some(saved),
        ..JobOptions::default()
    };
    let eval_only = TrainingConfig {
        epochs: 0,
        ..config
    };
    let reloaded = engine
        .run_job_with(&[], &eval, &eval_only, &reload, &never, &mut |_| {})
        .expect("eval with adapter");
    assert!((reloaded.eval_loss - first.eval_loss).abs() <= 1e-6 * first.eval_loss.abs());
}

#[test]
fn eval_loss_does_not_depend_on_the_eval_batch_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let engine = Engine::load(&model, &Device::Cpu).expect("loads");
    let eval_rows = rows(&repo_root().join("eval_data/data.jsonl"), 24);
    let config = fast_config(0);
    let eval = engine.prepare_eval(&eval_rows, &config).expect("eval set");
    let never = AtomicBool::new(false);
    let losses: Vec<f64> = [1, 5, 24]
        .into_iter()
        .map(|rows| {
            let options = JobOptions {
                eval_batch_rows: Some(rows),
                ..JobOptions::default()
            };
            engine
                .run_job_with(&[], &eval, &config, &options, &never, &mut |_| {})
                .expect("eval")
                .eval_loss
        })
        .collect();
    for loss in &losses[1..] {
        assert!((loss - losses[0]).abs() <= 1e-5 * losses[0], "{losses:?}");
    }
}

#[test]
fn cancelled_job_stops_with_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let engine = Engine::load(&model, &Device::Cpu).expect("loads");
    let train = rows(&repo_root().join("eval_data/demo/on_topic.jsonl"), 8);
    let config = fast_config(1);
    let eval = engine.prepare_eval(&train, &config).expect("eval set");
    let err = engine
        .run_job(&train, &eval, &config, &AtomicBool::new(true), &mut |_| {})
        .expect_err("cancelled");
    assert!(matches!(err, EngineError::Cancelled));
}

fn load_err(dir: &Path) -> String {
    match Engine::load(dir, &Device::Cpu) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_checkpoints_name_the_tensor_or_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let weights = model.join("model.safetensors");
    let original = std::fs::read(&weights).expect("weights");

    // A tensor missing.
    let bytes = std::fs::read(&weights).expect("weights");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let keep: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "model.layers.1.mlp.up_proj.weight")
        .collect();
    std::fs::write(
        &weights,
        safetensors::serialize(keep, None).expect("serialize"),
    )
    .expect("write");
    let err = load_err(&model);
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("missing"),
        "{err}"
    );

    // A shape that does not fit config.json.
    std::fs::write(&weights, &original).expect("restore");
    let config_path = model.join("config.json");
    let config_text = std::fs::read_to_string(&config_path).expect("config");
    let mut config: serde_json::Value = serde_json::from_str(&config_text).expect("json");
    config["intermediate_size"] = serde_json::json!(96);
    std::fs::write(&config_path, config.to_string()).expect("write");
    let err = load_err(&model);
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("shape"),
        "{err}"
    );
    std::fs::write(&config_path, &config_text).expect("restore");

    // Not a safetensors file at all.
    std::fs::write(&weights, b"definitely not safetensors").expect("write");
    let err = load_err(&model);
    assert!(err.contains("model.safetensors"), "{err}");

    // An unsupported architecture.
    std::fs::write(&weights, &original).expect("restore");
    std::fs::write(&config_path, config_text.replace("\"silu\"", "\"gelu\"")).expect("write");
    let err = load_err(&model);
    assert!(err.contains("config.json") && err.contains("gelu"), "{err}");
}

#[test]
fn tokenizer_without_chatml_tokens_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let path = model.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).expect("tokenizer");
    std::fs::write(&path, text.replace("<|im_end|>", "<|im_stop|>")).expect("write");
    let err = load_err(&model);
    assert!(
        err.contains("tokenizer.json") && err.contains("<|im_end|>"),
        "{err}"
    );
}

#[test]
fn malformed_training_row_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let train = dir.path().join("train.jsonl");
    std::fs::write(
        &train,
        "{\"conversations\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n\
         {\"conversations\":[{\"role\":\"assistant\",\"content\":\"a\"}]}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--train")
        .arg(&train)
        .arg("--eval")
        .arg(&train)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("train.jsonl") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
