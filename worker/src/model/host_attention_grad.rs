//! The gradient of [`super::host_attention::attend`] on the host, for the CPU backend's training
//! step (docs/engine.md, "CPU kernels"): the same formulas as [`super::causal::backward`], with
//! the probabilities of each query recomputed from its scores, in the projections' layout.
//!
//! For query `i` of head `h` (KV head `kv`): `P = softmax(q·kᵀ/√d)` over keys `0..=i`,
//! `dV[j] += P[j]·dO[i]`, `dP[j] = dO[i]·v[j]`, `dS = P ⊙ (dP − Σ P ⊙ dP)`,
//! `dQ[i] = Σ dS[j]·k[j]/√d`, `dK[j] += dS[j]·q[i]/√d`. A (row, KV head) pair owns its keys'
//! and values' gradients and its query heads' gradients, so pairs run on the host threads side
//! by side without sharing a sum.

use super::host_attention::{transpose_keys, Dims};
use super::{host_math, host_pool};

/// The gradients of one (row, KV head) pair: queries `[group, seq, d]`, keys and values
/// `[seq, d]`.
struct PairGrads {
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

/// `(dq, dk, dv)` of causal attention for queries `q` `[batch, seq, heads, d]`, keys and values
/// `[batch, seq, kv_heads, d]` and the output's gradient `d_out` `[batch, seq, heads, d]`, in
/// the same layouts.
///
/// # Panics
/// When a slice's length does not match `dims` (a bug in the caller, never input data).
pub fn attend_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d_out: &[f32],
    dims: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    dims.check(q, Some(d_out), k, v);
    let Dims {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim: d,
    } = dims;
    let group = heads / kv_heads;
    let keys_t = transpose_keys(k, dims);
    let values_t = transpose_keys(v, dims);
    let pairs: Vec<(usize, usize)> = (0..batch)
        .flat_map(|b| (0..kv_heads).map(move |h| (b, h)))
        .collect();
    let mut grads: Vec<Option<PairGrads>> = (0..pairs.len()).map(|_| None).collect();
    let work: Vec<((usize, usize), &mut Option<PairGrads>)> =
        pairs.into_iter().zip(grads.iter_mut()).collect();
    let inputs = Inputs {
        dims,
        q,
        k,
        d_out,
        keys_t: &keys_t,
        values_t: &values_t,
        scale: (1.0 / (d as f64).sqrt()) as f32,
    };
    host_pool::for_each(work, |((b, kv), slot)| {
        *slot = Some(pair_grads(&inputs, b, kv))
    });

    let mut dq = vec![0f32; q.len()];
    let mut dk = vec![0f32; k.len()];
    let mut dv = vec![0f32; v.len()];
    for (index, pair) in grads.into_iter().enumerate() {
        let Some(pair) = pair else {
            unreachable!("every pair was worked on")
        };
        let (b, kv) = (index / kv_heads, index % kv_heads);
        for j in 0..seq {
            let at = ((b * seq + j) * kv_heads + kv) * d;
            dk[at..at + d].copy_from_slice(&pair.dk[j * d..(j + 1) * d]);
            dv[at..at + d].copy_from_slice(&pair.dv[j * d..(j + 1) * d]);
            for g in 0..group {
                let at = ((b * seq + j) * heads + kv * group + g) * d;
                let from = (g * seq + j) * d;
                dq[at..at + d].copy_from_slice(&pair.dq[from..from + d]);
            }
        }
    }
    (dq, dk, dv)
}

/// The inputs every pair reads.
struct Inputs<'a> {
    dims: Dims,
    q: &'a [f32],
    k: &'a [f32],
    d_out: &'a [f32],
    /// `[batch, kv_heads, d, seq]`.
    keys_t: &'a [f32],
    /// `[batch, kv_heads, d, seq]`.
    values_t: &'a [f32],
    scale: f32,
}

/// The gradients of the keys and values of KV head `kv` of row `b`, and of its query heads.
fn pair_grads(inputs: &Inputs<'_>, b: usize, kv: usize) -> PairGrads {
    let Dims {
        seq,
        heads,
        kv_heads,
        head_dim: d,
        ..
    } = inputs.dims;
    let group = heads / kv_heads;
    let block = (b * kv_heads + kv) * d * seq;
    let keys_t = &inputs.keys_t[block..block + d * seq];
    let values_t = &inputs.values_t[block..block + d * seq];
    let mut grads = PairGrads {
        dq: vec![0f32; group * seq * d],
        dk: vec![0f32; seq * d],
        dv: vec![0f32; seq * d],
    };
    let mut probs = vec![0f32; seq];
    let mut dp = vec![0f32; seq];
    for g in 0..group {
        let h = kv * group + g;
        for i in 0..seq {
            let keys = i + 1;
            let at = ((b * seq + i) * heads + h) * d;
            let query = &inputs.q[at..at + d];
            let d_out = &inputs.d_out[at..at + d];
            let probs = &mut probs[..keys];
            let dp = &mut dp[..keys];
            probs.fill(0.0);
            dp.fill(0.0);
            for c in 0..d {
                let column = &keys_t[c * seq..c * seq + keys];
                let (qc, oc) = (query[c], d_out[c]);
                for (p, k) in probs.iter_mut().zip(column) {
                    *p += qc * k;
                }
                let column = &values_t[c * seq..c * seq + keys];
                for (p, v) in dp.iter_mut().zip(column) {
                    *p += oc * v;
                }
            }
            probs.iter_mut().for_each(|s| *s *= inputs.scale);
            let max = host_math::max(probs);
            probs.iter_mut().for_each(|s| *s = host_math::exp(*s - max));
            let inv = 1.0 / host_math::sum(probs);
            probs.iter_mut().for_each(|p| *p *= inv);
            let row_dot: f32 = probs.iter().zip(dp.iter()).map(|(p, dp_j)| p * dp_j).sum();
            let dq = &mut grads.dq[(g * seq + i) * d..(g * seq + i + 1) * d];
            for (j, (p, dp_j)) in probs.iter().zip(dp.iter()).enumerate() {
                let ds = p * (dp_j - row_dot);
                let key = &inputs.k[((b * seq + j) * kv_heads + kv) * d..][..d];
                for (q, k) in dq.iter_mut().zip(key) {
                    *q += ds * k;
                }
                let ds = ds * inputs.scale;
                for (dk, q) in grads.dk[j * d..(j + 1) * d].iter_mut().zip(query) {
                    *dk += ds * q;
                }
                for (dv, o) in grads.dv[j * d..(j + 1) * d].iter_mut().zip(d_out) {
                    *dv += p * o;
                }
            }
            dq.iter_mut().for_each(|q| *q *= inputs.scale);
        }
    }
    grads
}
