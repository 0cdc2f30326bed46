//! One pre-norm decoder block, `h = x + o(attn(norm₁(x))); y = h + mlp(norm₂(h))`, split where
//! the attention is so training can recompute each half around it (docs/engine.md).

use burn::tensor::{backend::Backend, Tensor};

use super::causal::{self, AttentionKernel};
use super::{Attention, Mlp, RmsNorm, Rope};
use crate::lora::LayerLora;
use crate::precision::Precision;

/// A decoder block of the frozen base.
#[derive(Debug, Clone)]
pub struct Block<B: Backend> {
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm<B>,
    /// `self_attn`.
    pub self_attn: Attention<B>,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm<B>,
    /// `mlp`.
    pub mlp: Mlp<B>,
}

impl<B: Backend> Block<B> {
    /// The first half: `q, k, v` of `norm₁(x)` for the residual stream `x` `[batch·seq, hidden]`.
    pub fn attention_inputs(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        seq: usize,
        rope: &Rope<B>,
        lora: Option<&LayerLora<'_, B>>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let normed = self.input_layernorm.forward(x);
        self.self_attn.project(normed, batch, seq, rope, lora)
    }

    /// The second half: the block's output for the residual stream `x` and the attention output
    /// `attended` `[batch, heads, seq, d]`.
    pub fn finish(
        &self,
        x: Tensor<B, 2>,
        attended: Tensor<B, 4>,
        lora: Option<&LayerLora<'_, B>>,
    ) -> Tensor<B, 2> {
        let [batch, _, seq, _] = attended.dims();
        let h = x + self.self_attn.output(attended, lora);
        let normed = self.post_attention_layernorm.forward(h.clone());
        h + self.mlp.forward(normed, batch, seq, lora)
    }

    /// The whole block on `[batch·seq, hidden]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        seq: usize,
        rope: &Rope<B>,
        kernel: AttentionKernel,
        precision: Precision,
        lora: Option<&LayerLora<'_, B>>,
    ) -> Tensor<B, 2> {
        let (q, k, v) = self.attention_inputs(x.clone(), batch, seq, rope, lora);
        let attended = causal::forward(q, k, v, kernel, precision);
        self.finish(x, attended, lora)
    }
}
