//! Configuration types shared by the coordinator, the workers and miner-cli.

use serde::{Deserialize, Serialize};

/// How a miner's LoRA adapter is trained and evaluated (DESIGN.md §5). Every field is a key of the
/// `[training]` table; its hash is part of the loss cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Rows per micro-batch.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Passes over the training rows; 0 evaluates the base model only.
    pub epochs: usize,
    /// Tokens kept per row (right truncation).
    pub max_seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps (step 0 uses lr 0).
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables clipping.
    pub max_grad_norm: f64,
    /// LoRA rank r.
    pub lora_rank: usize,
    /// LoRA alpha (scale = alpha / r).
    pub lora_alpha: f64,
    /// Dropout on the LoRA input during training.
    pub lora_dropout: f64,
    /// Seed for adapter init, dropout and shuffling.
    pub seed: u64,
    /// Shuffle the training rows every epoch (from the seed).
    pub shuffle: bool,
    /// Rows of a miner dataset used (the first ones in file order).
    pub max_rows: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            micro_batch: 2,
            grad_accum: 4,
            epochs: 2,
            max_seq_len: 4096,
            lr: 2e-4,
            warmup_steps: 5,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            lora_rank: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.1,
            seed: 42,
            shuffle: true,
            max_rows: 250,
        }
    }
}
