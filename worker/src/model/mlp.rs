//! The SiLU-gated feed-forward network, with the gate and up projections fused into one matmul.

use burn::tensor::{activation::silu, backend::Backend, Tensor};

use super::{host, host_math, host_pool, Linear, Projections};
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
        let hidden = gated(gate, up);
        let y = self.down_proj.forward(hidden.clone());
        match lora {
            Some(lora) => y + lora.delta(Target::Down, hidden, batch, seq),
            None => y,
        }
    }
}

/// Values per chunk of [`gated`] handed to a thread.
const GATED_CHUNK: usize = 1 << 14;

/// `silu(gate) · up`: one pass on the CPU ([`host`]), chunks split over its cores; Burn
/// operations elsewhere.
fn gated<B: Backend>(gate: Tensor<B, 2>, up: Tensor<B, 2>) -> Tensor<B, 2> {
    match (host::host(&gate), host::host(&up)) {
        (Some(g), Some(u)) => {
            let gate_values = g.values();
            let mut values = u.values().to_vec();
            host_pool::chunks_mut(&mut values, GATED_CHUNK, 1, |start, chunk| {
                for (v, g) in chunk.iter_mut().zip(&gate_values[start..]) {
                    *v *= g * host_math::sigmoid(*g);
                }
            });
            host::tensor(values, gate.dims(), &gate.device())
        }
        _ => silu(gate) * up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend as B;
    use burn::tensor::Distribution;

    #[test]
    fn the_cpu_pass_matches_burns_operations() {
        let device = Default::default();
        B::seed(&device, 7);
        let gate = Tensor::<B, 2>::random([33, 70], Distribution::Normal(0.0, 6.0), &device);
        let up = Tensor::<B, 2>::random([33, 70], Distribution::Normal(0.0, 2.0), &device);
        let got = gated(gate.clone(), up.clone());
        let want = silu(gate) * up;
        let diff: f32 = (got - want.clone()).abs().max().into_scalar();
        let scale: f32 = want.abs().max().into_scalar();
        assert!(diff <= 1e-6 * scale, "{diff} (largest value {scale})");
    }
}
