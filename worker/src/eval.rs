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

/// Most padded tokens in one eval forward pass: the logits alone take `tokens × vocab` floats
/// (8192 × 151,936 × 4 B ≈ 5 GB for Qwen2.5), so long rows go in smaller batches.
pub const EVAL_BATCH_TOKENS: usize = 8192;

/// Splits examples sorted longest first into batches of at most `rows` rows and `tokens` padded
/// tokens (a row longer than `tokens` goes alone).
fn batches(examples: &[Example], rows: usize, tokens: usize) -> Vec<&[Example]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < examples.len() {
        let longest = examples[start].len().max(1);
        let fit = (tokens / longest).clamp(1, rows);
        let end = (start + fit).min(examples.len());
        out.push(&examples[start..end]);
        start = end;
    }
    out
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
    for chunk in batches(&set.examples, batch_rows.max(1), EVAL_BATCH_TOKENS) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(len: usize) -> Example {
        Example {
            ids: vec![1; len],
            mask: vec![1; len],
        }
    }

    #[test]
    fn batches_respect_rows_and_padded_tokens() {
        let examples = vec![ex(5000), ex(3000), ex(2000), ex(100), ex(90), ex(80)];
        let sizes: Vec<usize> = batches(&examples, 8, 8192)
            .iter()
            .map(|b| b.len())
            .collect();
        // 5000 → 1 row (8192/5000); 3000 → 2 rows; 100 → 3 rows (row cap 8 > remaining).
        assert_eq!(sizes, vec![1, 2, 3]);
        let sizes: Vec<usize> = batches(&examples, 2, 1 << 30)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![2, 2, 2]);
        assert!(batches(&[], 8, 8192).is_empty());
    }
}
