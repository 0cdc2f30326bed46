//! Causal grouped-query self-attention with q/k/v bias and rotary positions.

use burn::tensor::{activation::softmax, backend::Backend, Tensor, TensorData};

use super::{Linear, Rope};
use crate::lora::{LayerLora, Target};

/// Qwen2 self-attention: `num_heads` query heads share `num_kv_heads` key/value heads.
#[derive(Debug, Clone)]
pub struct Attention<B: Backend> {
    /// `self_attn.q_proj` (with bias).
    pub q_proj: Linear<B>,
    /// `self_attn.k_proj` (with bias).
    pub k_proj: Linear<B>,
    /// `self_attn.v_proj` (with bias).
    pub v_proj: Linear<B>,
    /// `self_attn.o_proj` (no bias).
    pub o_proj: Linear<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Attends over `[batch, seq, hidden]` (passed flattened as `[batch·seq, hidden]`).
    ///
    /// Grouped heads are handled without copying K/V: the `group` query heads that share a KV head
    /// are stacked along the sequence axis, `[b, kv, group·seq, d]`, and multiplied by that KV head
    /// once; the causal mask is tiled to match.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        seq: usize,
        rope: &Rope<B>,
        lora: Option<&LayerLora<'_, B>>,
    ) -> Tensor<B, 2> {
        let (heads, kv_heads, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = heads / kv_heads;
        let q = Target::Q.apply(&self.q_proj, x.clone(), lora);
        let k = Target::K.apply(&self.k_proj, x.clone(), lora);
        let v = Target::V.apply(&self.v_proj, x, lora);

        let q = rope.apply(q.reshape([batch, seq, heads, d]).swap_dims(1, 2));
        let k = rope.apply(k.reshape([batch, seq, kv_heads, d]).swap_dims(1, 2));
        let v = v.reshape([batch, seq, kv_heads, d]).swap_dims(1, 2);

        let q = q.reshape([batch, kv_heads, group * seq, d]);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (d as f64).sqrt());
        let scores = scores + causal_mask::<B>(group, seq, &v.device());
        let probs = softmax(scores, 3);
        let out = probs
            .matmul(v)
            .reshape([batch, heads, seq, d])
            .swap_dims(1, 2)
            .reshape([batch * seq, heads * d]);
        Target::O.apply(&self.o_proj, out, lora)
    }
}

/// Additive mask `[1, 1, group·seq, seq]`: 0 where query position ≥ key position, −∞ above the
/// diagonal; the pattern repeats for each stacked query head.
fn causal_mask<B: Backend>(group: usize, seq: usize, device: &B::Device) -> Tensor<B, 4> {
    let mut values = Vec::with_capacity(group * seq * seq);
    for _ in 0..group {
        for query in 0..seq {
            for key in 0..seq {
                values.push(if key > query { f32::NEG_INFINITY } else { 0.0 });
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [1, 1, group * seq, seq]), device)
}
