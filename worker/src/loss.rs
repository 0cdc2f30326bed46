//! Cross-entropy at the supervised positions only, a chunk of rows at a time, so no
//! `[tokens, vocab]` logits tensor ever exists (docs/engine.md).
//!
//! For hidden states `h` `[n, hidden]` (already through the final norm), head `W` `[vocab,
//! hidden]` and targets `t`: `z = h·Wᵀ`, `loss_i = logsumexp(z_i) − z_i[t_i]`, in f32.

use burn::tensor::activation::log_softmax;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::model::Qwen2;
use crate::precision::matmul_f32;

/// Supervised rows per logits chunk: `[512, 151,936]` f32 logits are about 300 MB.
pub const LOGIT_CHUNK: usize = 512;

fn chunks(rows: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows)
        .step_by(chunk.max(1))
        .map(move |start| (start, (start + chunk).min(rows)))
}

fn rows_of<B: Backend>(hidden: &Tensor<B, 2>, start: usize, end: usize) -> Tensor<B, 2> {
    let width = hidden.dims()[1];
    hidden.clone().slice([start..end, 0..width])
}

fn targets_of<B: Backend>(
    targets: &Tensor<B, 2, Int>,
    start: usize,
    end: usize,
) -> Tensor<B, 2, Int> {
    targets.clone().slice([start..end, 0..1])
}

/// Per-row losses `[n]` of `hidden` `[n, hidden]` against `targets` `[n, 1]`. Differentiable:
/// under autodiff every chunk's logits stay in the graph (the plain training path).
pub fn token_losses<B: Backend>(
    model: &Qwen2<B>,
    hidden: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    chunk: usize,
) -> Tensor<B, 1> {
    let rows = hidden.dims()[0];
    let parts: Vec<Tensor<B, 2>> = chunks(rows, chunk)
        .map(|(start, end)| {
            let logits = model.logits(rows_of(&hidden, start, end));
            log_softmax(logits, 1)
                .gather(1, targets_of(&targets, start, end))
                .neg()
        })
        .collect();
    Tensor::cat(parts, 0).reshape([rows])
}

/// Per-row losses `[n]` and the gradient of `scale · Σ losses` with respect to `hidden`
/// (`[n, hidden]`), computed chunk by chunk without autodiff:
/// `∂loss_i/∂z_i = softmax(z_i) − onehot(t_i)`, `∂/∂h_i = (∂loss_i/∂z_i)·W`.
pub fn token_losses_with_grad<B: Backend>(
    model: &Qwen2<B>,
    hidden: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    scale: f64,
    chunk: usize,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    let rows = hidden.dims()[0];
    let head = model.head_weight();
    let mut losses = Vec::new();
    let mut grads = Vec::new();
    for (start, end) in chunks(rows, chunk) {
        let logits = model.logits(rows_of(&hidden, start, end));
        let target = targets_of(&targets, start, end);
        let target_logit = logits.clone().gather(1, target.clone());
        let max = logits.clone().max_dim(1);
        let exp = (logits - max.clone()).exp();
        let sum = exp.clone().sum_dim(1);
        let lse = sum.clone().log() + max;
        losses.push(lse - target_logit);
        let minus_one = Tensor::<B, 2>::full([end - start, 1], -1.0, &hidden.device());
        let dlogits = (exp / sum)
            .scatter(1, target, minus_one, IndexingUpdateOp::Add)
            .mul_scalar(scale);
        grads.push(matmul_f32(dlogits, head.clone(), model.precision));
    }
    (
        Tensor::cat(losses, 0).reshape([rows]),
        Tensor::cat(grads, 0),
    )
}
