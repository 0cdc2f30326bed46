//! The SiLU-gated feed-forward network.

use burn::tensor::{activation::silu, backend::Backend, Tensor};

use super::Linear;
use crate::lora::{LayerLora, Target};

/// `down(silu(gate(x)) · up(x))`, each projection with its LoRA branch.
#[derive(Debug, Clone)]
pub struct Mlp<B: Backend> {
    /// `mlp.gate_proj`.
    pub gate_proj: Linear<B>,
    /// `mlp.up_proj`.
    pub up_proj: Linear<B>,
    /// `mlp.down_proj`.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Applies the MLP to `[rows, hidden]`.
    pub fn forward(&self, x: Tensor<B, 2>, lora: Option<&LayerLora<'_, B>>) -> Tensor<B, 2> {
        let gate = Target::Gate.apply(&self.gate_proj, x.clone(), lora);
        let up = Target::Up.apply(&self.up_proj, x, lora);
        Target::Down.apply(&self.down_proj, silu(gate) * up, lora)
    }
}
