//! Padding examples into a micro-batch: right padding to the longest row, padded positions and
//! prompt tokens out of the loss.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::chat::Example;

/// Host-side tensors of one micro-batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Rows in the batch.
    pub rows: usize,
    /// Padded length.
    pub seq: usize,
    /// `[rows·seq]` input ids (padding id 0).
    pub ids: Vec<i64>,
    /// `[rows·seq]` the id each position must predict (the next token; 0 where none).
    pub targets: Vec<i64>,
    /// `[rows·seq]` 1.0 where the prediction is in the loss.
    pub weights: Vec<f32>,
    /// Supervised targets per row.
    pub row_tokens: Vec<usize>,
}

impl Batch {
    /// Pads `examples` on the right. Position t predicts token t+1, which counts when its mask is 1.
    pub fn new(examples: &[&Example]) -> Self {
        let rows = examples.len();
        let seq = examples.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; rows * seq];
        let mut targets = vec![0i64; rows * seq];
        let mut weights = vec![0f32; rows * seq];
        let mut row_tokens = Vec::with_capacity(rows);
        for (r, example) in examples.iter().enumerate() {
            let base = r * seq;
            for (t, id) in example.ids.iter().enumerate() {
                ids[base + t] = i64::from(*id);
            }
            let mut count = 0;
            for t in 0..example.len().saturating_sub(1) {
                targets[base + t] = i64::from(example.ids[t + 1]);
                if example.mask[t + 1] == 1 {
                    weights[base + t] = 1.0;
                    count += 1;
                }
            }
            row_tokens.push(count);
        }
        Self {
            rows,
            seq,
            ids,
            targets,
            weights,
            row_tokens,
        }
    }

    /// Supervised targets in the whole batch.
    pub fn supervised(&self) -> usize {
        self.row_tokens.iter().sum()
    }

    /// `[rows, seq]` ids on `device`.
    pub fn ids_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Tensor::from_data(
            TensorData::new(self.ids.clone(), [self.rows, self.seq]),
            device,
        )
    }

    /// Per-position cross-entropy `[rows, seq]` of `logits` `[rows, seq, vocab]`, zero where the
    /// position is not in the loss.
    pub fn token_losses<B: Backend>(&self, logits: Tensor<B, 3>) -> Tensor<B, 2> {
        let device = logits.device();
        let [rows, seq, vocab] = logits.dims();
        let log_probs =
            burn::tensor::activation::log_softmax(logits.reshape([rows * seq, vocab]), 1);
        let targets = Tensor::<B, 2, Int>::from_data(
            TensorData::new(self.targets.clone(), [rows * seq, 1]),
            &device,
        );
        let weights = Tensor::<B, 2>::from_data(
            TensorData::new(self.weights.clone(), [rows * seq, 1]),
            &device,
        );
        (log_probs.gather(1, targets).neg() * weights).reshape([rows, seq])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_shifted_and_padding_is_out_of_the_loss() {
        let a = Example {
            ids: vec![5, 6, 7, 8],
            mask: vec![0, 0, 1, 1],
        };
        let b = Example {
            ids: vec![9, 10],
            mask: vec![0, 1],
        };
        let batch = Batch::new(&[&a, &b]);
        assert_eq!((batch.rows, batch.seq), (2, 4));
        assert_eq!(batch.ids, vec![5, 6, 7, 8, 9, 10, 0, 0]);
        // position t predicts t+1; the weight is the mask of t+1
        assert_eq!(batch.targets, vec![6, 7, 8, 0, 10, 0, 0, 0]);
        assert_eq!(batch.weights, vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(batch.row_tokens, vec![2, 1]);
        assert_eq!(a.supervised(), 2);
    }
}
