//! Causal grouped-query attention computed on the host, over plain `f32` slices: the kernel the
//! CPU backend runs for [`super::AttentionKernel::Native`] (docs/engine.md, "Attention").
//!
//! It reads the layout the projections produce, queries `[batch, seq, heads, d]` and keys and
//! values `[batch, seq, kv_heads, d]`, and writes its output in the query layout, which is the
//! `[batch·seq, hidden]` input of the output projection: no head-major copy, no repeated K/V
//! heads. Query `i` multiplies only the keys `0..=i`, the softmax runs once per row, and the
//! work is split over the host's cores by tiles of query positions.

use std::cmp::Reverse;

use super::{host_math, host_pool};

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Rows of the micro-batch.
    pub batch: usize,
    /// Positions per row.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` is a multiple of it).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl Dims {
    /// The sizes of queries `[batch, heads, seq, head_dim]` over `kv_heads` key/value heads.
    pub fn of([batch, heads, seq, head_dim]: [usize; 4], kv_heads: usize) -> Self {
        Self {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim,
        }
    }

    /// Checks that `q` (and `q_like`, e.g. an output gradient) hold `[batch, seq, heads, d]`
    /// values and `k`, `v` `[batch, seq, kv_heads, d]`, with `heads` a multiple of `kv_heads`.
    ///
    /// # Panics
    /// When they do not (a bug in the caller, never input data).
    pub fn check(&self, q: &[f32], q_like: Option<&[f32]>, k: &[f32], v: &[f32]) {
        let Dims {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim: d,
        } = *self;
        assert!(
            kv_heads > 0 && heads.is_multiple_of(kv_heads),
            "{heads} query heads over {kv_heads} KV heads"
        );
        assert_eq!(q.len(), batch * seq * heads * d, "query length");
        if let Some(q_like) = q_like {
            assert_eq!(q_like.len(), q.len(), "output gradient length");
        }
        assert_eq!(k.len(), batch * seq * kv_heads * d, "key length");
        assert_eq!(v.len(), k.len(), "value length");
    }
}

/// Query positions per unit of work.
const TILE: usize = 16;

/// Multiply-adds below which a call stays on the calling thread (a thread costs more).
const PARALLEL_WORK: usize = 1 << 18;

/// Query positions `start..start + n` of batch row `row`, and their slice of the output.
struct Tile<'a> {
    row: usize,
    start: usize,
    out: &'a mut [f32],
}

impl Tile<'_> {
    /// Positions in the tile.
    fn len(&self, width: usize) -> usize {
        self.out.len() / width
    }

    /// Query·key pairs of the tile (position `i` sees `i + 1` keys).
    fn cost(&self, width: usize) -> usize {
        let n = self.len(width);
        n * self.start + n * (n + 1) / 2
    }
}

/// The inputs every tile reads.
struct Inputs<'a> {
    dims: Dims,
    q: &'a [f32],
    /// Keys transposed per (row, KV head): `[batch, kv_heads, d, seq]`.
    keys_t: Vec<f32>,
    v: &'a [f32],
    scale: f32,
}

/// `softmax(q·kᵀ/√d + causal)·v` for queries `q` `[batch, seq, heads, d]` and keys and values
/// `[batch, seq, kv_heads, d]`; query head `h` reads KV head `h / (heads / kv_heads)`. Returns
/// `[batch, seq, heads, d]`.
///
/// # Panics
/// When a slice's length does not match `dims` (a bug in the caller, never input data).
pub fn attend(q: &[f32], k: &[f32], v: &[f32], dims: Dims) -> Vec<f32> {
    dims.check(q, None, k, v);
    let Dims {
        batch,
        seq,
        heads,
        kv_heads: _,
        head_dim: d,
    } = dims;
    let width = heads * d;
    let mut out = vec![0f32; q.len()];
    if out.is_empty() {
        return out;
    }
    let inputs = Inputs {
        dims,
        q,
        keys_t: transpose_keys(k, dims),
        v,
        scale: (1.0 / (d as f64).sqrt()) as f32,
    };
    let mut tiles: Vec<Tile<'_>> = Vec::new();
    for (row, positions) in out.chunks_mut(seq * width).enumerate() {
        for (index, out) in positions.chunks_mut(TILE * width).enumerate() {
            tiles.push(Tile {
                row,
                start: index * TILE,
                out,
            });
        }
    }
    let multiply_adds = batch * heads * d * seq * (seq + 1);
    let threads = if multiply_adds < PARALLEL_WORK {
        1
    } else {
        host_pool::threads().min(tiles.len())
    };
    if threads <= 1 {
        tiles.into_iter().for_each(|t| run_tile(&inputs, t));
        return out;
    }
    // costliest first, each to the next free thread: a thread the host is slow to run (another
    // process on its core) takes fewer
    tiles.sort_by_key(|t| Reverse(t.cost(width)));
    host_pool::for_each(tiles, |tile| run_tile(&inputs, tile));
    out
}

/// `k` `[batch, seq, kv, d]` → `[batch, kv, d, seq]`, so the scores of one query against a run
/// of keys are a sum of `d` contiguous multiply-adds.
pub(super) fn transpose_keys(k: &[f32], dims: Dims) -> Vec<f32> {
    let Dims {
        batch,
        seq,
        kv_heads,
        head_dim: d,
        ..
    } = dims;
    let mut out = vec![0f32; k.len()];
    for b in 0..batch {
        for j in 0..seq {
            for h in 0..kv_heads {
                let src = &k[((b * seq + j) * kv_heads + h) * d..][..d];
                let base = (b * kv_heads + h) * d * seq + j;
                for (c, value) in src.iter().enumerate() {
                    out[base + c * seq] = *value;
                }
            }
        }
    }
    out
}

/// Every query head of every position of one tile.
fn run_tile(inputs: &Inputs<'_>, tile: Tile<'_>) {
    let Dims {
        seq,
        heads,
        kv_heads,
        head_dim: d,
        ..
    } = inputs.dims;
    let group = heads / kv_heads;
    let width = heads * d;
    let row = tile.row;
    let mut scores = vec![0f32; tile.start + tile.len(width)];
    for (offset, out) in tile.out.chunks_mut(width).enumerate() {
        let i = tile.start + offset;
        let keys = i + 1;
        for (h, out) in out.chunks_mut(d).enumerate() {
            let kv = h / group;
            let query = &inputs.q[((row * seq + i) * heads + h) * d..][..d];
            let keys_t = &inputs.keys_t[(row * kv_heads + kv) * d * seq..][..d * seq];
            let scores = &mut scores[..keys];
            scores.fill(0.0);
            for (c, q) in query.iter().enumerate() {
                let column = &keys_t[c * seq..c * seq + keys];
                for (s, k) in scores.iter_mut().zip(column) {
                    *s += q * k;
                }
            }
            scores.iter_mut().for_each(|s| *s *= inputs.scale);
            let max = host_math::max(scores);
            scores
                .iter_mut()
                .for_each(|s| *s = host_math::exp(*s - max));
            let sum = host_math::sum(scores);
            for (j, p) in scores.iter().enumerate() {
                let value = &inputs.v[((row * seq + j) * kv_heads + kv) * d..][..d];
                for (o, v) in out.iter_mut().zip(value) {
                    *o += p * v;
                }
            }
            let inv = 1.0 / sum;
            out.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, one query at a time, in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], dims: Dims) -> Vec<f32> {
        let Dims {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim: d,
        } = dims;
        let group = heads / kv_heads;
        let mut out = vec![0f32; q.len()];
        for b in 0..batch {
            for i in 0..seq {
                for h in 0..heads {
                    let kv = h / group;
                    let qi = &q[((b * seq + i) * heads + h) * d..][..d];
                    let scores: Vec<f64> = (0..=i)
                        .map(|j| {
                            let kj = &k[((b * seq + j) * kv_heads + kv) * d..][..d];
                            let dot: f64 = qi.iter().zip(kj).map(|(a, b)| f64::from(a * b)).sum();
                            dot / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = exps.iter().sum();
                    for c in 0..d {
                        let value: f64 = exps
                            .iter()
                            .enumerate()
                            .map(|(j, p)| p * f64::from(v[((b * seq + j) * kv_heads + kv) * d + c]))
                            .sum();
                        out[((b * seq + i) * heads + h) * d + c] = (value / sum) as f32;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // a small deterministic generator: values in [-2, 2)
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 4.0 - 2.0
            })
            .collect()
    }

    fn check(dims: Dims) {
        let Dims {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim: d,
        } = dims;
        let q = values(batch * seq * heads * d, 1);
        let k = values(batch * seq * kv_heads * d, 2);
        let v = values(batch * seq * kv_heads * d, 3);
        let got = attend(&q, &k, &v, dims);
        let want = reference(&q, &k, &v, dims);
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{dims:?}: {diff}");
    }

    #[test]
    fn small_calls_match_the_definition() {
        for (batch, seq, heads, kv_heads, head_dim) in [
            (1, 1, 1, 1, 4),
            (2, 5, 4, 2, 8),
            (3, 17, 6, 2, 8),
            (1, 33, 2, 2, 16),
        ] {
            check(Dims {
                batch,
                seq,
                heads,
                kv_heads,
                head_dim,
            });
        }
    }

    #[test]
    fn calls_split_over_threads_match_the_definition() {
        // 2·8·16·200·201 multiply-adds: above the threshold, many tiles of unequal cost
        let dims = Dims {
            batch: 2,
            seq: 200,
            heads: 8,
            kv_heads: 2,
            head_dim: 16,
        };
        assert!(
            dims.batch * dims.heads * dims.head_dim * dims.seq * (dims.seq + 1) >= PARALLEL_WORK
        );
        check(dims);
    }

    #[test]
    fn an_empty_call_returns_nothing() {
        let dims = Dims {
            batch: 0,
            seq: 4,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
        };
        assert!(attend(&[], &[], &[], dims).is_empty());
    }
}
