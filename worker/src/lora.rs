//! LoRA adapters on every linear layer of every block, computed as `x·Wᵀ + s·(x·A)·B`.
//!
//! The dense `W + s·A·B` is never built: the adapter branch costs two thin matmuls and its
//! gradients reach only `A` and `B`. The factors, their gradients and the optimizer state are
//! always f32, whatever the precision of the frozen base.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::Qwen2Config;
use crate::dropout::Dropout;
use crate::precision::matmul;

/// A projection that carries a LoRA adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl Target {
    /// Every adapted projection, in adapter storage order.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The projection's path inside a HF decoder layer, e.g. `self_attn.q_proj`.
    pub fn module_path(self) -> &'static str {
        match self {
            Target::Q => "self_attn.q_proj",
            Target::K => "self_attn.k_proj",
            Target::V => "self_attn.v_proj",
            Target::O => "self_attn.o_proj",
            Target::Gate => "mlp.gate_proj",
            Target::Up => "mlp.up_proj",
            Target::Down => "mlp.down_proj",
        }
    }

    /// The PEFT `target_modules` name, e.g. `q_proj`.
    pub fn module_name(self) -> &'static str {
        let path = self.module_path();
        &path[path.find('.').map_or(0, |i| i + 1)..]
    }

    /// `(in, out)` widths of this projection for an architecture.
    pub fn dims(self, config: &Qwen2Config) -> (usize, usize) {
        let (h, kv, i) = (
            config.hidden_size,
            config.kv_dim(),
            config.intermediate_size,
        );
        let q = config.head_dim() * config.num_attention_heads;
        match self {
            Target::Q => (h, q),
            Target::K | Target::V => (h, kv),
            Target::O => (q, h),
            Target::Gate | Target::Up => (h, i),
            Target::Down => (i, h),
        }
    }

    /// Position in [`Target::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The trainable LoRA factors of a whole model: for every layer and [`Target`], `A` `[in, r]`
/// and `B` `[r, out]` (PEFT stores their transposes).
#[derive(Debug, Clone)]
pub struct Adapter<B: Backend> {
    /// Rank r.
    pub rank: usize,
    /// Alpha; the branch is scaled by alpha / r.
    pub alpha: f64,
    /// Decoder layers covered.
    pub layers: usize,
    /// `[(layer·7 + target)·2]` = A, `[… + 1]` = B.
    pub params: Vec<Tensor<B, 2>>,
}

impl<B: Backend> Adapter<B> {
    /// A fresh adapter as PEFT makes it: `A ~ U(−1/√in, 1/√in)` (Kaiming-uniform with a = √5),
    /// `B = 0`, drawn from `seed` on the host so every device gets the same numbers.
    pub fn init(
        config: &Qwen2Config,
        rank: usize,
        alpha: f64,
        seed: u64,
        device: &B::Device,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = Vec::with_capacity(config.num_hidden_layers * Target::ALL.len() * 2);
        for _ in 0..config.num_hidden_layers {
            for target in Target::ALL {
                let (d_in, d_out) = target.dims(config);
                let bound = 1.0 / (d_in as f64).sqrt();
                let a: Vec<f32> = (0..d_in * rank)
                    .map(|_| rng.random_range(-bound..bound) as f32)
                    .collect();
                params.push(Tensor::from_data(TensorData::new(a, [d_in, rank]), device));
                params.push(Tensor::zeros([rank, d_out], device));
            }
        }
        Self {
            rank,
            alpha,
            layers: config.num_hidden_layers,
            params,
        }
    }

    /// The branch scale alpha / r.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Position of a factor in [`Adapter::params`].
    pub fn index(layer: usize, target: Target, is_b: bool) -> usize {
        (layer * Target::ALL.len() + target.index()) * 2 + usize::from(is_b)
    }

    /// The 14 factors of one layer, in [`Target::ALL`] order, A before B.
    pub fn layer_factors(&self, layer: usize) -> &[Tensor<B, 2>] {
        let per_layer = Target::ALL.len() * 2;
        &self.params[layer * per_layer..(layer + 1) * per_layer]
    }

    /// `(A, B)` of one projection.
    pub fn pair(&self, layer: usize, target: Target) -> (&Tensor<B, 2>, &Tensor<B, 2>) {
        let i = Self::index(layer, target, false);
        (&self.params[i], &self.params[i + 1])
    }

    /// The same adapter with every factor transformed (moved, detached, marked trainable ...).
    pub fn map<C: Backend>(&self, f: impl Fn(Tensor<B, 2>) -> Tensor<C, 2>) -> Adapter<C> {
        Adapter {
            rank: self.rank,
            alpha: self.alpha,
            layers: self.layers,
            params: self.params.iter().cloned().map(f).collect(),
        }
    }
}

/// An adapter in use for one forward pass, with the dropout masks of its micro-batch (none at
/// evaluation).
#[derive(Debug, Clone, Copy)]
pub struct LoraContext<'a, B: Backend> {
    adapter: &'a Adapter<B>,
    dropout: Option<&'a Dropout<B>>,
}

impl<'a, B: Backend> LoraContext<'a, B> {
    /// Uses `adapter`, dropping LoRA inputs with `dropout`'s masks when given.
    pub fn new(adapter: &'a Adapter<B>, dropout: Option<&'a Dropout<B>>) -> Self {
        Self { adapter, dropout }
    }

    /// The view of one decoder layer.
    pub fn layer(&self, layer: usize) -> LayerLora<'a, B> {
        LayerLora::new(
            self.adapter.layer_factors(layer),
            self.adapter.scale(),
            layer,
            self.dropout,
        )
    }
}

/// The adapter of one decoder layer: its 14 factors (A, B of each [`Target`]), the branch scale
/// and the dropout masks.
#[derive(Debug, Clone, Copy)]
pub struct LayerLora<'a, B: Backend> {
    factors: &'a [Tensor<B, 2>],
    scale: f64,
    layer: usize,
    dropout: Option<&'a Dropout<B>>,
}

impl<'a, B: Backend> LayerLora<'a, B> {
    /// A layer's view over `factors` (`[A_q, B_q, A_k, B_k, …]` in [`Target::ALL`] order).
    pub fn new(
        factors: &'a [Tensor<B, 2>],
        scale: f64,
        layer: usize,
        dropout: Option<&'a Dropout<B>>,
    ) -> Self {
        assert_eq!(
            factors.len(),
            Target::ALL.len() * 2,
            "a layer has 14 LoRA factors"
        );
        Self {
            factors,
            scale,
            layer,
            dropout,
        }
    }

    /// The branch `s·(dropout(x)·A)·B` of `target` for `x` `[batch·seq, in]` (f32).
    pub fn delta(&self, target: Target, x: Tensor<B, 2>, batch: usize, seq: usize) -> Tensor<B, 2> {
        let i = target.index() * 2;
        let (a, b) = (&self.factors[i], &self.factors[i + 1]);
        let x = match self.dropout {
            Some(dropout) => {
                let cols = x.dims()[1];
                let mask = dropout.mask(self.layer, target.index(), batch, seq, cols);
                x * mask
            }
            None => x,
        };
        matmul(matmul(x, a.clone()), b.clone()).mul_scalar(self.scale)
    }
}
