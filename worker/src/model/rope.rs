//! Rotary position embedding in the Hugging Face "rotate half" form (not Burn's interleaved one).

use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::host;
use crate::config::Qwen2Config;

/// The cos/sin tables of one micro-batch shape, expanded on the device to the shapes of the
/// queries and the keys, `[batch·seq, heads, head_dim]`, once per forward pass so every layer
/// multiplies contiguous tensors of equal shape.
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    queries: (Tensor<B, 3>, Tensor<B, 3>),
    keys: (Tensor<B, 3>, Tensor<B, 3>),
    /// `[head_dim, head_dim]` with `x·rotate = rotate_half(x) = [−x₂, x₁]`.
    rotate: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    /// Tables for `batch` rows of positions `0..seq`: `inv_freq[i] = 1 / theta^(2i/d)`,
    /// `angle = pos · inv_freq`, duplicated over both halves, computed in f32 as transformers does.
    pub fn new(config: &Qwen2Config, batch: usize, seq: usize, device: &B::Device) -> Self {
        let dim = config.head_dim();
        let half = dim / 2;
        let theta = config.rope_theta as f32;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(seq * dim);
        let mut sin = Vec::with_capacity(seq * dim);
        for pos in 0..seq {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = pos as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let table = |values: Vec<f32>| -> Tensor<B, 4> {
            Tensor::from_data(TensorData::new(values, [1, seq, 1, dim]), device)
        };
        let (cos, sin) = (table(cos), table(sin));
        // repeats of contiguous blocks, not a broadcast view made contiguous element by element
        let expand = |t: &Tensor<B, 4>, heads: usize| -> Tensor<B, 3> {
            t.clone()
                .repeat_dim(2, heads)
                .repeat_dim(0, batch)
                .reshape([batch * seq, heads, dim])
        };
        let (heads, kv_heads) = (config.num_attention_heads, config.num_key_value_heads);
        let mut rotate = vec![0f32; dim * dim];
        for i in 0..half {
            rotate[(i + half) * dim + i] = -1.0; // output i takes −x[i + half]
            rotate[i * dim + i + half] = 1.0; // output i + half takes x[i]
        }
        Self {
            queries: (expand(&cos, heads), expand(&sin, heads)),
            keys: (expand(&cos, kv_heads), expand(&sin, kv_heads)),
            rotate: Tensor::from_data(TensorData::new(rotate, [dim, dim]), device),
        }
    }

    /// Rotates `[batch·seq, heads, head_dim]` (query or key heads): `x·cos + rotate_half(x)·sin`,
    /// in one pass on the CPU ([`host`]), as Burn operations elsewhere.
    pub fn apply(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let (cos, sin) = self.tables(&x);
        match (host::host(&x), host::host(cos), host::host(sin)) {
            (Some(values), Some(cos), Some(sin)) => {
                let y = rotate_rows(values.values(), cos.values(), sin.values(), x.dims()[2]);
                host::tensor(y, x.dims(), &x.device())
            }
            _ => self.apply_ops(x),
        }
    }

    /// The cos and sin tables of query or key heads, by the head count of `x`.
    fn tables(&self, x: &Tensor<B, 3>) -> &(Tensor<B, 3>, Tensor<B, 3>) {
        if x.dims()[1] == self.queries.0.dims()[1] {
            &self.queries
        } else {
            &self.keys
        }
    }

    /// [`Rope::apply`] as Burn operations, on any backend.
    pub fn apply_ops(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [rows, heads, dim] = x.dims();
        let (cos, sin) = self.tables(&x);
        let rotated = x
            .clone()
            .reshape([rows * heads, dim])
            .matmul(self.rotate.clone())
            .reshape([rows, heads, dim]);
        x * cos.clone() + rotated * sin.clone()
    }

    /// The same tables on the autodiff backend (shared, not copied).
    pub fn lift(&self) -> Rope<Autodiff<B>> {
        let lift3 = |t: &Tensor<B, 3>| Tensor::from_inner(t.clone());
        Rope {
            queries: (lift3(&self.queries.0), lift3(&self.queries.1)),
            keys: (lift3(&self.keys.0), lift3(&self.keys.1)),
            rotate: Tensor::from_inner(self.rotate.clone()),
        }
    }
}

/// `x·cos + rotate_half(x)·sin` over heads of `dim` values, with `rotate_half(x) = [−x₂, x₁]`
/// (the same products and sum as [`Rope::apply_ops`], so the same values).
fn rotate_rows(x: &[f32], cos: &[f32], sin: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let mut out = vec![0f32; x.len()];
    if dim == 0 {
        return out;
    }
    let heads = x
        .chunks_exact(dim)
        .zip(cos.chunks_exact(dim))
        .zip(sin.chunks_exact(dim))
        .zip(out.chunks_exact_mut(dim));
    for (((x, cos), sin), y) in heads {
        for i in 0..half {
            y[i] = x[i] * cos[i] + -x[i + half] * sin[i];
            y[i + half] = x[i + half] * cos[i + half] + x[i] * sin[i + half];
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
        let config = crate::tiny::tiny_config(64);
        let (batch, seq) = (3, 29);
        let rope = Rope::<B>::new(&config, batch, seq, &device);
        B::seed(&device, 5);
        for heads in [config.num_attention_heads, config.num_key_value_heads] {
            let x = Tensor::<B, 3>::random(
                [batch * seq, heads, config.head_dim()],
                Distribution::Normal(0.0, 2.0),
                &device,
            );
            let got = rope.apply(x.clone());
            let want = rope.apply_ops(x);
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(diff <= 1e-6, "{heads} heads: {diff}");
        }
    }
}
