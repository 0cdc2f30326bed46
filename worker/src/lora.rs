//! LoRA adapters on every linear layer of every block, computed as `x·Wᵀ + s·(x·A)·B`.
//!
//! The dense `W + s·A·B` is never built: the adapter branch costs two thin matmuls and its
//! gradients reach only `A` and `B`.

use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::Qwen2Config;
use crate::model::Linear;

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

    fn index(self) -> usize {
        self as usize
    }

    /// `base(x) + s·(dropout(x)·A)·B` on `[rows, in]`, or just `base(x)` without an adapter.
    pub fn apply<B: Backend>(
        self,
        base: &Linear<B>,
        x: Tensor<B, 2>,
        lora: Option<&LayerLora<'_, B>>,
    ) -> Tensor<B, 2> {
        let Some(lora) = lora else {
            return base.forward(x);
        };
        let y = base.forward(x.clone());
        let (a, b) = lora.adapter.pair(lora.layer, self);
        let x = lora.dropout(x);
        y + x
            .matmul(a.clone())
            .matmul(b.clone())
            .mul_scalar(lora.adapter.scale())
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

/// An adapter in use for one forward pass, with its dropout probability (0 at evaluation).
#[derive(Debug, Clone, Copy)]
pub struct LoraContext<'a, B: Backend> {
    adapter: &'a Adapter<B>,
    dropout: f64,
}

impl<'a, B: Backend> LoraContext<'a, B> {
    /// Uses `adapter`, dropping LoRA inputs with probability `dropout`.
    pub fn new(adapter: &'a Adapter<B>, dropout: f64) -> Self {
        Self { adapter, dropout }
    }

    /// The view of one decoder layer.
    pub fn layer(&self, layer: usize) -> LayerLora<'a, B> {
        LayerLora {
            adapter: self.adapter,
            layer,
            dropout: self.dropout,
        }
    }
}

/// The adapter of one decoder layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerLora<'a, B: Backend> {
    adapter: &'a Adapter<B>,
    layer: usize,
    dropout: f64,
}

impl<B: Backend> LayerLora<'_, B> {
    /// Inverted dropout on the LoRA input: keep with probability 1−p and scale by 1/(1−p).
    fn dropout(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        if self.dropout <= 0.0 {
            return x;
        }
        let keep = 1.0 - self.dropout;
        let mask = x.random_like(Distribution::Bernoulli(keep));
        x * mask.div_scalar(keep)
    }
}
