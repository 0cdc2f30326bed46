//! Causal grouped-query attention: the forward pass, and a backward pass that recomputes the
//! scores one chunk of queries at a time, so training never holds a `[seq, seq]` score tensor.
//!
//! Shapes: queries `[batch, heads, seq, d]`, keys and values `[batch, kv_heads, seq, d]`; query
//! head `h` reads key/value head `h / group` (`group = heads / kv_heads`, as transformers'
//! `repeat_kv`). The chunked paths lay the `group` query heads of one KV head side by side,
//! `[batch, kv_heads, group·chunk, d]`, so each chunk multiplies every KV head once without
//! copying it. A query chunk `[i0, i1)` only multiplies the keys `[0, i1)`; the causal mask of a
//! chunk is built on the device from two index ranges.

use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, DType, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::host::{self, is_host};
use super::host_attention::{self, Dims};
use super::host_attention_grad;
use crate::precision::{cast_to, matmul_f32, to_f32, Precision};

/// How the forward pass of attention runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKernel {
    /// The backend's fused kernel. On the CPU backend in f32: [`host_attention`], which reads
    /// the projections' layout, shares K/V heads without repeating them and skips masked keys.
    /// Elsewhere (CUDA, wgpu, bf16 on the CPU): Burn's `attention` with `is_causal`, flash
    /// attention on CUDA (K/V heads are repeated for it, as it needs equal head counts).
    Native,
    /// Query chunks of plain tensor ops (any backend; what the plain training path
    /// differentiates).
    Chunked,
}

/// Query positions per chunk of the chunked paths.
pub const QUERY_CHUNK: usize = 512;

fn options() -> AttentionModuleOptions {
    AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: true,
    }
}

/// `[b, heads, s, d]` → `[b, kv, group, s, d]` (query head `kv·group + g`).
fn grouped<B: Backend>(x: Tensor<B, 4>, kv_heads: usize) -> Tensor<B, 5> {
    let [b, heads, s, d] = x.dims();
    x.reshape([b, kv_heads, heads / kv_heads, s, d])
}

/// Rows `[i0, i1)` of every query head of a group: `[b, kv, group·(i1−i0), d]`.
fn rows<B: Backend>(x: &Tensor<B, 5>, i0: usize, i1: usize) -> Tensor<B, 4> {
    let [b, kv, group, _, d] = x.dims();
    x.clone()
        .slice([0..b, 0..kv, 0..group, i0..i1, 0..d])
        .reshape([b, kv, group * (i1 - i0), d])
}

/// The first `i1` positions of keys or values `[b, kv, s, d]`.
fn prefix<B: Backend>(x: &Tensor<B, 4>, i1: usize) -> Tensor<B, 4> {
    let [b, kv, _, d] = x.dims();
    x.clone().slice([0..b, 0..kv, 0..i1, 0..d])
}

/// Softmax probabilities `[b, kv, group·c, i1]` (f32) of query rows `[i0, i1)` against keys
/// `[0, i1)`: `softmax(q·kᵀ/√d + causal)`.
fn probabilities<B: Backend>(
    q_rows: Tensor<B, 4>,
    keys: Tensor<B, 4>,
    group: usize,
    i0: usize,
    precision: Precision,
) -> Tensor<B, 4> {
    let [b, kv, rows, d] = q_rows.dims();
    let i1 = keys.dims()[2];
    let c = rows / group;
    let device = q_rows.device();
    let scores =
        matmul_f32(q_rows, keys.swap_dims(2, 3), precision).mul_scalar(1.0 / (d as f64).sqrt());
    // key j is hidden from query i0 + r when j > i0 + r
    let query_pos = Tensor::<B, 1, Int>::arange(i0 as i64..i1 as i64, &device).reshape([c, 1]);
    let key_pos = Tensor::<B, 1, Int>::arange(0..i1 as i64, &device).reshape([1, i1]);
    let hidden = key_pos.greater(query_pos);
    let mask = Tensor::<B, 2>::zeros([c, i1], &device)
        .mask_fill(hidden, f32::NEG_INFINITY)
        .reshape([1, 1, 1, c, i1]);
    let scores = scores.reshape([b, kv, group, c, i1]) + mask;
    softmax(scores.reshape([b, kv, rows, i1]), 3)
}

/// Causal attention of `q` `[b, heads, s, d]` over `k`, `v` `[b, kv_heads, s, d]`, all f32;
/// returns f32 `[b, heads, s, d]`. The products run in `precision`, the softmax in f32.
pub fn forward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    kernel: AttentionKernel,
    precision: Precision,
) -> Tensor<B, 4> {
    match kernel {
        AttentionKernel::Native if on_host(&[&q, &k, &v], precision) => host(q, k, v),
        AttentionKernel::Native => native(q, k, v, precision),
        AttentionKernel::Chunked => chunked(q, k, v, precision, QUERY_CHUNK),
    }
}

/// Whether the native kernel of these tensors is [`host_attention`]: the CPU backend (not
/// under autodiff) with every product in f32.
fn on_host<B: Backend>(tensors: &[&Tensor<B, 4>], precision: Precision) -> bool {
    is_host::<B>() && precision == Precision::F32 && tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// [`host_attention::attend`] on `[b, heads, s, d]` views of the projections' `[b, s, heads,
/// d]` tensors: swapped back, they are the contiguous buffers it reads in place (any other
/// layout is copied first), and its output comes back as the same kind of view.
fn host<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let dims = Dims::of(q.dims(), k.dims()[1]);
    let [batch, heads, seq, head_dim] = q.dims();
    let device = q.device();
    let rows = |t: Tensor<B, 4>| host::host(&t.swap_dims(1, 2));
    let out = match (rows(q), rows(k), rows(v)) {
        (Some(q), Some(k), Some(v)) => {
            host_attention::attend(q.values(), k.values(), v.values(), dims)
        }
        _ => unreachable!("on_host admits f32 tensors of the CPU backend only"),
    };
    host::tensor::<B, 4>(out, [batch, seq, heads, head_dim], &device).swap_dims(1, 2)
}

/// `[b, kv, s, d]` → `[b, kv·group, s, d]`, each KV head repeated for its group. The repeat runs
/// in the `[b, s, kv, d]` layout the projections produce, so a swapped view is not copied first.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, group: usize) -> Tensor<B, 4> {
    if group == 1 {
        return x;
    }
    let [b, kv, s, d] = x.dims();
    x.swap_dims(1, 2)
        .reshape([b, s, kv, 1, d])
        .repeat_dim(3, group)
        .reshape([b, s, kv * group, d])
        .swap_dims(1, 2)
}

fn native<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    precision: Precision,
) -> Tensor<B, 4> {
    let group = q.dims()[1] / k.dims()[1];
    let dtype = precision.dtype();
    let out = attention(
        cast_to(q, dtype),
        cast_to(repeat_kv(k, group), dtype),
        cast_to(repeat_kv(v, group), dtype),
        None,
        None,
        options(),
    );
    to_f32(out)
}

/// The chunked forward pass with `chunk` query positions per chunk.
pub fn chunked<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    precision: Precision,
    chunk: usize,
) -> Tensor<B, 4> {
    let [b, heads, s, d] = q.dims();
    let kv = k.dims()[1];
    let group = heads / kv;
    let q5 = grouped(q, kv);
    let mut outputs = Vec::with_capacity(s.div_ceil(chunk));
    for i0 in (0..s).step_by(chunk.max(1)) {
        let i1 = (i0 + chunk).min(s);
        let probs = probabilities(rows(&q5, i0, i1), prefix(&k, i1), group, i0, precision);
        let out = matmul_f32(probs, prefix(&v, i1), precision);
        outputs.push(out.reshape([b, kv, group, i1 - i0, d]));
    }
    Tensor::cat(outputs, 3).reshape([b, heads, s, d])
}

/// Gradients `(dq, dk, dv)` of causal attention for the upstream gradient `grad`
/// `[b, heads, s, d]`, recomputing the probabilities of `chunk` queries at a time:
///
/// `P = softmax(S)`, `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`,
/// `dQ = dS·K/√d`, `dK = dSᵀ·Q/√d`.
///
/// All inputs and outputs are f32; products run in `precision`. Peak memory is a few
/// `[b, heads, chunk, s]` tensors. On the CPU in f32 it is [`host_attention_grad`], which needs
/// one query's probabilities at a time.
pub fn backward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    grad: Tensor<B, 4>,
    precision: Precision,
    chunk: usize,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    if on_host(&[&q, &k, &v, &grad], precision) {
        return host_backward(q, k, v, grad);
    }
    chunked_backward(q, k, v, grad, precision, chunk)
}

/// [`host_attention_grad::attend_backward`] on `[b, heads, s, d]` views, as [`host`] does for
/// the forward pass; the gradients come back as the same kind of views.
fn host_backward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    grad: Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let [batch, heads, seq, head_dim] = q.dims();
    let kv_heads = k.dims()[1];
    let dims = Dims::of(q.dims(), kv_heads);
    let device = q.device();
    let rows = |t: Tensor<B, 4>| host::host(&t.swap_dims(1, 2));
    let (dq, dk, dv) = match (rows(q), rows(k), rows(v), rows(grad)) {
        (Some(q), Some(k), Some(v), Some(grad)) => host_attention_grad::attend_backward(
            q.values(),
            k.values(),
            v.values(),
            grad.values(),
            dims,
        ),
        _ => unreachable!("on_host admits f32 tensors of the CPU backend only"),
    };
    let view = |values, heads| {
        host::tensor::<B, 4>(values, [batch, seq, heads, head_dim], &device).swap_dims(1, 2)
    };
    (view(dq, heads), view(dk, kv_heads), view(dv, kv_heads))
}

/// [`backward`] as Burn operations, `chunk` queries at a time, on any backend.
pub fn chunked_backward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    grad: Tensor<B, 4>,
    precision: Precision,
    chunk: usize,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let [b, heads, s, d] = q.dims();
    let kv = k.dims()[1];
    let group = heads / kv;
    let scale = 1.0 / (d as f64).sqrt();
    let device = q.device();
    let q5 = grouped(q, kv);
    let g5 = grouped(grad, kv);
    let mut dk = Tensor::<B, 4>::zeros([b, kv, s, d], &device);
    let mut dv = Tensor::<B, 4>::zeros([b, kv, s, d], &device);
    let mut dq = Vec::with_capacity(s.div_ceil(chunk));
    for i0 in (0..s).step_by(chunk.max(1)) {
        let i1 = (i0 + chunk).min(s);
        let q_rows = rows(&q5, i0, i1);
        let g_rows = rows(&g5, i0, i1);
        let keys = prefix(&k, i1);
        let values = prefix(&v, i1);
        let probs = probabilities(q_rows.clone(), keys.clone(), group, i0, precision);
        let dv_part = matmul_f32(probs.clone().swap_dims(2, 3), g_rows.clone(), precision);
        let dp = matmul_f32(g_rows, values.swap_dims(2, 3), precision);
        let row_dot = (probs.clone() * dp.clone()).sum_dim(3);
        let ds = probs * (dp - row_dot);
        let dq_rows = matmul_f32(ds.clone(), keys, precision).mul_scalar(scale);
        let dk_part = matmul_f32(ds.swap_dims(2, 3), q_rows, precision).mul_scalar(scale);
        let span = [0..b, 0..kv, 0..i1, 0..d];
        dk = dk
            .clone()
            .slice_assign(span.clone(), dk.slice(span.clone()) + dk_part);
        dv = dv
            .clone()
            .slice_assign(span.clone(), dv.slice(span) + dv_part);
        dq.push(dq_rows.reshape([b, kv, group, i1 - i0, d]));
    }
    (Tensor::cat(dq, 3).reshape([b, heads, s, d]), dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend as B;
    use burn::backend::Autodiff;
    use burn::tensor::Distribution;

    type A = Autodiff<B>;

    fn random(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
        B::seed(&Default::default(), seed);
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// Softmax attention with a full `[s, s]` causal mask and repeated K/V heads: the textbook
    /// definition the kernels are checked against.
    fn reference<C: Backend>(q: Tensor<C, 4>, k: Tensor<C, 4>, v: Tensor<C, 4>) -> Tensor<C, 4> {
        let [_, heads, s, d] = q.dims();
        let group = heads / k.dims()[1];
        let (k, v) = (repeat_kv(k, group), repeat_kv(v, group));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (d as f64).sqrt());
        let mut mask = vec![0f32; s * s];
        for i in 0..s {
            for j in i + 1..s {
                mask[i * s + j] = f32::NEG_INFINITY;
            }
        }
        let mask = Tensor::<C, 2>::from_data(
            burn::tensor::TensorData::new(mask, [s, s]),
            &scores.device(),
        )
        .reshape([1, 1, s, s]);
        softmax(scores + mask, 3).matmul(v)
    }

    fn max_diff(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn native_and_chunked_forward_match_the_definition() {
        let (q, k, v) = (
            random([2, 6, 37, 8], 1),
            random([2, 2, 37, 8], 2),
            random([2, 2, 37, 8], 3),
        );
        let want = reference(q.clone(), k.clone(), v.clone());
        for chunk in [1, 5, 16, 37, 64] {
            let got = chunked(q.clone(), k.clone(), v.clone(), Precision::F32, chunk);
            assert!(max_diff(got, want.clone()) < 1e-5, "chunk {chunk}");
        }
        let got = native(q.clone(), k.clone(), v.clone(), Precision::F32);
        assert!(max_diff(got, want.clone()) < 1e-5, "native");
        let got = host(q, k, v);
        assert!(max_diff(got, want) < 1e-5, "host");
    }

    /// The CPU's native kernel is the host kernel, on the layout the projections produce, and
    /// it matches Burn's kernel; in bf16 it stays Burn's.
    #[test]
    fn the_cpu_native_kernel_is_the_host_kernel_and_matches_burns() {
        let rows = |shape: [usize; 4], seed| random(shape, seed).swap_dims(1, 2);
        let (q, k, v) = (
            rows([3, 41, 8, 16], 8),
            rows([3, 41, 2, 16], 9),
            rows([3, 41, 2, 16], 10),
        );
        assert!(on_host(&[&q, &k, &v], Precision::F32));
        assert!(!on_host(&[&q, &k, &v], Precision::Bf16));
        let got = forward(
            q.clone(),
            k.clone(),
            v.clone(),
            AttentionKernel::Native,
            Precision::F32,
        );
        let want = native(q, k, v, Precision::F32);
        assert!(max_diff(got, want) < 1e-5);
    }

    /// The CPU's backward pass is the host kernel, on the layout the projections produce, and it
    /// matches the chunked one.
    #[test]
    fn the_cpu_backward_is_the_host_kernel_and_matches_the_chunked_one() {
        let rows = |shape: [usize; 4], seed| random(shape, seed).swap_dims(1, 2);
        let (q, k, v, g) = (
            rows([2, 45, 6, 16], 12),
            rows([2, 45, 3, 16], 13),
            rows([2, 45, 3, 16], 14),
            rows([2, 45, 6, 16], 15),
        );
        assert!(on_host(&[&q, &k, &v, &g], Precision::F32));
        let got = backward(
            q.clone(),
            k.clone(),
            v.clone(),
            g.clone(),
            Precision::F32,
            QUERY_CHUNK,
        );
        let want = chunked_backward(q, k, v, g, Precision::F32, 7);
        for (name, got, want) in [
            ("dq", got.0, want.0),
            ("dk", got.1, want.1),
            ("dv", got.2, want.2),
        ] {
            let scale: f32 = want.clone().abs().max().into_scalar();
            let diff = max_diff(got, want);
            assert!(diff < 1e-5 * scale.max(1.0), "{name}: {diff}");
        }
    }

    #[test]
    fn the_host_kernel_is_never_used_under_autodiff() {
        let q = Tensor::<A, 4>::from_inner(random([1, 2, 3, 4], 11));
        assert!(!on_host(&[&q], Precision::F32));
    }

    #[test]
    fn chunked_backward_matches_autodiff_of_the_definition() {
        let (q, k, v, g) = (
            random([2, 4, 29, 8], 4),
            random([2, 2, 29, 8], 5),
            random([2, 2, 29, 8], 6),
            random([2, 4, 29, 8], 7),
        );
        let leaf = |t: &Tensor<B, 4>| Tensor::<A, 4>::from_inner(t.clone()).require_grad();
        let (ql, kl, vl) = (leaf(&q), leaf(&k), leaf(&v));
        let out = reference(ql.clone(), kl.clone(), vl.clone());
        let grads = (out * Tensor::<A, 4>::from_inner(g.clone()))
            .sum()
            .backward();
        let want = [
            ql.grad(&grads).expect("dq"),
            kl.grad(&grads).expect("dk"),
            vl.grad(&grads).expect("dv"),
        ];
        let (dq, dk, dv) = host_backward(q.clone(), k.clone(), v.clone(), g.clone());
        for (name, got, want) in [
            ("host dq", dq, &want[0]),
            ("host dk", dk, &want[1]),
            ("host dv", dv, &want[2]),
        ] {
            let diff = max_diff(got, want.clone());
            assert!(diff < 1e-4, "{name}: {diff}");
        }
        for chunk in [3, 8, 29, 100] {
            let (dq, dk, dv) = chunked_backward(
                q.clone(),
                k.clone(),
                v.clone(),
                g.clone(),
                Precision::F32,
                chunk,
            );
            for (name, got, want) in [
                ("dq", dq, &want[0]),
                ("dk", dk, &want[1]),
                ("dv", dv, &want[2]),
            ] {
                let diff = max_diff(got, want.clone());
                assert!(diff < 1e-4, "{name} chunk {chunk}: {diff}");
            }
        }
    }
}
