//! Cross-entropy at the supervised positions only, a chunk of rows at a time, so no
//! `[tokens, vocab]` logits tensor ever exists (docs/engine.md).
//!
//! For hidden states `h` `[n, hidden]` (already through the final norm), head `W` `[vocab,
//! hidden]` and targets `t`: `z = h·Wᵀ`, `loss_i = logsumexp(z_i) − z_i[t_i]`, in f32.

use burn::tensor::activation::log_softmax;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::model::Qwen2;
use crate::model::{host, host_math, host_pool};
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
/// under autodiff every chunk's logits stay in the graph (the plain training path). On the CPU
/// each chunk's cross-entropy is one pass over its logits ([`host`]).
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
            cross_entropy(logits, targets_of(&targets, start, end))
        })
        .collect();
    Tensor::cat(parts, 0).reshape([rows])
}

/// Rows per chunk of the CPU cross-entropy handed to a thread.
const CROSS_ENTROPY_ROWS: usize = 32;

/// `−log_softmax(logits)[target]` of every row of `logits` `[n, vocab]`, as `[n, 1]`.
fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [rows, vocab] = logits.dims();
    if let Some(values) = host::host(&logits) {
        let targets = targets.clone().into_data().convert::<i64>();
        if let (Ok(targets), true) = (targets.as_slice::<i64>(), vocab > 0) {
            let logits_values = values.values();
            let mut losses = vec![0f32; rows];
            host_pool::chunks_mut(&mut losses, CROSS_ENTROPY_ROWS, 1, |start, chunk| {
                for (i, loss) in chunk.iter_mut().enumerate() {
                    let row = start + i;
                    let values = &logits_values[row * vocab..(row + 1) * vocab];
                    *loss = row_cross_entropy(values, targets[row]);
                }
            });
            return host::tensor(losses, [rows, 1], &logits.device());
        }
    }
    cross_entropy_ops(logits, targets)
}

/// [`cross_entropy`] as Burn operations, on any backend.
fn cross_entropy_ops<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    log_softmax(logits, 1).gather(1, targets).neg()
}

/// `logsumexp(row) − row[target]`, computed as Burn's `log_softmax` does (shift by the maximum,
/// then subtract the log of the sum of exponentials); NaN for a target outside the row.
fn row_cross_entropy(row: &[f32], target: i64) -> f32 {
    let max = host_math::max(row);
    let sum = host_math::sum_exp(row, max);
    match usize::try_from(target).ok().and_then(|t| row.get(t)) {
        Some(z) => -((z - max) - sum.ln()),
        None => f32::NAN,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend as B;
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn the_cpu_pass_matches_burns_operations() {
        let device = Default::default();
        B::seed(&device, 9);
        let logits = Tensor::<B, 2>::random([45, 640], Distribution::Normal(0.0, 4.0), &device);
        let targets: Vec<i64> = (0..45).map(|i| (i * 37 % 640) as i64).collect();
        let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [45, 1]), &device);
        let got = cross_entropy(logits.clone(), targets.clone());
        let want = cross_entropy_ops(logits, targets);
        let diff: f32 = (got - want.clone()).abs().max().into_scalar();
        let scale: f32 = want.abs().max().into_scalar();
        assert!(diff <= 1e-6 * scale, "{diff} (largest value {scale})");
    }
}
