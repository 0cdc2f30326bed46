//! LoRA dropout masks that are a pure function of (job seed, step, micro-batch, layer, target,
//! batch row, position).
//!
//! Burn's random ops draw from one process-wide generator, so two engines in one process (one
//! per GPU) would interleave their draws, and a recomputed layer would not see the masks of its
//! first pass. Here a mask never touches that generator: each job draws a table of
//! [`TABLE_LEN`] Bernoulli(1 − p) values (stored as 0 or 1/(1 − p), inverted dropout) once, and
//! the mask of one projection is `table[(r[row] + c[col]) mod TABLE_LEN]`, where the row offsets
//! `r` (one per batch row and position) and the column offsets `c` come from a small host
//! generator seeded with the mask's coordinates. The masks of a layer recomputed during the
//! backward pass are therefore the masks of its forward pass, on every device; and a position's
//! mask does not depend on how far its row is padded.

use burn::tensor::{backend::Backend, ElementConversion, Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Entries of the mask table (a power of two).
pub const TABLE_LEN: usize = 1 << 20;

/// The dropout of one job, bound to one micro-batch by [`Dropout::for_micro_batch`].
#[derive(Debug, Clone)]
pub struct Dropout<B: Backend> {
    table: Tensor<B, 1>,
    seed: u64,
}

/// SplitMix64 over a sequence of words: a well-mixed seed for the mask coordinates.
fn mix(words: &[u64]) -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for word in words {
        state ^= *word;
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state = z ^ (z >> 31);
    }
    state
}

impl<B: Backend> Dropout<B> {
    /// The dropout of a job with probability `p` and `seed`; `None` when `p` is 0.
    pub fn new(p: f64, seed: u64, device: &B::Device) -> Option<Self> {
        if p <= 0.0 {
            return None;
        }
        let keep = 1.0 - p;
        let scale = (1.0 / keep) as f32;
        let mut rng = StdRng::seed_from_u64(mix(&[seed, 0xD80F]));
        let values: Vec<f32> = (0..TABLE_LEN)
            .map(|_| {
                if rng.random::<f64>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        Some(Self {
            table: Tensor::from_data(TensorData::new(values, [TABLE_LEN]), device),
            seed,
        })
    }

    /// The masks of micro-batch `micro` of optimizer step `step`.
    pub fn for_micro_batch(&self, step: usize, micro: usize) -> Self {
        Self {
            table: self.table.clone(),
            seed: mix(&[self.seed, step as u64, micro as u64]),
        }
    }

    /// The same masks on another backend that wraps this one (the table is shared, not copied).
    pub fn map<C: Backend>(&self, f: impl Fn(Tensor<B, 1>) -> Tensor<C, 1>) -> Dropout<C> {
        Dropout {
            table: f(self.table.clone()),
            seed: self.seed,
        }
    }

    /// The mask `[batch·seq, cols]` (0 or 1/(1 − p)) of projection `target` in `layer`, for a
    /// micro-batch of `batch` rows padded to `seq` positions.
    pub fn mask(
        &self,
        layer: usize,
        target: usize,
        batch: usize,
        seq: usize,
        cols: usize,
    ) -> Tensor<B, 2> {
        let device = self.table.device();
        let span = TABLE_LEN as i64;
        let mut rows = Vec::with_capacity(batch * seq);
        for b in 0..batch {
            let mut rng =
                StdRng::seed_from_u64(mix(&[self.seed, layer as u64, target as u64, b as u64]));
            rows.extend((0..seq).map(|_| rng.random_range(0..span)));
        }
        let mut rng =
            StdRng::seed_from_u64(mix(&[self.seed, layer as u64, target as u64, u64::MAX]));
        let columns: Vec<i64> = (0..cols).map(|_| rng.random_range(0..span)).collect();
        let rows = Tensor::<B, 2, Int>::from_data(TensorData::new(rows, [batch * seq, 1]), &device);
        let columns = Tensor::<B, 2, Int>::from_data(TensorData::new(columns, [1, cols]), &device);
        let index = (rows + columns)
            .bitwise_and_scalar((span - 1).elem())
            .reshape([batch * seq * cols]);
        self.table
            .clone()
            .select(0, index)
            .reshape([batch * seq, cols])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend as B;

    fn values(t: Tensor<B, 2>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().expect("f32")
    }

    #[test]
    fn masks_keep_about_one_minus_p_and_scale_the_kept() {
        let device = Default::default();
        let dropout = Dropout::<B>::new(0.1, 42, &device).expect("p > 0");
        let mask = values(dropout.for_micro_batch(0, 0).mask(3, 2, 2, 512, 64));
        let kept = mask.iter().filter(|v| **v != 0.0).count() as f64 / mask.len() as f64;
        assert!((kept - 0.9).abs() < 0.01, "kept fraction {kept}");
        assert!(mask
            .iter()
            .all(|v| *v == 0.0 || (*v - 1.0 / 0.9).abs() < 1e-6));
        assert!(Dropout::<B>::new(0.0, 42, &device).is_none());
    }

    #[test]
    fn masks_are_a_function_of_their_coordinates_only() {
        let device = Default::default();
        let dropout = Dropout::<B>::new(0.1, 7, &device).expect("p > 0");
        let micro = dropout.for_micro_batch(3, 1);
        // the same coordinates give the same mask, drawn twice
        assert_eq!(
            values(micro.mask(1, 4, 2, 9, 16)),
            values(micro.mask(1, 4, 2, 9, 16))
        );
        // padding a row further does not change the mask of its real positions
        let short = values(micro.mask(1, 4, 2, 9, 16));
        let padded = values(micro.mask(1, 4, 2, 12, 16));
        for row in 0..2 {
            assert_eq!(
                short[row * 9 * 16..(row * 9 + 9) * 16],
                padded[row * 12 * 16..(row * 12 + 9) * 16]
            );
        }
        // another layer, target, step or micro-batch draws another mask
        assert_ne!(short, values(micro.mask(2, 4, 2, 9, 16)));
        assert_ne!(short, values(micro.mask(1, 5, 2, 9, 16)));
        assert_ne!(
            short,
            values(dropout.for_micro_batch(3, 2).mask(1, 4, 2, 9, 16))
        );
        assert_ne!(
            short,
            values(dropout.for_micro_batch(4, 1).mask(1, 4, 2, 9, 16))
        );
    }
}
