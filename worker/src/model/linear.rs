//! A frozen linear layer (the weight in the device's storage precision, the bias in f32), and
//! projections that read the same input, fused into one matmul or kept apart.

use burn::tensor::{backend::Backend, Tensor};

use super::host::{self, HostTensor};
use super::host_gemm::{self, Rhs};
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
    /// product and the product back to f32; the bias is added in f32. On the CPU in f32 the
    /// product is [`host_gemm`]'s, with the bias as its starting value.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        if let Some(y) = self.forward_host(&x) {
            return y;
        }
        self.forward_ops(x)
    }

    /// [`Linear::forward`] on the host, when `x`, the weight and the bias are f32 tensors of
    /// the CPU backend.
    fn forward_host(&self, x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
        let values = host::host(x)?;
        let weight = host::host(&self.weight)?;
        let bias: Option<HostTensor> = match &self.bias {
            Some(bias) => Some(host::host(bias)?),
            None => None,
        };
        let [rows, d_in] = x.dims();
        let d_out = self.d_out();
        let y = host_gemm::product(
            values.values(),
            weight.values(),
            Rhs::RowMajor,
            bias.as_ref().map(HostTensor::values),
            [rows, d_in, d_out],
        );
        Some(host::tensor(y, [rows, d_out], &x.device()))
    }

    /// [`Linear::forward`] as Burn operations, on any backend.
    pub fn forward_ops(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend as B;
    use burn::tensor::Distribution;

    #[test]
    fn the_cpu_product_matches_burns_operations_with_and_without_bias() {
        let device = Default::default();
        B::seed(&device, 13);
        let x = Tensor::<B, 2>::random([45, 64], Distribution::Normal(0.0, 1.0), &device);
        for bias in [
            None,
            Some(Tensor::random(
                [96],
                Distribution::Normal(0.0, 1.0),
                &device,
            )),
        ] {
            let layer = Linear {
                weight: Tensor::<B, 2>::random([64, 96], Distribution::Normal(0.0, 0.2), &device),
                bias,
            };
            assert!(layer.forward_host(&x).is_some());
            let got = layer.forward(x.clone());
            let want = layer.forward_ops(x.clone());
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(diff < 1e-5, "{diff}");
        }
    }
}
