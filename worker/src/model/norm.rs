//! Root-mean-square layer normalisation.

use burn::tensor::{backend::Backend, Tensor};

/// `y = x / sqrt(mean(x²) + eps) · weight` over the last dimension (HF `Qwen2RMSNorm`).
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    /// The learned scale `[hidden]` (HF `…norm.weight`).
    pub weight: Tensor<B, 1>,
    /// Added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Normalises `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let inv_rms = x
            .clone()
            .square()
            .mean_dim(2)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        x * inv_rms * self.weight.clone().unsqueeze::<3>()
    }
}
