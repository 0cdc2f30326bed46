//! `worker bench`: the engine's throughput and memory, measured.
//!
//! - default: train tokens/s and eval rows/s on real rows of a dataset ([`data`]);
//!   `scripts/bench_torch.py` runs the same workload through PyTorch for the ratio;
//! - `--memory`: peak host memory of one training step of a 1.5B-shaped proxy on the CPU, at
//!   batch × each of `--seqs` ([`memory`]);
//! - `--synthetic`: train tokens/s, device memory and eval rows/s on token rows of exact lengths,
//!   for any model directory and device ([`synthetic`]); `scripts/gpu/peft_bench.py` runs the
//!   same workload through PyTorch + PEFT.

pub mod args;
pub mod data;
pub mod memory;
pub mod synthetic;

use anyhow::Result;

pub use args::BenchArgs;

/// Runs the benchmark the arguments select and prints its figures.
pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(seq) = args.memory_step {
        memory::step(args, seq)
    } else if args.memory {
        memory::run(args)
    } else if args.synthetic {
        synthetic::run(args)
    } else {
        data::run(args)
    }
}
