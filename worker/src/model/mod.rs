//! The Qwen2 decoder (token embedding, N blocks, final norm, lm_head), generic over the Burn
//! backend: a config, a few small modules (attention, causal attention, MLP, block, norm, RoPE)
//! and [`crate::checkpoint`], the one place that maps checkpoint names onto them.
//!
//! The base weights are plain tensors owned by [`Qwen2`], stored in its [`Precision`]; they never
//! require gradients. A LoRA adapter is passed to each forward pass separately, so one resident
//! base model serves every job with a fresh adapter. The residual stream is f32 `[batch·seq,
//! hidden]` throughout.

mod attention;
mod block;
pub mod causal;
pub mod host;
pub mod host_attention;
pub mod host_attention_grad;
pub mod host_gemm;
pub mod host_math;
pub mod host_pool;
mod lift;
mod linear;
mod mlp;
mod norm;
mod rope;

pub use attention::Attention;
pub use block::Block;
pub use causal::AttentionKernel;
pub use lift::Lift;
pub use linear::{Linear, Projections};
pub use mlp::Mlp;
pub use norm::RmsNorm;
pub use rope::Rope;

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::config::Qwen2Config;
use crate::lora::LoraContext;
use crate::precision::{matmul_f32, to_f32, Precision};

/// A Qwen2 causal language model with frozen base weights.
#[derive(Debug, Clone)]
pub struct Qwen2<B: Backend> {
    /// The architecture.
    pub config: Qwen2Config,
    /// The dtype of the frozen weights and their products.
    pub precision: Precision,
    /// How the forward pass computes attention.
    pub attention: AttentionKernel,
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
    /// The f32 embeddings `[batch·seq, hidden]` of token ids `[batch, seq]`.
    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [batch, seq] = ids.dims();
        to_f32(
            self.embed_tokens
                .clone()
                .select(0, ids.reshape([batch * seq])),
        )
    }

    /// The rotary tables of a `[batch, seq]` micro-batch.
    pub fn rope(&self, batch: usize, seq: usize, device: &B::Device) -> Rope<B> {
        Rope::new(&self.config, batch, seq, device)
    }

    /// The output projection `[vocab, hidden]`: `lm_head`, or the embedding when tied.
    pub fn head_weight(&self) -> Tensor<B, 2> {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens).clone()
    }

    /// f32 logits `[rows, vocab]` of final normalised hidden states `[rows, hidden]` (on the CPU
    /// in f32, [`host_gemm`]'s product).
    pub fn logits(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        let head = self.head_weight();
        if let (Some(values), Some(weight)) = (host::host(&hidden), host::host(&head)) {
            let ([rows, width], vocab) = (hidden.dims(), head.dims()[0]);
            let logits = host_gemm::product(
                values.values(),
                weight.values(),
                host_gemm::Rhs::Transposed,
                None,
                [rows, width, vocab],
            );
            return host::tensor(logits, [rows, vocab], &hidden.device());
        }
        matmul_f32(hidden, head.transpose(), self.precision)
    }

    /// The residual stream after every block, `[batch·seq, hidden]`, for token ids
    /// `[batch, seq]` (not yet normalised by the final norm).
    pub fn last_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        lora: Option<&LoraContext<'_, B>>,
    ) -> Tensor<B, 2> {
        let [batch, seq] = ids.dims();
        let rope = self.rope(batch, seq, &ids.device());
        let mut x = self.embed(ids);
        for (index, layer) in self.layers.iter().enumerate() {
            let layer_lora = lora.map(|l| l.layer(index));
            x = layer.forward(
                x,
                batch,
                seq,
                &rope,
                self.attention,
                self.precision,
                layer_lora.as_ref(),
            );
        }
        x
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` at every position, with the
    /// adapter when given. Training and evaluation compute logits only where the loss needs
    /// them ([`crate::loss`]); this is for checks against other implementations.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        lora: Option<&LoraContext<'_, B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq] = ids.dims();
        let hidden = self.norm.forward(self.last_hidden(ids, lora));
        let vocab = self.config.vocab_size;
        self.logits(hidden).reshape([batch, seq, vocab])
    }
}
