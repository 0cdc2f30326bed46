//! The optimizer step: learning-rate schedule, global-norm gradient clipping and AdamW, written
//! out so they follow PyTorch exactly (Burn 0.21 clips per tensor and has other AdamW defaults).

use burn::tensor::{backend::Backend, Tensor};

/// Linear warm-up then linear decay to 0 over `total` steps (transformers'
/// `get_linear_schedule_with_warmup`):
/// `lr(s) = lr_max·s/warmup` for `s < warmup`, else `lr_max·(total − s)/max(1, total − warmup)`.
/// Step 0 therefore uses lr 0 when there is a warm-up.
pub fn learning_rate(step: usize, total: usize, warmup: usize, lr_max: f64) -> f64 {
    if step < warmup {
        lr_max * step as f64 / warmup.max(1) as f64
    } else {
        let remaining = total.saturating_sub(step) as f64;
        lr_max * (remaining / total.saturating_sub(warmup).max(1) as f64).max(0.0)
    }
}

/// The global L2 norm `sqrt(Σ‖g‖²)` over all gradients.
pub fn global_norm<B: Backend>(grads: &[Tensor<B, 2>]) -> f64 {
    let Some(first) = grads.first() else {
        return 0.0;
    };
    let mut total = first.clone().square().sum();
    for g in &grads[1..] {
        total = total + g.clone().square().sum();
    }
    let squared: f64 = total.into_scalar().into_f64_lossless();
    squared.sqrt()
}

/// Scales all gradients by `max_norm / (norm + 1e-6)` when that is below 1 (PyTorch's
/// `clip_grad_norm_`); returns the pre-clip norm. `max_norm = 0` disables clipping.
pub fn clip_global_norm<B: Backend>(grads: &mut [Tensor<B, 2>], max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in grads.iter_mut() {
                *g = g.clone().mul_scalar(coef);
            }
        }
    }
    norm
}

/// AdamW as in `torch.optim.AdamW`: decoupled weight decay `p ← p·(1 − lr·wd)`, then
/// `p ← p − lr/(1−β₁ᵗ) · m / (sqrt(v)/sqrt(1−β₂ᵗ) + ε)`.
#[derive(Debug, Clone)]
pub struct AdamW<B: Backend> {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: i32,
    moments: Vec<(Tensor<B, 2>, Tensor<B, 2>)>,
}

impl<B: Backend> AdamW<B> {
    /// Zero first and second moments for `params`.
    pub fn new(params: &[Tensor<B, 2>], weight_decay: f64) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            moments: params
                .iter()
                .map(|p| (p.zeros_like(), p.zeros_like()))
                .collect(),
        }
    }

    /// Updates `params` in place with `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [Tensor<B, 2>], grads: Vec<Tensor<B, 2>>, lr: f64) {
        self.step += 1;
        let bias1 = 1.0 - self.beta1.powi(self.step);
        let bias2_sqrt = (1.0 - self.beta2.powi(self.step)).sqrt();
        for ((param, grad), (m, v)) in params.iter_mut().zip(grads).zip(self.moments.iter_mut()) {
            let decayed = param.clone().mul_scalar(1.0 - lr * self.weight_decay);
            *m = m.clone().mul_scalar(self.beta1) + grad.clone().mul_scalar(1.0 - self.beta1);
            *v = v.clone().mul_scalar(self.beta2) + grad.square().mul_scalar(1.0 - self.beta2);
            let denom = v.clone().sqrt().div_scalar(bias2_sqrt).add_scalar(self.eps);
            *param = decayed - (m.clone() / denom).mul_scalar(lr / bias1);
        }
    }
}

trait IntoF64 {
    fn into_f64_lossless(self) -> f64;
}

impl<E: burn::tensor::ElementConversion> IntoF64 for E {
    fn into_f64_lossless(self) -> f64 {
        self.elem::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_from_zero_then_decays_to_zero() {
        // total 10, warmup 5, lr 1: 0, .2, .4, .6, .8, then (10-s)/5: 1, .8, .6, .4, .2
        let lrs: Vec<f64> = (0..10).map(|s| learning_rate(s, 10, 5, 1.0)).collect();
        let expected = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.8, 0.6, 0.4, 0.2];
        for (got, want) in lrs.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{lrs:?}");
        }
        assert_eq!(learning_rate(10, 10, 5, 1.0), 0.0);
        // no warm-up: full rate at step 0
        assert_eq!(learning_rate(0, 4, 0, 2.0), 2.0);
    }
}
