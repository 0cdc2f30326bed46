//! `worker bench --memory`: the peak host memory of one training step of a "1.5B-shaped" proxy
//! ([`Qwen2Config::proxy_1_5b`]: Qwen2.5-1.5B's 28 layers, 12/2 heads, 151,936-token vocabulary
//! and tied head, narrow hidden size) on the CPU, at batch × each sequence length.
//!
//! Each length runs in a child process (this binary with `--memory-step`), which loads the proxy,
//! resets its peak resident set size (Linux `/proc/self/clear_refs`), trains one optimizer step
//! on rows of exactly that length (a quarter prompt, the rest in the loss; LoRA r 16 on all seven
//! projections, dropout 0.1) and reports its peak (`VmHWM`), so one length's peak never hides
//! another's. The attention-score and logit terms of the proxy have their full size; only the
//! per-token widths are narrow, so the table shows how the step's memory grows with length.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use protocol::config::TrainingConfig;

use super::args::BenchArgs;
use crate::chat::Example;
use crate::checkpoint::{load_model_with, LoadOptions};
use crate::config::Qwen2Config;
use crate::lora::Adapter;
use crate::train::{train_with, Backward, TrainSettings};
use crate::CpuBackend;

/// Rows of exactly `seq` tokens: the first quarter prompt, the rest in the loss.
pub fn synthetic_examples(rows: usize, seq: usize, vocab: usize) -> Vec<Example> {
    (0..rows)
        .map(|r| Example {
            ids: (0..seq)
                .map(|t| (3 + (t * 7919 + r * 104_729) % (vocab - 3)) as u32)
                .collect(),
            mask: (0..seq).map(|t| u8::from(t >= seq / 4)).collect(),
        })
        .collect()
}

fn status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

fn backward(args: &BenchArgs) -> Result<Backward> {
    match args.backward.as_str() {
        "recompute" => Ok(Backward::Recompute),
        "plain" => Ok(Backward::Plain),
        other => bail!("--backward {other:?}: expected recompute or plain"),
    }
}

/// The one-step training config of the measurement.
fn step_config(batch: usize, seq: usize) -> TrainingConfig {
    TrainingConfig {
        micro_batch: batch,
        grad_accum: 1,
        epochs: 1,
        max_seq_len: seq,
        warmup_steps: 0,
        max_rows: usize::MAX,
        shuffle: false,
        ..TrainingConfig::default()
    }
}

/// Child process: one step at `seq`, figures as one JSON line on stdout.
pub fn step(args: &BenchArgs, seq: usize) -> Result<()> {
    let dir = args.model.as_ref().context("--memory-step needs --model")?;
    let backward = backward(args)?;
    let device = Default::default();
    let model = load_model_with::<CpuBackend>(dir, &device, LoadOptions::default())?.model;
    let config = step_config(args.batch, seq);
    let examples = synthetic_examples(args.batch, seq, model.config.vocab_size);
    let adapter = Adapter::init(
        &model.config,
        config.lora_rank,
        config.lora_alpha,
        config.seed,
        &device,
    );
    let resident = status_kib("VmRSS:")? * 1024;
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
    let started = Instant::now();
    let settings = TrainSettings {
        backward,
        bucket: false,
    };
    let (_, stats) = train_with(
        &model,
        adapter,
        &examples,
        &config,
        settings,
        &AtomicBool::new(false),
        &mut |_| {},
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:")? * 1024;
    println!(
        "{}",
        serde_json::json!({
            "batch": args.batch,
            "seq": seq,
            "backward": args.backward,
            "peak_rss_bytes": peak,
            "resident_before_bytes": resident,
            "step_seconds": seconds,
            "loss": stats.losses.first(),
        })
    );
    Ok(())
}

/// Parent: writes the proxy, runs one child per length, prints the table.
pub fn run(args: &BenchArgs) -> Result<()> {
    let config = Qwen2Config::proxy_1_5b(args.proxy_hidden);
    config.validate().map_err(anyhow::Error::msg)?;
    backward(args)?;
    let dir = tempfile::tempdir()?;
    crate::tiny::write_random_model(dir.path(), &config, 1, false)?;
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for &seq in &args.seqs {
        let output = Command::new(&exe)
            .arg("bench")
            .arg("--model")
            .arg(dir.path())
            .args(["--batch", &args.batch.to_string()])
            .args(["--backward", &args.backward])
            .args(["--memory-step", &seq.to_string()])
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        if !output.status.success() {
            bail!(
                "the step at {} × {seq} failed ({}): {}",
                args.batch,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let line = String::from_utf8_lossy(&output.stdout);
        let figures: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("unreadable step output {line:?}"))?;
        rows.push(figures);
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "proxy": {
                    "hidden_size": config.hidden_size,
                    "intermediate_size": config.intermediate_size,
                    "layers": config.num_hidden_layers,
                    "heads": [config.num_attention_heads, config.num_key_value_heads],
                    "vocab_size": config.vocab_size,
                },
                "steps": rows,
            })
        );
        return Ok(());
    }
    let gib = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) / (1u64 << 30) as f64;
    println!(
        "1.5B-shaped proxy (28 layers, 12/2 heads, vocab 151,936, tied head, hidden {}, MLP {}), \
         one training step, backward {}",
        config.hidden_size, config.intermediate_size, args.backward
    );
    println!("| batch × seq | peak RSS (GiB) | before the step (GiB) | step (s) |");
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} × {} | {:.2} | {:.2} | {:.1} |",
            row["batch"],
            row["seq"],
            gib(&row["peak_rss_bytes"]),
            gib(&row["resident_before_bytes"]),
            row["step_seconds"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
