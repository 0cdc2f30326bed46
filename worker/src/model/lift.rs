//! Moving a frozen base model onto the autodiff backend for training without copying weights.

use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, Tensor};

use super::{Attention, Block, Linear, Mlp, Qwen2, RmsNorm};

/// A component that can be wrapped for the autodiff backend; the wrapped tensors share storage
/// with the originals and do not require gradients.
pub trait Lift<B: Backend> {
    /// The same component on `Autodiff<B>`.
    type Lifted;
    /// Wraps every tensor.
    fn lift(&self) -> Self::Lifted;
}

fn lift<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Tensor<Autodiff<B>, D> {
    Tensor::from_inner(t.clone())
}

impl<B: Backend> Lift<B> for Linear<B> {
    type Lifted = Linear<Autodiff<B>>;
    fn lift(&self) -> Self::Lifted {
        Linear {
            weight: lift(&self.weight),
            bias: self.bias.as_ref().map(lift),
        }
    }
}

impl<B: Backend> Lift<B> for RmsNorm<B> {
    type Lifted = RmsNorm<Autodiff<B>>;
    fn lift(&self) -> Self::Lifted {
        RmsNorm {
            weight: lift(&self.weight),
            eps: self.eps,
        }
    }
}

impl<B: Backend> Lift<B> for Block<B> {
    type Lifted = Block<Autodiff<B>>;
    fn lift(&self) -> Self::Lifted {
        let a = &self.self_attn;
        Block {
            input_layernorm: self.input_layernorm.lift(),
            self_attn: Attention {
                qkv_proj: a.qkv_proj.map(Lift::lift),
                o_proj: a.o_proj.lift(),
                num_heads: a.num_heads,
                num_kv_heads: a.num_kv_heads,
                head_dim: a.head_dim,
            },
            post_attention_layernorm: self.post_attention_layernorm.lift(),
            mlp: Mlp {
                gate_up_proj: self.mlp.gate_up_proj.map(Lift::lift),
                down_proj: self.mlp.down_proj.lift(),
            },
        }
    }
}

impl<B: Backend> Lift<B> for Qwen2<B> {
    type Lifted = Qwen2<Autodiff<B>>;
    fn lift(&self) -> Self::Lifted {
        Qwen2 {
            config: self.config.clone(),
            precision: self.precision,
            attention: self.attention,
            embed_tokens: lift(&self.embed_tokens),
            layers: self.layers.iter().map(Lift::lift).collect(),
            norm: self.norm.lift(),
            lm_head: self.lm_head.as_ref().map(lift),
        }
    }
}
