//! A frozen linear layer: the weight in the device's storage precision, the bias in f32.

use burn::tensor::{backend::Backend, Tensor};

use crate::precision::{cast_to, matmul, to_f32};

/// `y = x·W + b` with `W` stored transposed from the checkpoint, `[in, out]`, so every backend
/// multiplies a contiguous matrix. A fused projection (q/k/v, gate/up) is one `Linear` whose
/// columns are the projections side by side.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    /// `[in, out]`, f32 or bf16.
    pub weight: Tensor<B, 2>,
    /// `[out]` in f32, when the layer has a bias.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    /// Applies the layer to f32 `[rows, in]`: the input is cast to the weight's dtype for the
    /// product and the product back to f32; the bias is added in f32.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = to_f32(matmul(cast_to(x, self.weight.dtype()), self.weight.clone()));
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        }
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.dims()[1]
    }
}
