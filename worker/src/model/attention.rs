//! Grouped-query self-attention: the fused q/k/v projection with bias and rotary positions, and
//! the output projection. The attention itself is in [`super::causal`].

use burn::tensor::{backend::Backend, Tensor};

use super::{Linear, Projections, Rope};
use crate::lora::{LayerLora, Target};

/// Qwen2 self-attention: `num_heads` query heads share `num_kv_heads` key/value heads.
#[derive(Debug, Clone)]
pub struct Attention<B: Backend> {
    /// `self_attn.{q,k,v}_proj`, with their biases.
    pub qkv_proj: Projections<B>,
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
    /// Queries `[batch, heads, seq, d]`, keys and values `[batch, kv_heads, seq, d]` (f32, RoPE
    /// applied) of the normalised hidden states `x` `[batch·seq, hidden]`, each projection with
    /// its LoRA branch.
    pub fn project(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        seq: usize,
        rope: &Rope<B>,
        lora: Option<&LayerLora<'_, B>>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let (heads, kv_heads, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let rows = batch * seq;
        let mut parts = self.qkv_proj.forward(x.clone()).into_iter();
        let (Some(mut q), Some(mut k), Some(mut v)) = (parts.next(), parts.next(), parts.next())
        else {
            unreachable!("q/k/v are three projections")
        };
        if let Some(lora) = lora {
            q = q + lora.delta(Target::Q, x.clone(), batch, seq);
            k = k + lora.delta(Target::K, x.clone(), batch, seq);
            v = v + lora.delta(Target::V, x, batch, seq);
        }
        let q = rope
            .apply(q.reshape([rows, heads, d]))
            .reshape([batch, seq, heads, d])
            .swap_dims(1, 2);
        let k = rope
            .apply(k.reshape([rows, kv_heads, d]))
            .reshape([batch, seq, kv_heads, d])
            .swap_dims(1, 2);
        let v = v.reshape([batch, seq, kv_heads, d]).swap_dims(1, 2);
        (q, k, v)
    }

    /// The output projection (with its LoRA branch) of the attention output
    /// `[batch, heads, seq, d]`, as `[batch·seq, hidden]`.
    pub fn output(&self, attended: Tensor<B, 4>, lora: Option<&LayerLora<'_, B>>) -> Tensor<B, 2> {
        let [batch, heads, seq, d] = attended.dims();
        let x = attended.swap_dims(1, 2).reshape([batch * seq, heads * d]);
        let y = self.o_proj.forward(x.clone());
        match lora {
            Some(lora) => y + lora.delta(Target::O, x, batch, seq),
            None => y,
        }
    }
}
