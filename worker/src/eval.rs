//! Evaluation: the eval loss is the mean over eval rows of each row's mean assistant-token
//! cross-entropy. Rows are sorted by length and batched; right padding keeps every row's loss
//! independent of its batch.

use burn::tensor::backend::Backend;

use crate::batch::Batch;
use crate::chat::{ChatTokenizer, Example};
use crate::error::EngineError;
use crate::lora::{Adapter, LoraContext};
use crate::model::Qwen2;
use protocol::dataset::Row;

/// A tokenised evaluation set, ready for any job.
#[derive(Debug, Clone)]
pub struct EvalSet {
    /// Rows with at least one supervised token, longest first.
    examples: Vec<Example>,
    /// Rows that had no supervised token after truncation.
    skipped: usize,
}

impl EvalSet {
    /// Tokenises `rows` with `max_seq_len`; rows without a supervised token are counted, not kept.
    pub fn new(
        tokenizer: &ChatTokenizer,
        rows: &[Row],
        max_seq_len: usize,
    ) -> Result<Self, EngineError> {
        let mut examples = Vec::with_capacity(rows.len());
        let mut skipped = 0;
        for (index, row) in rows.iter().enumerate() {
            let example = tokenizer
                .encode_row(row, max_seq_len)
                .map_err(|e| EngineError::Data(format!("eval row {}: {e}", index + 1)))?;
            if example.supervised() == 0 {
                skipped += 1;
            } else {
                examples.push(example);
            }
        }
        Ok(Self::from_examples(examples, skipped))
    }

    /// An eval set of already tokenised examples (examples without a supervised token are
    /// counted as skipped).
    pub fn from_examples(examples: Vec<Example>, skipped: usize) -> Self {
        let (mut kept, dropped): (Vec<_>, Vec<_>) =
            examples.into_iter().partition(|e| e.supervised() > 0);
        kept.sort_by_key(|e| std::cmp::Reverse(e.len()));
        Self {
            examples: kept,
            skipped: skipped + dropped.len(),
        }
    }

    /// Rows that count.
    pub fn rows(&self) -> usize {
        self.examples.len()
    }

    /// Rows skipped for having no supervised token.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

/// The eval loss of `model` (with `adapter` when given), `batch_rows` rows per forward pass.
pub fn eval_loss<B: Backend>(
    model: &Qwen2<B>,
    adapter: Option<&Adapter<B>>,
    set: &EvalSet,
    batch_rows: usize,
) -> Result<f64, EngineError> {
    if set.examples.is_empty() {
        return Err(EngineError::Data(
            "the eval set has no row with a supervised token".into(),
        ));
    }
    let device = model.embed_tokens.device();
    let context = adapter.map(|a| LoraContext::new(a, 0.0));
    let mut total = 0.0f64;
    for chunk in set.examples.chunks(batch_rows.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = Batch::new(&refs);
        let logits = model.forward(batch.ids_tensor(&device), context.as_ref());
        let sums = batch.token_losses(logits).sum_dim(1);
        let sums: Vec<f32> = sums
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        for (sum, tokens) in sums.iter().zip(&batch.row_tokens) {
            total += f64::from(*sum) / *tokens as f64;
        }
    }
    let loss = total / set.examples.len() as f64;
    if !loss.is_finite() {
        return Err(EngineError::Diverged(format!("eval loss is {loss}")));
    }
    Ok(loss)
}
