//! Root-mean-square layer normalisation, in f32.

use burn::tensor::{backend::Backend, Tensor};

use super::host;

/// `y = x / sqrt(mean(x²) + eps) · weight` over the last dimension (HF `Qwen2RMSNorm`).
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    /// The learned scale `[hidden]` (HF `…norm.weight`), f32.
    pub weight: Tensor<B, 1>,
    /// Added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Normalises every row of `[rows, hidden]` (f32): one pass per row on the CPU
    /// ([`host`]), Burn's operations elsewhere.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match (host::host(&x), host::host(&self.weight)) {
            (Some(values), Some(weight)) => {
                let [rows, width] = x.dims();
                let y = rms_norm_rows(values.values(), weight.values(), self.eps);
                host::tensor(y, [rows, width], &x.device())
            }
            _ => self.forward_ops(x),
        }
    }

    /// [`RmsNorm::forward`] as Burn operations, on any backend.
    pub fn forward_ops(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let inv_rms = x
            .clone()
            .square()
            .mean_dim(1)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        x * inv_rms * self.weight.clone().unsqueeze::<2>()
    }
}

/// Every row of `x` (rows of `weight.len()` values) normalised and scaled, in the order of
/// [`RmsNorm::forward_ops`]: `(x · 1/sqrt(mean(x²) + eps)) · weight`.
fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f64) -> Vec<f32> {
    let width = weight.len();
    let mut out = vec![0f32; x.len()];
    if width == 0 {
        return out;
    }
    for (row, y) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let mean = row.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let inv = 1.0 / (mean + eps as f32).sqrt();
        for ((y, v), w) in y.iter_mut().zip(row).zip(weight) {
            *y = v * inv * w;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend as B;
    use burn::tensor::Distribution;

    #[test]
    fn the_cpu_pass_matches_burns_operations() {
        let device = Default::default();
        B::seed(&device, 3);
        let norm = RmsNorm::<B> {
            weight: Tensor::random([96], Distribution::Normal(1.0, 0.5), &device),
            eps: 1e-6,
        };
        let x = Tensor::<B, 2>::random([37, 96], Distribution::Normal(0.0, 3.0), &device);
        let got = norm.forward(x.clone());
        let want = norm.forward_ops(x);
        let diff: f32 = (got - want.clone()).abs().max().into_scalar();
        let scale: f32 = want.abs().max().into_scalar();
        assert!(diff <= 1e-6 * scale, "{diff} (largest value {scale})");
    }
}
