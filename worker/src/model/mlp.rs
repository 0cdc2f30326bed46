//! The SiLU-gated feed-forward network, with the gate and up projections fused into one matmul.

use burn::tensor::{activation::silu, backend::Backend, Tensor};

use super::{Linear, Projections};
use crate::lora::{LayerLora, Target};

/// `down(silu(gate(x)) · up(x))`, each projection with its LoRA branch.
#[derive(Debug, Clone)]
pub struct Mlp<B: Backend> {
    /// `mlp.gate_proj` and `mlp.up_proj`.
    pub gate_up_proj: Projections<B>,
    /// `mlp.down_proj`.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Applies the MLP to `[batch·seq, hidden]` (f32).
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        seq: usize,
        lora: Option<&LayerLora<'_, B>>,
    ) -> Tensor<B, 2> {
        let mut parts = self.gate_up_proj.forward(x.clone()).into_iter();
        let (Some(mut gate), Some(mut up)) = (parts.next(), parts.next()) else {
            unreachable!("gate/up are two projections")
        };
        if let Some(lora) = lora {
            gate = gate + lora.delta(Target::Gate, x.clone(), batch, seq);
            up = up + lora.delta(Target::Up, x, batch, seq);
        }
        let hidden = silu(gate) * up;
        let y = self.down_proj.forward(hidden.clone());
        match lora {
            Some(lora) => y + lora.delta(Target::Down, hidden, batch, seq),
            None => y,
        }
    }
}
