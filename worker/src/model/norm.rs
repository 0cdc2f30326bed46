//! Root-mean-square layer normalisation, in f32.

use burn::tensor::{backend::Backend, Tensor};

/// `y = x / sqrt(mean(x²) + eps) · weight` over the last dimension (HF `Qwen2RMSNorm`).
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    /// The learned scale `[hidden]` (HF `…norm.weight`), f32.
    pub weight: Tensor<B, 1>,
    /// Added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Normalises every row of `[rows, hidden]` (f32).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
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
