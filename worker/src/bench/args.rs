//! The options of `worker bench`, and the engine profile they select.

use std::path::PathBuf;

use anyhow::Result;

use crate::engine::{Device, Profile};

/// Options of `worker bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model directory; a tiny model is generated in a temporary directory when absent.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Rows to train on and evaluate (JSONL).
    #[arg(long, default_value = "eval_data/data.jsonl")]
    pub data: PathBuf,
    /// Training rows used.
    #[arg(long, default_value_t = 64)]
    pub train_rows: usize,
    /// Eval rows used.
    #[arg(long, default_value_t = 128)]
    pub eval_rows: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 or bf16 for the frozen base (default: the device's, f32 on the CPU, bf16 on CUDA).
    #[arg(long)]
    pub precision: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Peak memory of one training step of a 1.5B-shaped proxy on the CPU.
    #[arg(long, conflicts_with = "synthetic")]
    pub memory: bool,
    /// Synthetic token rows of exact lengths instead of a dataset.
    #[arg(long)]
    pub synthetic: bool,
    /// Sequence lengths of `--memory` and `--synthetic`.
    #[arg(long, value_delimiter = ',', default_value = "512,1024,2048,4096")]
    pub seqs: Vec<usize>,
    /// Rows per micro-batch of `--memory` and `--synthetic`.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Hidden size of the `--memory` proxy (a multiple of 24).
    #[arg(long, default_value_t = 384)]
    pub proxy_hidden: usize,
    /// Training backward pass of `--memory`: recompute (the engine's) or plain (autodiff
    /// through everything).
    #[arg(long, default_value = "recompute")]
    pub backward: String,
    /// Timed optimizer steps per length of `--synthetic` (after one untimed warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Eval rows and their length for `--synthetic`.
    #[arg(long, default_value = "64x1024")]
    pub eval_shape: String,
    /// Internal: run one `--memory` step at this length in this process and print its figures.
    #[arg(long, hide = true)]
    pub memory_step: Option<usize>,
}

/// The engine profile of `args`' device with `--precision` applied.
pub fn profile(args: &BenchArgs) -> Result<(Device, Profile)> {
    let device: Device = args.device.parse()?;
    let mut profile = Profile::for_device(&device);
    if let Some(precision) = &args.precision {
        profile.precision = precision.parse().map_err(anyhow::Error::msg)?;
    }
    Ok((device, profile))
}
