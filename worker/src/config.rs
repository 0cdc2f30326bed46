//! The model's architecture, read from a Hugging Face `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The architecture of a Qwen2 decoder, as the subset of HF `config.json` the engine needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    /// Rows of the token embedding (and of the tied lm_head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SiLU-gated MLP.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than the query heads).
    pub num_key_value_heads: usize,
    /// RoPE base frequency.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Whether the lm_head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Longest position the model was trained for.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// The activation of the MLP; only "silu" is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// The HF model type; only "qwen2" is supported.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// transformers ≥ 5 writes `{"rope_type": "default", "rope_theta": θ}` here instead of a
    /// top-level `rope_theta`; [`Qwen2Config::load`] folds it into `rope_theta`.
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<serde_json::Value>,
    /// transformers 4 rope scaling (YaRN, dynamic ...); only `null` is supported.
    #[serde(default, skip_serializing)]
    pub rope_scaling: Option<serde_json::Value>,
}

fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    32_768
}
fn default_act() -> String {
    "silu".into()
}
fn default_model_type() -> String {
    "qwen2".into()
}

impl Qwen2Config {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        let mut config: Self = serde_json::from_str(&text).map_err(|e| {
            EngineError::Checkpoint(format!(
                "{}: not a valid Qwen2 config.json: {e}",
                path.display()
            ))
        })?;
        config
            .resolve_rope()
            .map_err(|reason| EngineError::Checkpoint(format!("{}: {reason}", path.display())))?;
        config
            .validate()
            .map_err(|reason| EngineError::Checkpoint(format!("{}: {reason}", path.display())))?;
        Ok(config)
    }

    /// Folds transformers-5 `rope_parameters` into `rope_theta` and refuses RoPE scaling.
    pub fn resolve_rope(&mut self) -> Result<(), String> {
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("rope_scaling is not supported (only plain RoPE)".into());
        }
        if let Some(params) = self.rope_parameters.take().filter(|v| !v.is_null()) {
            let kind = params
                .get("rope_type")
                .and_then(|v| v.as_str())
                .unwrap_or("default");
            if kind != "default" {
                return Err(format!(
                    "rope_parameters.rope_type {kind:?} is not supported (only \"default\")"
                ));
            }
            if let Some(theta) = params.get("rope_theta") {
                self.rope_theta = theta
                    .as_f64()
                    .ok_or_else(|| "rope_parameters.rope_theta must be a number".to_string())?;
            }
        }
        Ok(())
    }

    /// Checks that the architecture is one this engine implements.
    pub fn validate(&self) -> Result<(), String> {
        if self.model_type != "qwen2" {
            return Err(format!(
                "model_type {:?} is not supported (only \"qwen2\")",
                self.model_type
            ));
        }
        if self.hidden_act != "silu" {
            return Err(format!(
                "hidden_act {:?} is not supported (only \"silu\")",
                self.hidden_act
            ));
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err("hidden_size must be a multiple of num_attention_heads".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err("num_attention_heads must be a multiple of num_key_value_heads".into());
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err("the head dimension must be even for RoPE".into());
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err("rope_theta must be positive".into());
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err("rms_norm_eps must be positive".into());
        }
        Ok(())
    }

    /// The architecture of Qwen/Qwen2.5-1.5B-Instruct (its `config.json`).
    pub fn qwen2_5_1_5b() -> Self {
        Self {
            vocab_size: 151_936,
            hidden_size: 1536,
            intermediate_size: 8960,
            num_hidden_layers: 28,
            num_attention_heads: 12,
            num_key_value_heads: 2,
            rope_theta: 1_000_000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
            max_position_embeddings: 32_768,
            hidden_act: "silu".into(),
            model_type: "qwen2".into(),
            rope_parameters: None,
            rope_scaling: None,
        }
    }

    /// A "1.5B-shaped" proxy for memory measurements on the CPU: Qwen2.5-1.5B's 28 layers,
    /// 12/2 heads, 151,936-token vocabulary and tied head, with `hidden` (a multiple of 24)
    /// instead of 1536 and the MLP narrowed in the same ratio. Attention scores and logits have
    /// their full size in it; only the per-token widths shrink.
    pub fn proxy_1_5b(hidden: usize) -> Self {
        let real = Self::qwen2_5_1_5b();
        Self {
            hidden_size: hidden,
            intermediate_size: hidden * real.intermediate_size / real.hidden_size,
            ..real
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Width of the key and value projections.
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.num_key_value_heads
    }

    /// The config.json a Hugging Face `Qwen2ForCausalLM` would write for this architecture.
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "silu",
            "attention_dropout": 0.0,
            "use_sliding_window": false,
            "torch_dtype": "float32",
        })
    }
}
