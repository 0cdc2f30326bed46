//! Evaluation: the eval loss is the mean over eval rows of each row's mean assistant-token
//! cross-entropy. Rows are sorted by length and batched; right padding keeps every row's loss
//! independent of its batch.

use burn::tensor::backend::Backend;

use crate::batch::{bucket_len, Batch};
use crate::chat::{ChatTokenizer, Example};
use crate::error::EngineError;
use crate::lora::{Adapter, LoraContext};
use crate::loss::{token_losses, LOGIT_CHUNK};
use crate::model::host::is_host;
use crate::model::{host_pool, Qwen2};
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

/// Most padded tokens in one eval forward pass on the CPU (the GPU's budget is set per device,
/// [`EvalBatching`]).
pub const EVAL_BATCH_TOKENS: usize = 8192;

/// Most eval batches in flight at once on the CPU (each holds its activations and a chunk of
/// logits while it runs, so memory grows with it); a host with more cores leaves the rest idle
/// during eval (the CPU engine is for the devnet and tests: small models, 2–4 cores).
pub const EVAL_BATCHES_IN_FLIGHT: usize = 4;

/// How eval rows are grouped into forward passes on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalBatching {
    /// Most rows in one pass.
    pub rows: usize,
    /// Most padded tokens in one pass (a row longer than this goes alone).
    pub tokens: usize,
    /// Pad each batch to its [`crate::batch::bucket_len`].
    pub bucket: bool,
}

impl Default for EvalBatching {
    fn default() -> Self {
        Self {
            rows: 8,
            tokens: EVAL_BATCH_TOKENS,
            bucket: false,
        }
    }
}

/// Splits examples sorted longest first into batches of at most `rows` rows and `tokens` padded
/// tokens (a row longer than `tokens` goes alone).
fn batches(examples: &[Example], batching: EvalBatching) -> Vec<&[Example]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < examples.len() {
        let longest = examples[start].len().max(1);
        let padded = if batching.bucket {
            bucket_len(longest)
        } else {
            longest
        };
        let fit = (batching.tokens / padded).clamp(1, batching.rows.max(1));
        let end = (start + fit).min(examples.len());
        out.push(&examples[start..end]);
        start = end;
    }
    out
}

/// The eval loss of `model` (with `adapter` when given): logits only at supervised positions,
/// a chunk of rows at a time; per-row means summed per batch, then over batches in order, on the
/// host in f64. On the CPU up to [`EVAL_BATCHES_IN_FLIGHT`] batches run on the host threads side
/// by side ([`host_pool::for_each_on`]: each thread runs whole forward passes, so Burn's
/// single-threaded operations run in parallel too); the sums are the same in any schedule.
pub fn eval_loss<B: Backend>(
    model: &Qwen2<B>,
    adapter: Option<&Adapter<B>>,
    set: &EvalSet,
    batching: EvalBatching,
) -> Result<f64, EngineError> {
    if set.examples.is_empty() {
        return Err(EngineError::Data(
            "the eval set has no row with a supervised token".into(),
        ));
    }
    let context = adapter.map(|a| LoraContext::new(a, None));
    let chunks = batches(&set.examples, batching);
    let mut sums = vec![0f64; chunks.len()];
    let run = |(chunk, sum): (&[Example], &mut f64)| {
        *sum = batch_loss_sum(model, context.as_ref(), chunk, batching.bucket);
    };
    let work: Vec<(&[Example], &mut f64)> = chunks.into_iter().zip(sums.iter_mut()).collect();
    if is_host::<B>() {
        host_pool::for_each_on(work, EVAL_BATCHES_IN_FLIGHT, run);
    } else {
        work.into_iter().for_each(run);
    }
    let loss = sums.iter().sum::<f64>() / set.examples.len() as f64;
    if !loss.is_finite() {
        return Err(EngineError::Diverged(format!("eval loss is {loss}")));
    }
    Ok(loss)
}

/// The sum over the rows of `chunk` (one forward pass) of each row's mean token loss, in f64.
fn batch_loss_sum<B: Backend>(
    model: &Qwen2<B>,
    context: Option<&LoraContext<'_, B>>,
    chunk: &[Example],
    bucket: bool,
) -> f64 {
    let device = model.embed_tokens.device();
    let refs: Vec<&Example> = chunk.iter().collect();
    let batch = Batch::new(&refs, bucket);
    let last = model.last_hidden(batch.ids_tensor(&device), context);
    let hidden = model
        .norm
        .forward(last.select(0, batch.positions_tensor(&device)));
    let losses = token_losses(model, hidden, batch.targets_tensor(&device), LOGIT_CHUNK);
    let losses: Vec<f32> = losses
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default();
    let mut total = 0.0;
    let mut offset = 0;
    for tokens in &batch.row_tokens {
        let sum: f64 = losses[offset..offset + tokens]
            .iter()
            .map(|l| f64::from(*l))
            .sum();
        total += sum / *tokens as f64;
        offset += tokens;
    }
    total
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
        let batching = |rows, tokens| EvalBatching {
            rows,
            tokens,
            bucket: false,
        };
        let sizes: Vec<usize> = batches(&examples, batching(8, 8192))
            .iter()
            .map(|b| b.len())
            .collect();
        // 5000 → 1 row (8192/5000); 3000 → 2 rows; 100 → 3 rows (row cap 8 > remaining).
        assert_eq!(sizes, vec![1, 2, 3]);
        let sizes: Vec<usize> = batches(&examples, batching(2, 1 << 30))
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![2, 2, 2]);
        assert!(batches(&[], batching(8, 8192)).is_empty());
    }

    #[test]
    fn batches_on_the_host_threads_give_the_sequential_sum() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::tiny::write_tiny_model(dir.path(), 3).expect("tiny model");
        let model = crate::checkpoint::load_model::<crate::backend::CpuBackend>(
            dir.path(),
            &Default::default(),
        )
        .expect("loads")
        .model;
        let examples: Vec<Example> = (0..27)
            .map(|i| {
                let len = 6 + (i * 7) % 41;
                Example {
                    ids: (0..len).map(|t| ((t * 31 + i * 17) % 600) as u32).collect(),
                    mask: (0..len).map(|t| u8::from(t >= len / 3)).collect(),
                }
            })
            .collect();
        let set = EvalSet::from_examples(examples, 0);
        let batching = EvalBatching {
            rows: 4,
            ..EvalBatching::default()
        };
        let got = eval_loss(&model, None, &set, batching).expect("eval");
        let sums: Vec<f64> = batches(&set.examples, batching)
            .into_iter()
            .map(|chunk| batch_loss_sum(&model, None, chunk, false))
            .collect();
        let want = sums.iter().sum::<f64>() / set.rows() as f64;
        assert_eq!(got, want);
    }
}
