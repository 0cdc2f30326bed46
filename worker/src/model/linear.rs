//! A frozen linear layer stored in Hugging Face layout.

use burn::tensor::{backend::Backend, Tensor};

/// `y = x·Wᵀ + b` with `W` in HF layout `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    /// `[out, in]`.
    pub weight: Tensor<B, 2>,
    /// `[out]`, when the layer has a bias.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    /// Applies the layer to `[rows, in]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = x.matmul(self.weight.clone().transpose());
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        }
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.dims()[0]
    }
}
