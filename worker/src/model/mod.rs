//! The Qwen2 decoder (token embedding, N blocks, final norm, lm_head), generic over the Burn backend.
//!
//! The base weights are plain tensors owned by [`Qwen2`]; they never require gradients. A LoRA
//! [`Adapter`](crate::lora::Adapter) is passed to [`Qwen2::forward`] separately, so one resident base
//! model serves every job with a fresh adapter.

mod attention;
mod block;
mod lift;
mod linear;
mod mlp;
mod norm;
mod rope;

pub use attention::Attention;
pub use block::Block;
pub use lift::Lift;
pub use linear::Linear;
pub use mlp::Mlp;
pub use norm::RmsNorm;
pub use rope::Rope;

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::config::Qwen2Config;
use crate::lora::LoraContext;

/// A Qwen2 causal language model with frozen base weights.
#[derive(Debug, Clone)]
pub struct Qwen2<B: Backend> {
    /// The architecture.
    pub config: Qwen2Config,
    /// Token embedding `[vocab, hidden]` (HF `model.embed_tokens.weight`).
    pub embed_tokens: Tensor<B, 2>,
    /// The decoder blocks.
    pub layers: Vec<Block<B>>,
    /// The final RMSNorm.
    pub norm: RmsNorm<B>,
    /// `[vocab, hidden]` output projection when it is not tied to the embedding.
    pub lm_head: Option<Tensor<B, 2>>,
}

impl<B: Backend> Qwen2<B> {
    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]`, with the adapter when given.
    ///
    /// Attention is causal; sequences are right-padded, so padding never influences a real token.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        lora: Option<&LoraContext<'_, B>>,
    ) -> Tensor<B, 3> {
        let hidden = self.hidden_states(ids, lora);
        self.lm_head(hidden)
    }

    /// The final normalised hidden states `[batch, seq, hidden]`.
    pub fn hidden_states(
        &self,
        ids: Tensor<B, 2, Int>,
        lora: Option<&LoraContext<'_, B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let hidden = self.config.hidden_size;
        let flat = ids.reshape([batch * seq]);
        let mut x = self
            .embed_tokens
            .clone()
            .select(0, flat)
            .reshape([batch, seq, hidden]);
        let rope = Rope::new(&self.config, seq, &device);
        for (index, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, &rope, lora.map(|l| l.layer(index)));
        }
        self.norm.forward(x)
    }

    /// Projects hidden states `[batch, seq, hidden]` to logits `[batch, seq, vocab]`; the tied head
    /// multiplies by the transposed embedding.
    pub fn lm_head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, width] = hidden.dims();
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens).clone();
        let vocab = head.dims()[0];
        hidden
            .reshape([batch * seq, width])
            .matmul(head.transpose())
            .reshape([batch, seq, vocab])
    }
}
