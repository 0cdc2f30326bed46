//! Padding examples into a micro-batch: right padding to the longest row (or to its length
//! bucket), and the list of positions whose prediction is in the loss.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::chat::Example;

/// The padded length of a batch whose longest row has `len` tokens, when lengths are bucketed:
/// a multiple of `max(64, next_power_of_two(len) / 4)`, so 64, 128, 192, 256, 384, 512, 768,
/// 1024, 1536, 2048, 3072, 4096, …: fewer than 64 or fewer than len/2 padded positions, and
/// few distinct shapes for the GPU's kernel autotuner.
pub fn bucket_len(len: usize) -> usize {
    let step = (len.max(1).next_power_of_two() / 4).max(64);
    len.max(1).div_ceil(step) * step
}

/// Host-side tensors of one micro-batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Rows in the batch.
    pub rows: usize,
    /// Padded length.
    pub seq: usize,
    /// `[rows·seq]` input ids (padding id 0).
    pub ids: Vec<i64>,
    /// Flat position `row·seq + t` of every prediction in the loss (position t predicts token
    /// t+1), in row order.
    pub positions: Vec<i64>,
    /// The token each of those positions must predict.
    pub targets: Vec<i64>,
    /// Supervised targets per row.
    pub row_tokens: Vec<usize>,
}

impl Batch {
    /// Pads `examples` on the right to the longest row, or to its [`bucket_len`] when `bucket`.
    /// Position t predicts token t+1, which counts when its mask is 1.
    pub fn new(examples: &[&Example], bucket: bool) -> Self {
        let rows = examples.len();
        let longest = examples.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let seq = if bucket { bucket_len(longest) } else { longest };
        let mut ids = vec![0i64; rows * seq];
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut row_tokens = Vec::with_capacity(rows);
        for (r, example) in examples.iter().enumerate() {
            let base = r * seq;
            for (t, id) in example.ids.iter().enumerate() {
                ids[base + t] = i64::from(*id);
            }
            let mut count = 0;
            for t in 0..example.len().saturating_sub(1) {
                if example.mask[t + 1] == 1 {
                    positions.push((base + t) as i64);
                    targets.push(i64::from(example.ids[t + 1]));
                    count += 1;
                }
            }
            row_tokens.push(count);
        }
        Self {
            rows,
            seq,
            ids,
            positions,
            targets,
            row_tokens,
        }
    }

    /// Supervised targets in the whole batch.
    pub fn supervised(&self) -> usize {
        self.positions.len()
    }

    /// `[rows, seq]` ids on `device`.
    pub fn ids_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Tensor::from_data(
            TensorData::new(self.ids.clone(), [self.rows, self.seq]),
            device,
        )
    }

    /// `[supervised]` flat positions on `device`.
    pub fn positions_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        Tensor::from_data(
            TensorData::new(self.positions.clone(), [self.positions.len()]),
            device,
        )
    }

    /// `[supervised, 1]` target ids on `device`.
    pub fn targets_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Tensor::from_data(
            TensorData::new(self.targets.clone(), [self.targets.len(), 1]),
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_shifted_and_only_supervised_positions_are_listed() {
        let a = Example {
            ids: vec![5, 6, 7, 8],
            mask: vec![0, 0, 1, 1],
        };
        let b = Example {
            ids: vec![9, 10],
            mask: vec![0, 1],
        };
        let batch = Batch::new(&[&a, &b], false);
        assert_eq!((batch.rows, batch.seq), (2, 4));
        assert_eq!(batch.ids, vec![5, 6, 7, 8, 9, 10, 0, 0]);
        // position t predicts t+1; it counts when the mask of t+1 is 1
        assert_eq!(batch.positions, vec![1, 2, 4]);
        assert_eq!(batch.targets, vec![7, 8, 10]);
        assert_eq!(batch.row_tokens, vec![2, 1]);
        assert_eq!(a.supervised(), 2);

        let bucketed = Batch::new(&[&a, &b], true);
        assert_eq!(bucketed.seq, 64);
        assert_eq!(bucketed.positions, vec![1, 2, 64]);
        assert_eq!(bucketed.targets, batch.targets);
    }

    #[test]
    fn buckets_pad_less_than_half_and_stay_few() {
        let mut seen = std::collections::BTreeSet::new();
        for len in 1..=4096 {
            let padded = bucket_len(len);
            assert!(padded >= len);
            assert!(
                padded - len < 64 || 2 * (padded - len) < len,
                "{len} → {padded}"
            );
            seen.insert(padded);
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            vec![64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096]
        );
    }
}
