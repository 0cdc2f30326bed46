//! One pre-norm decoder block: attention and MLP, each with a residual connection.

use burn::tensor::{backend::Backend, Tensor};

use super::{Attention, Mlp, RmsNorm, Rope};
use crate::lora::LayerLora;

/// `h = x + attn(norm₁(x)); y = h + mlp(norm₂(h))`.
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
    /// Applies the block to `[batch, seq, hidden]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        lora: Option<LayerLora<'_, B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let normed = self.input_layernorm.forward(x.clone());
        let attn = self.self_attn.forward(
            normed.reshape([batch * seq, hidden]),
            batch,
            seq,
            rope,
            lora.as_ref(),
        );
        let h = x + attn.reshape([batch, seq, hidden]);
        let normed = self.post_attention_layernorm.forward(h.clone());
        let mlp = self
            .mlp
            .forward(normed.reshape([batch * seq, hidden]), lora.as_ref());
        h + mlp.reshape([batch, seq, hidden])
    }
}
