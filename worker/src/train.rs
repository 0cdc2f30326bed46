//! The LoRA training loop (docs/engine.md): micro-batches, gradient accumulation, epochs, AdamW,
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
use crate::dropout::Dropout;
use crate::error::EngineError;
use crate::lora::{Adapter, LayerLora, LoraContext, Target};
use crate::loss::{token_losses, token_losses_with_grad, LOGIT_CHUNK};
use crate::model::causal::{self, QUERY_CHUNK};
use crate::model::{AttentionKernel, Lift, Qwen2};
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

/// How a training step computes its gradients (docs/engine.md). Both give the same losses and
/// gradients within float rounding (tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backward {
    /// Keep every block's input, then recompute one block at a time around its attention, with
    /// attention gradients recomputed a query chunk at a time and the head's gradient computed
    /// by hand: memory grows linearly in the sequence length.
    #[default]
    Recompute,
    /// Autodiff through the whole forward pass (the reference the other path is checked
    /// against; every score and logit chunk stays alive until the backward pass).
    Plain,
}

/// Settings of the training loop that depend on the device, not on the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrainSettings {
    /// How gradients are computed.
    pub backward: Backward,
    /// Pad micro-batches to [`crate::batch::bucket_len`].
    pub bucket: bool,
}

/// Trains `adapter` on `examples` over the frozen `model` with the default settings.
pub fn train<B: Backend>(
    model: &Qwen2<B>,
    adapter: Adapter<B>,
    examples: &[Example],
    config: &TrainingConfig,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(JobProgress),
) -> Result<(Adapter<B>, TrainStats), EngineError> {
    train_with(
        model,
        adapter,
        examples,
        config,
        TrainSettings::default(),
        cancel,
        progress,
    )
}

/// Trains `adapter` on `examples` over the frozen `model`; returns the trained adapter.
pub fn train_with<B: Backend>(
    model: &Qwen2<B>,
    mut adapter: Adapter<B>,
    examples: &[Example],
    config: &TrainingConfig,
    settings: TrainSettings,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(JobProgress),
) -> Result<(Adapter<B>, TrainStats), EngineError> {
    let device = model.embed_tokens.device();
    let mut lifted = model.lift();
    if settings.backward == Backward::Plain {
        // the plain path differentiates the chunked forward pass itself
        lifted.attention = AttentionKernel::Chunked;
    }
    let per_epoch = steps_per_epoch(examples.len(), config);
    let total = per_epoch * config.epochs;
    let mut optimizer = AdamW::new(&adapter.params, config.weight_decay);
    let mut stats = TrainStats::default();
    let dropout = Dropout::<B>::new(config.lora_dropout, config.seed, &device);

    for epoch in 0..config.epochs {
        let order = epoch_order(examples.len(), config, epoch);
        let micro: Vec<Batch> = order
            .chunks(config.micro_batch.max(1))
            .map(|idx| {
                let rows: Vec<&Example> = idx.iter().map(|i| &examples[*i]).collect();
                Batch::new(&rows, settings.bucket)
            })
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
            for (index, batch) in group.iter().enumerate() {
                if batch.supervised() == 0 {
                    continue; // nothing to learn from; its gradient is zero
                }
                let masks = dropout.as_ref().map(|d| d.for_micro_batch(step, index));
                let (loss, batch_grads) = match settings.backward {
                    Backward::Recompute => recompute_grads(
                        model,
                        &lifted,
                        &adapter,
                        batch,
                        masks.as_ref(),
                        group_tokens as f64,
                    ),
                    Backward::Plain => plain_grads(
                        &lifted,
                        &adapter,
                        batch,
                        masks.as_ref(),
                        group_tokens as f64,
                    ),
                };
                step_loss += loss;
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

type Ad<B> = Autodiff<B>;

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    f64::from(t.into_scalar().elem::<f32>())
}

fn leaf<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Tensor<Ad<B>, D> {
    Tensor::from_inner(t.clone()).require_grad()
}

fn grad_or_zeros<B: Backend>(
    leaf: &Tensor<Ad<B>, 2>,
    grads: &[&<Ad<B> as burn::tensor::backend::AutodiffBackend>::Gradients],
) -> Tensor<B, 2> {
    let mut total: Option<Tensor<B, 2>> = None;
    for g in grads {
        if let Some(g) = leaf.grad(g) {
            total = Some(match total {
                Some(t) => t + g,
                None => g,
            });
        }
    }
    total.unwrap_or_else(|| leaf.clone().inner().zeros_like())
}

/// Loss `Σ token losses / divisor` of one micro-batch and its gradient for every adapter factor,
/// by autodiff through the whole forward pass.
pub fn plain_grads<B: Backend>(
    lifted: &Qwen2<Ad<B>>,
    adapter: &Adapter<B>,
    batch: &Batch,
    dropout: Option<&Dropout<B>>,
    divisor: f64,
) -> (f64, Vec<Tensor<B, 2>>) {
    let device = lifted.embed_tokens.device();
    let leaves = adapter.map(|t| leaf(&t));
    let dropout = dropout.map(|d| d.map(Tensor::from_inner));
    let context = LoraContext::new(&leaves, dropout.as_ref());
    let last = lifted.last_hidden(batch.ids_tensor(&device), Some(&context));
    let hidden = lifted
        .norm
        .forward(last.select(0, batch.positions_tensor(&device)));
    let losses = token_losses(lifted, hidden, batch.targets_tensor(&device), LOGIT_CHUNK);
    let loss = losses.sum().div_scalar(divisor);
    let gradients = loss.backward();
    let value = scalar(loss.inner());
    let grads = leaves
        .params
        .iter()
        .map(|p| grad_or_zeros::<B>(p, &[&gradients]))
        .collect();
    (value, grads)
}

/// [`plain_grads`] with memory linear in the sequence length: the forward pass keeps only each
/// block's input; the backward pass recomputes one block at a time, in two halves around its
/// attention, whose gradient is recomputed a query chunk at a time ([`causal::backward`]); the
/// head's gradient is computed by hand ([`token_losses_with_grad`]).
pub fn recompute_grads<B: Backend>(
    model: &Qwen2<B>,
    lifted: &Qwen2<Ad<B>>,
    adapter: &Adapter<B>,
    batch: &Batch,
    dropout: Option<&Dropout<B>>,
    divisor: f64,
) -> (f64, Vec<Tensor<B, 2>>) {
    let device = model.embed_tokens.device();
    let (rows, seq) = (batch.rows, batch.seq);
    let rope = model.rope(rows, seq, &device);
    let lifted_rope = rope.lift();
    let context = LoraContext::new(adapter, dropout);

    // forward: keep each block's input
    let mut inputs = Vec::with_capacity(model.layers.len());
    let mut x = model.embed(batch.ids_tensor(&device));
    for (index, layer) in model.layers.iter().enumerate() {
        inputs.push(x.clone());
        let lora = context.layer(index);
        x = layer.forward(
            x,
            rows,
            seq,
            &rope,
            model.attention,
            model.precision,
            Some(&lora),
        );
    }

    // the head: final norm by autodiff, cross-entropy by hand
    let last = leaf(&x);
    let hidden = lifted
        .norm
        .forward(last.clone().select(0, batch.positions_tensor(&device)));
    let (losses, grad_hidden) = token_losses_with_grad(
        model,
        hidden.clone().inner(),
        batch.targets_tensor(&device),
        1.0 / divisor,
        LOGIT_CHUNK,
    );
    let value = scalar(losses.sum()) / divisor;
    let gradients = (hidden * Tensor::from_inner(grad_hidden)).sum().backward();
    let mut upstream = last.grad(&gradients).unwrap_or_else(|| x.zeros_like());

    // backward: one block at a time, last first
    let dropout = dropout.map(|d| d.map(Tensor::from_inner));
    let per_layer = Target::ALL.len() * 2;
    let mut grads: Vec<Option<Tensor<B, 2>>> = vec![None; adapter.params.len()];
    for index in (0..model.layers.len()).rev() {
        let block = &lifted.layers[index];
        let factors: Vec<Tensor<Ad<B>, 2>> =
            adapter.layer_factors(index).iter().map(leaf).collect();
        let lora = LayerLora::new(&factors, adapter.scale(), index, dropout.as_ref());
        let wants_input = index > 0;
        let input = |t: &Tensor<B, 2>| {
            let t = Tensor::<Ad<B>, 2>::from_inner(t.clone());
            if wants_input {
                t.require_grad()
            } else {
                t
            }
        };

        // first half, recomputed with autodiff; the attention itself without
        let x_first = input(&inputs[index]);
        let (q, k, v) =
            block.attention_inputs(x_first.clone(), rows, seq, &lifted_rope, Some(&lora));
        let (q_in, k_in, v_in) = (q.clone().inner(), k.clone().inner(), v.clone().inner());
        let attended = causal::forward(
            q_in.clone(),
            k_in.clone(),
            v_in.clone(),
            model.attention,
            model.precision,
        );

        // second half, recomputed with autodiff from the attention output
        let attended = leaf(&attended);
        let x_second = input(&inputs[index]);
        let y = block.finish(x_second.clone(), attended.clone(), Some(&lora));
        let second = (y * Tensor::from_inner(upstream)).sum().backward();
        let d_attended = attended
            .grad(&second)
            .unwrap_or_else(|| attended.clone().inner().zeros_like());

        // the attention's gradient, a query chunk at a time, then the first half's
        let (dq, dk, dv) =
            causal::backward(q_in, k_in, v_in, d_attended, model.precision, QUERY_CHUNK);
        let first = ((q * Tensor::from_inner(dq)).sum()
            + (k * Tensor::from_inner(dk)).sum()
            + (v * Tensor::from_inner(dv)).sum())
        .backward();

        for (offset, factor) in factors.iter().enumerate() {
            grads[index * per_layer + offset] =
                Some(grad_or_zeros::<B>(factor, &[&first, &second]));
        }
        upstream = if wants_input {
            grad_or_zeros::<B>(&x_first, &[&first]) + grad_or_zeros::<B>(&x_second, &[&second])
        } else {
            x.zeros_like() // the embedding is frozen: nothing below needs a gradient
        };
    }
    let grads = grads
        .into_iter()
        .zip(&adapter.params)
        .map(|(g, p)| g.unwrap_or_else(|| p.zeros_like()))
        .collect();
    (value, grads)
}
