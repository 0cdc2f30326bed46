//! Rotary position embedding in the Hugging Face "rotate half" form (not Burn's interleaved one).

use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::config::Qwen2Config;

/// The cos/sin tables for one sequence length.
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    half: usize,
}

impl<B: Backend> Rope<B> {
    /// Tables for positions `0..seq`: `inv_freq[i] = 1 / theta^(2i/d)`, `angle = pos · inv_freq`,
    /// duplicated over both halves, computed in f32 as transformers does.
    pub fn new(config: &Qwen2Config, seq: usize, device: &B::Device) -> Self {
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
        let shape = [1, 1, seq, dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            half,
        }
    }

    /// Rotates `[batch, heads, seq, head_dim]`: `x·cos + rotate_half(x)·sin`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let first = x.clone().narrow(3, 0, self.half);
        let second = x.clone().narrow(3, self.half, self.half);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }

    /// The same tables on the autodiff backend (shared, not copied).
    pub fn lift(&self) -> Rope<Autodiff<B>> {
        Rope {
            cos: Tensor::from_inner(self.cos.clone()),
            sin: Tensor::from_inner(self.sin.clone()),
            half: self.half,
        }
    }
}
