//! `worker bench --synthetic`: training throughput and memory at exact shapes, and eval
//! throughput, on any model directory and device — the Rust half of the GPU check
//! (`scripts/gpu/check.sh`; `scripts/gpu/peft_bench.py` runs the same workload in PyTorch).
//!
//! For each length S of `--seqs`: one untimed warm-up optimizer step (kernel autotuning happens
//! here), then `--steps` timed steps, each one micro-batch of `--batch` rows of exactly S tokens
//! (the first quarter prompt, the rest in the loss; LoRA r 16 on all seven projections,
//! dropout 0.1, AdamW, clipping). Train tokens/s = batch · S · steps / seconds. Memory: on CUDA
//! the bytes the device allocator holds after the steps (its pool grows to the step's peak and
//! is released before the next length); on the CPU the peak resident set size. Eval: an untimed
//! pass, then a timed pass over `--eval-shape` rows (`ROWSxLEN`) with the device's eval batching.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;

use super::args::BenchArgs;
use super::memory::synthetic_examples;
use crate::checkpoint::load_model_with;
use crate::eval::{eval_loss, EvalSet};
use crate::lora::Adapter;
use crate::model::Qwen2;
use crate::train::train_with;
use crate::{Device, Profile};

fn eval_shape(text: &str) -> Result<(usize, usize)> {
    let (rows, len) = text
        .split_once('x')
        .with_context(|| format!("--eval-shape {text:?}: expected ROWSxLEN"))?;
    Ok((rows.trim().parse()?, len.trim().parse()?))
}

/// Figures of one length.
fn train_figures<B: Backend>(
    model: &Qwen2<B>,
    profile: &Profile,
    args: &BenchArgs,
    seq: usize,
    memory: &dyn Fn(&B::Device) -> Option<u64>,
) -> Result<serde_json::Value> {
    let device = model.embed_tokens.device();
    B::memory_cleanup(&device);
    let steps = args.steps.max(1);
    let examples = synthetic_examples(args.batch * (steps + 1), seq, model.config.vocab_size);
    let config = protocol::config::TrainingConfig {
        micro_batch: args.batch,
        grad_accum: 1,
        epochs: 1,
        max_seq_len: seq,
        max_rows: usize::MAX,
        shuffle: false,
        ..Default::default()
    };
    let adapter = Adapter::init(
        &model.config,
        config.lora_rank,
        config.lora_alpha,
        config.seed,
        &device,
    );
    let mut marks = Vec::new();
    let mut first_loss = None;
    let started = Instant::now();
    train_with(
        model,
        adapter,
        &examples,
        &config,
        profile.train,
        &AtomicBool::new(false),
        &mut |p| {
            marks.push(Instant::now());
            first_loss.get_or_insert(p.loss);
        },
    )?;
    let warmup = marks[0].duration_since(started).as_secs_f64();
    let seconds = marks[marks.len() - 1]
        .duration_since(marks[0])
        .as_secs_f64();
    let tokens = args.batch * seq * steps;
    let peak = memory(&device);
    Ok(serde_json::json!({
        "batch": args.batch,
        "seq": seq,
        "steps": steps,
        "warmup_seconds": warmup,
        "seconds": seconds,
        "tokens_per_s": tokens as f64 / seconds,
        "peak_bytes": peak,
        "first_loss": first_loss,
    }))
}

fn run_on<B: Backend>(
    args: &BenchArgs,
    device: &Device,
    profile: Profile,
    backend_device: B::Device,
    memory: &dyn Fn(&B::Device) -> Option<u64>,
) -> Result<serde_json::Value> {
    let dir = args.model.as_ref().context("--synthetic needs --model")?;
    let model = load_model_with::<B>(dir, &backend_device, profile.load_options())?.model;
    let mut train = Vec::new();
    for &seq in &args.seqs {
        let figures = train_figures(&model, &profile, args, seq, memory)?;
        eprintln!("{figures}");
        train.push(figures);
    }
    let (rows, len) = eval_shape(&args.eval_shape)?;
    let set = EvalSet::from_examples(synthetic_examples(rows, len, model.config.vocab_size), 0);
    eval_loss(&model, None, &set, profile.eval)?;
    let started = Instant::now();
    let loss = eval_loss(&model, None, &set, profile.eval)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "device": device.to_string(),
        "precision": profile.precision.to_string(),
        "layers": model.config.num_hidden_layers,
        "hidden_size": model.config.hidden_size,
        "vocab_size": model.config.vocab_size,
        "train": train,
        "eval": {
            "rows": rows,
            "len": len,
            "seconds": seconds,
            "rows_per_s": rows as f64 / seconds,
            "loss": loss,
        },
    }))
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(feature = "cuda")]
fn cuda_reserved(device: &burn::backend::cuda::CudaDevice) -> Option<u64> {
    use burn::cubecl::cuda::CudaRuntime;
    use burn::cubecl::Runtime;
    crate::engine::CudaBackend::sync(device).ok()?;
    let usage = CudaRuntime::client(device).memory_usage().ok()?;
    Some(usage.bytes_reserved)
}

/// Runs the synthetic benchmark and prints one JSON object.
pub fn run(args: &BenchArgs) -> Result<()> {
    let (device, profile) = super::args::profile(args)?;
    let figures = match device {
        Device::Cpu => {
            run_on::<crate::CpuBackend>(args, &device, profile, Default::default(), &|_| {
                peak_rss()
            })?
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(n) => {
            crate::kernel_cache::configure()?;
            run_on::<crate::engine::CudaBackend>(
                args,
                &device,
                profile,
                burn::backend::cuda::CudaDevice::new(n),
                &cuda_reserved,
            )?
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => {
            anyhow::bail!("this binary was built without CUDA support (--features cuda)")
        }
    };
    println!("{figures}");
    Ok(())
}
