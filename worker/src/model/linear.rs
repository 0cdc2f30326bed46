//! A frozen linear layer (the weight in the device's storage precision, the bias in f32), and
//! projections that read the same input, fused into one matmul or kept apart.

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

/// Projections of one input (q/k/v, or gate/up): one matmul over their weights side by side
/// (`Fused`: fewer, larger matmuls, what a GPU wants), or one matmul each (`Separate`: on the CPU
/// the outputs stay contiguous, which the flex backend multiplies and reshapes much faster than
/// column slices).
#[derive(Debug, Clone)]
pub enum Projections<B: Backend> {
    /// One layer whose output columns are the projections' outputs, in order, with their widths.
    Fused {
        /// `[in, Σ widths]`.
        linear: Linear<B>,
        /// Output width of each projection.
        widths: Vec<usize>,
    },
    /// One layer per projection.
    Separate(Vec<Linear<B>>),
}

impl<B: Backend> Projections<B> {
    /// Each projection of f32 `[rows, in]`, as f32 `[rows, width]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Vec<Tensor<B, 2>> {
        match self {
            Projections::Fused { linear, widths } => {
                let rows = x.dims()[0];
                let y = linear.forward(x);
                let mut start = 0;
                widths
                    .iter()
                    .map(|w| {
                        let part = y.clone().slice([0..rows, start..start + w]);
                        start += w;
                        part
                    })
                    .collect()
            }
            Projections::Separate(layers) => layers.iter().map(|l| l.forward(x.clone())).collect(),
        }
    }

    /// The weights (one, or one per projection).
    pub fn weights(&self) -> Vec<&Tensor<B, 2>> {
        match self {
            Projections::Fused { linear, .. } => vec![&linear.weight],
            Projections::Separate(layers) => layers.iter().map(|l| &l.weight).collect(),
        }
    }

    /// The same projections with every layer transformed.
    pub fn map<C: Backend>(&self, f: impl Fn(&Linear<B>) -> Linear<C>) -> Projections<C> {
        match self {
            Projections::Fused { linear, widths } => Projections::Fused {
                linear: f(linear),
                widths: widths.clone(),
            },
            Projections::Separate(layers) => Projections::Separate(layers.iter().map(f).collect()),
        }
    }
}
