//! Parity with PyTorch + transformers + PEFT (fixtures written by scripts/parity_reference.py):
//! logits and base eval loss within 1e-4 relative, per-step train losses and the final eval loss
//! within 1e-3 relative, on a tiny random Qwen2 with a non-zero PEFT adapter.
//!
//! These numbers break if RoPE, the causal mask, the tied head, GQA, the norms, LoRA scaling, the
//! loss mask, gradient accumulation, clipping, AdamW or the LR schedule is wrong.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::tensor::{Int, Tensor, TensorData};
use protocol::config::TrainingConfig;
use serde_json::Value;
use worker::chat::Example;
use worker::checkpoint::load_model;
use worker::eval::{eval_loss, EvalBatching, EvalSet};
use worker::lora::{Adapter, LoraContext};
use worker::model::Qwen2;
use worker::peft::{load_adapter, tensor_values};
use worker::train::train;
use worker::CpuBackend as B;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference is JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    fn walk(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            other => out.push(other.as_f64().expect("number")),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn examples(v: &Value) -> Vec<Example> {
    v.as_array()
        .expect("examples")
        .iter()
        .map(|e| Example {
            ids: serde_json::from_value(e["input_ids"].clone()).expect("ids"),
            mask: serde_json::from_value(e["loss_mask"].clone()).expect("mask"),
        })
        .collect()
}

fn model(dir: &Path) -> Qwen2<B> {
    load_model::<B>(dir, &Default::default())
        .expect("model loads")
        .model
}

fn adapter(name: &str, model: &Qwen2<B>) -> Adapter<B> {
    load_adapter::<B>(&fixtures().join(name), &model.config, &Default::default())
        .expect("adapter loads")
}

/// Eval batches of `n` rows.
fn rows(n: usize) -> EvalBatching {
    EvalBatching {
        rows: n,
        ..EvalBatching::default()
    }
}

fn assert_rel(got: f64, want: f64, rel: f64, what: &str) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{what}: got {got}, want {want} (relative error {:.3e} > {rel:e})",
        (got - want).abs() / want.abs()
    );
}

/// Max |got − want| within `rel` × the largest |want| of the tensor.
fn assert_close_tensor(got: &[f64], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= rel * scale,
        "{what}: max abs diff {worst:.3e} > {rel:e} × {scale:.3}"
    );
}

fn logits(model: &Qwen2<B>, adapter: Option<&Adapter<B>>, ids: &[i64]) -> Vec<f64> {
    let input = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.to_vec(), [1, ids.len()]),
        &Default::default(),
    );
    let context = adapter.map(|a| LoraContext::new(a, None));
    tensor_values(model.forward(input, context.as_ref()))
        .into_iter()
        .map(f64::from)
        .collect()
}

fn training_config(reference: &Value, max_grad_norm: f64) -> TrainingConfig {
    let c = &reference["config"];
    TrainingConfig {
        micro_batch: c["micro_batch"].as_u64().expect("micro_batch") as usize,
        grad_accum: c["grad_accum"].as_u64().expect("grad_accum") as usize,
        epochs: c["epochs"].as_u64().expect("epochs") as usize,
        lr: c["lr"].as_f64().expect("lr"),
        warmup_steps: c["warmup_steps"].as_u64().expect("warmup") as usize,
        weight_decay: c["weight_decay"].as_f64().expect("wd"),
        max_grad_norm,
        lora_dropout: 0.0,
        shuffle: false,
        max_seq_len: 4096,
        ..TrainingConfig::default()
    }
}

#[test]
fn logits_match_transformers_with_and_without_the_adapter() {
    let r = reference();
    let model = model(&fixtures());
    let adapter = adapter("adapter_init", &model);
    let ids: Vec<i64> = serde_json::from_value(r["logits_ids"].clone()).expect("ids");
    assert_close_tensor(
        &logits(&model, None, &ids),
        &floats(&r["logits_base"]),
        1e-4,
        "base logits",
    );
    assert_close_tensor(
        &logits(&model, Some(&adapter), &ids),
        &floats(&r["logits"]),
        1e-4,
        "adapter logits",
    );
}

#[test]
fn bf16_checkpoint_loads_and_gives_close_logits() {
    let r = reference();
    let model = model(&fixtures().join("model_bf16"));
    let ids: Vec<i64> = serde_json::from_value(r["logits_ids"].clone()).expect("ids");
    // bf16 keeps 8 bits of mantissa: the weights move by up to 2^-9 relative.
    assert_close_tensor(
        &logits(&model, None, &ids),
        &floats(&r["logits_base"]),
        5e-2,
        "bf16 logits",
    );
}

#[test]
fn eval_losses_match_the_reference() {
    let r = reference();
    let model = model(&fixtures());
    let set = EvalSet::from_examples(examples(&r["examples_eval"]), 0);
    assert_eq!(set.rows() as u64, r["eval_rows"].as_u64().expect("rows"));
    assert_eq!(
        set.skipped() as u64,
        r["eval_rows_skipped"].as_u64().expect("skipped")
    );
    let base = eval_loss(&model, None, &set, rows(2)).expect("eval");
    assert_rel(
        base,
        r["base_eval_loss"].as_f64().expect("base"),
        1e-4,
        "base eval loss",
    );
    let init = eval_loss(
        &model,
        Some(&adapter("adapter_init", &model)),
        &set,
        rows(3),
    )
    .expect("eval");
    assert_rel(
        init,
        r["init_eval_loss"].as_f64().expect("init"),
        1e-4,
        "eval loss with the initial adapter",
    );
}

fn check_training(max_grad_norm: f64, losses_key: &str, final_key: &str) {
    let r = reference();
    let model = model(&fixtures());
    let config = training_config(&r, max_grad_norm);
    let train_set = examples(&r["examples_train"]);
    let eval_set = EvalSet::from_examples(examples(&r["examples_eval"]), 0);
    let (trained, stats) = train(
        &model,
        adapter("adapter_init", &model),
        &train_set,
        &config,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("trains");
    let want = floats(&r[losses_key]);
    assert_eq!(stats.losses.len(), want.len(), "{losses_key}: steps");
    for (step, (got, want)) in stats.losses.iter().zip(&want).enumerate() {
        assert_rel(*got, *want, 1e-3, &format!("{losses_key}[{step}]"));
    }
    if losses_key == "train_losses" {
        for (step, (got, want)) in stats.lrs.iter().zip(floats(&r["lrs"])).enumerate() {
            assert!((got - want).abs() <= 1e-12, "lr[{step}]: {got} vs {want}");
        }
        for (step, (got, want)) in stats
            .grad_norms
            .iter()
            .zip(floats(&r["grad_norms"]))
            .enumerate()
        {
            assert_rel(*got, want, 1e-3, &format!("grad_norm[{step}]"));
        }
    }
    let final_loss = eval_loss(&model, Some(&trained), &eval_set, rows(4)).expect("eval");
    assert_rel(
        final_loss,
        r[final_key].as_f64().expect("final"),
        1e-3,
        final_key,
    );
}

#[test]
fn training_matches_the_reference_step_by_step() {
    let r = reference();
    check_training(
        r["config"]["max_grad_norm"].as_f64().expect("clip"),
        "train_losses",
        "final_eval_loss",
    );
}

#[test]
fn training_with_clipping_that_bites_matches_the_reference() {
    let r = reference();
    check_training(
        r["config_clipped_max_grad_norm"].as_f64().unwrap_or(0.05),
        "train_losses_clipped",
        "final_eval_loss_clipped",
    );
}

#[test]
fn peft_trained_adapter_gives_the_reference_final_loss() {
    let r = reference();
    let model = model(&fixtures());
    let eval_set = EvalSet::from_examples(examples(&r["examples_eval"]), 0);
    let loss = eval_loss(
        &model,
        Some(&adapter("adapter_trained", &model)),
        &eval_set,
        rows(8),
    )
    .expect("eval");
    assert_rel(
        loss,
        r["final_eval_loss"].as_f64().expect("final"),
        1e-4,
        "PEFT-trained adapter eval loss",
    );
}
