//! Training throughput (train tokens/s) and evaluation throughput (eval rows/s) of the engine on
//! one device, measured on real rows. `scripts/bench_torch.py` runs the same workload through
//! PyTorch on the same checkpoint for the ratio.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use protocol::config::TrainingConfig;
use protocol::dataset::{parse_dataset, DatasetLimits};

use super::args::BenchArgs;
use crate::Engine;

/// Runs the dataset benchmark and prints the figures.
pub fn run(args: &BenchArgs) -> Result<()> {
    let tmp;
    let model = match &args.model {
        Some(dir) => dir.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("murmuration-bench-{}", std::process::id()));
            crate::write_tiny_model(&tmp, 7)?;
            tmp.clone()
        }
    };
    let (device, profile) = super::args::profile(args)?;
    let bytes = std::fs::read(&args.data).with_context(|| args.data.display().to_string())?;
    let limits = DatasetLimits {
        max_rows: usize::MAX,
        ..DatasetLimits::default()
    };
    let rows = parse_dataset(&bytes, &limits)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.data.display()))?
        .rows;
    let train_rows = &rows[..args.train_rows.min(rows.len())];
    let eval_rows = &rows[rows.len().saturating_sub(args.eval_rows)..];
    let config = TrainingConfig {
        epochs: args.epochs,
        lora_dropout: 0.0,
        shuffle: false,
        max_rows: usize::MAX,
        ..TrainingConfig::default()
    };
    let engine = Engine::load_with(&model, &device, profile)?;
    let eval = engine.prepare_eval(eval_rows, &config)?;
    let never = AtomicBool::new(false);

    let base = TrainingConfig {
        epochs: 0,
        ..config.clone()
    };
    let started = Instant::now();
    engine.run_job(&[], &eval, &base, &never, &mut |_| {})?;
    let eval_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let report = engine.run_job(train_rows, &eval, &config, &never, &mut |_| {})?;
    let train_seconds = (started.elapsed().as_secs_f64() - eval_seconds).max(1e-9);
    let trained_tokens = report.train_tokens * args.epochs;
    let figures = serde_json::json!({
        "device": device.to_string(),
        "precision": profile.precision.to_string(),
        "model_id": engine.model_id(),
        "train_rows": report.train_rows,
        "train_tokens": trained_tokens,
        "steps": report.steps,
        "train_seconds": train_seconds,
        "train_tokens_per_s": trained_tokens as f64 / train_seconds,
        "eval_rows": report.eval_rows,
        "eval_seconds": eval_seconds,
        "eval_rows_per_s": report.eval_rows as f64 / eval_seconds,
    });
    if args.json {
        println!("{figures}");
    } else {
        println!(
            "train {:.0} tokens/s ({} tokens, {} steps, {:.2}s)  eval {:.1} rows/s ({} rows, {:.2}s)",
            trained_tokens as f64 / train_seconds,
            trained_tokens,
            report.steps,
            train_seconds,
            report.eval_rows as f64 / eval_seconds,
            report.eval_rows,
            eval_seconds
        );
    }
    if args.model.is_none() {
        let _ = std::fs::remove_dir_all(&model);
    }
    Ok(())
}
