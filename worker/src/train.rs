//! The LoRA training loop (DESIGN.md §5): micro-batches, gradient accumulation, epochs, AdamW,
//! linear warm-up and decay, global-norm clipping, optional per-epoch shuffle from the seed.
//!
//! Steps per epoch = ceil(micro-batches / grad_accum) (the last group may be partial); each
//! optimizer step's loss = the sum of token losses over its group / the group's supervised tokens.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, ElementConversion, Tensor};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::batch::Batch;
use crate::chat::Example;
use crate::error::EngineError;
use crate::lora::{Adapter, LoraContext};
use crate::model::{Lift, Qwen2};
use crate::optim::{clip_global_norm, learning_rate, AdamW};
use protocol::config::TrainingConfig;

/// Progress after one optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobProgress {
    /// Steps done (1-based).
    pub step: usize,
    /// Steps in the whole run.
    pub total_steps: usize,
    /// This step's loss.
    pub loss: f64,
}

/// What training produced besides the adapter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainStats {
    /// One loss per optimizer step.
    pub losses: Vec<f64>,
    /// The pre-clip global gradient norm of every step.
    pub grad_norms: Vec<f64>,
    /// The learning rate of every step.
    pub lrs: Vec<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
}

/// Optimizer steps of one epoch over `rows` rows.
pub fn steps_per_epoch(rows: usize, config: &TrainingConfig) -> usize {
    rows.div_ceil(config.micro_batch.max(1))
        .div_ceil(config.grad_accum.max(1))
}

/// The row order of `epoch`: file order, or a permutation drawn from the seed and epoch.
fn epoch_order(rows: usize, config: &TrainingConfig, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows).collect();
    if config.shuffle {
        let mut rng =
            StdRng::seed_from_u64(config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
    }
    order
}

/// Trains `adapter` on `examples` over the frozen `model`; returns the trained adapter.
pub fn train<B: Backend>(
    model: &Qwen2<B>,
    mut adapter: Adapter<B>,
    examples: &[Example],
    config: &TrainingConfig,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(JobProgress),
) -> Result<(Adapter<B>, TrainStats), EngineError> {
    let device = model.embed_tokens.device();
    let lifted = model.lift();
    let per_epoch = steps_per_epoch(examples.len(), config);
    let total = per_epoch * config.epochs;
    let mut optimizer = AdamW::new(&adapter.params, config.weight_decay);
    let mut stats = TrainStats::default();
    <Autodiff<B> as Backend>::seed(&device, config.seed);

    for epoch in 0..config.epochs {
        let order = epoch_order(examples.len(), config, epoch);
        let micro: Vec<Batch> = order
            .chunks(config.micro_batch.max(1))
            .map(|idx| Batch::new(&idx.iter().map(|i| &examples[*i]).collect::<Vec<_>>()))
            .collect();
        for group in micro.chunks(config.grad_accum.max(1)) {
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            let step = stats.steps;
            let lr = learning_rate(step, total, config.warmup_steps, config.lr);
            let group_tokens: usize = group.iter().map(Batch::supervised).sum();
            let mut step_loss = 0.0;
            let mut grads: Option<Vec<Tensor<B, 2>>> = None;
            if group_tokens > 0 {
                for batch in group {
                    let leaves =
                        adapter.map(|t| Tensor::<Autodiff<B>, 2>::from_inner(t).require_grad());
                    let context = LoraContext::new(&leaves, config.lora_dropout);
                    let logits = lifted.forward(batch.ids_tensor(&device), Some(&context));
                    let loss = batch
                        .token_losses(logits)
                        .sum()
                        .div_scalar(group_tokens as f64);
                    let gradients = loss.backward();
                    step_loss += f64::from(loss.into_scalar().elem::<f32>());
                    let batch_grads: Vec<Tensor<B, 2>> = leaves
                        .params
                        .iter()
                        .map(|p| {
                            p.grad(&gradients)
                                .unwrap_or_else(|| p.clone().inner().zeros_like())
                        })
                        .collect();
                    grads = Some(match grads {
                        None => batch_grads,
                        Some(acc) => acc
                            .into_iter()
                            .zip(batch_grads)
                            .map(|(a, g)| a + g)
                            .collect(),
                    });
                }
                if !step_loss.is_finite() {
                    return Err(EngineError::Diverged(format!(
                        "step {} loss is {step_loss}",
                        step + 1
                    )));
                }
            }
            let norm = match grads {
                Some(mut grads) => {
                    let norm = clip_global_norm(&mut grads, config.max_grad_norm);
                    optimizer.step(&mut adapter.params, grads, lr);
                    norm
                }
                None => 0.0, // no supervised token in this group: nothing to learn from
            };
            stats.losses.push(step_loss);
            stats.grad_norms.push(norm);
            stats.lrs.push(lr);
            stats.steps += 1;
            progress(JobProgress {
                step: stats.steps,
                total_steps: total,
                loss: step_loss,
            });
        }
    }
    Ok((adapter, stats))
}
