//! Matrix products of the CPU backend's linear layers and head, on the host: the `gemm` kernel
//! Burn's CPU backend multiplies with, called on the layer's own output buffer. Burn's CPU
//! matmul allocates its output zeroed and then copies it to realign it, runs on one thread, and
//! adds a bias in a second pass; here the output starts as the bias rows, the product is
//! accumulated onto them, and the rows of a large product are split over the host's cores
//! (docs/engine.md, "CPU kernels").

use gemm::{gemm, Parallelism};

use super::host_pool;

/// Multiply-adds below which a product stays on one thread.
const PARALLEL_WORK: usize = 1 << 20;

/// How the right-hand matrix `[k, n]` lies in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rhs {
    /// Row-major `[k, n]` (a linear layer's weight, stored `[in, out]`).
    RowMajor,
    /// Row-major `[n, k]`, used transposed (the tied head, the embedding `[vocab, hidden]`).
    Transposed,
}

/// `lhs·rhs (+ bias)` for row-major `lhs` `[m, k]`, `rhs` `[k, n]` laid out as `layout` says and
/// an optional `bias` `[n]` added to every row; returns row-major `[m, n]`.
///
/// # Panics
/// When a slice's length does not match the sizes (a bug in the caller, never input data).
pub fn product(
    lhs: &[f32],
    rhs: &[f32],
    layout: Rhs,
    bias: Option<&[f32]>,
    [m, k, n]: [usize; 3],
) -> Vec<f32> {
    assert_eq!(lhs.len(), m * k, "left operand length");
    assert_eq!(rhs.len(), k * n, "right operand length");
    let mut out = match bias {
        Some(bias) => {
            assert_eq!(bias.len(), n, "bias length");
            bias.repeat(m)
        }
        None => vec![0f32; m * n],
    };
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    // strides of rhs[i, j] along i (rows, k) and j (columns, n)
    let (rhs_rs, rhs_cs) = match layout {
        Rhs::RowMajor => (n, 1),
        Rhs::Transposed => (1, k),
    };
    let accumulate = bias.is_some();
    let block = |rows: &[f32], out: &mut [f32]| {
        let rows_here = out.len() / n;
        debug_assert_eq!(rows.len(), rows_here * k);
        // SAFETY: `rows` is row-major `[rows_here, k]`, `out` row-major `[rows_here, n]` and
        // `rhs` holds `k·n` values laid out with the strides given (lengths asserted above, and
        // `rows`/`out` are matching chunks of `lhs`/`out`), so every element gemm reads or
        // writes lies inside its slice; `out` is a fresh buffer that aliases neither operand.
        unsafe {
            gemm(
                rows_here,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                accumulate,
                rows.as_ptr(),
                1,
                k as isize,
                rhs.as_ptr(),
                rhs_cs as isize,
                rhs_rs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    };
    let threads = host_pool::threads();
    if m * k * n < PARALLEL_WORK || threads <= 1 || m < 2 {
        block(lhs, &mut out);
        return out;
    }
    let rows_per = m.div_ceil(threads);
    let blocks: Vec<(&mut [f32], &[f32])> = out
        .chunks_mut(rows_per * n)
        .zip(lhs.chunks(rows_per * k))
        .collect();
    host_pool::for_each(blocks, |(out, rows)| block(rows, out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 - 500.0) / 250.0)
            .collect()
    }

    /// The definition, in f64.
    fn reference(
        lhs: &[f32],
        rhs: &[f32],
        layout: Rhs,
        bias: Option<&[f32]>,
        [m, k, n]: [usize; 3],
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = bias.map_or(0.0, |b| f64::from(b[j]));
                for c in 0..k {
                    let r = match layout {
                        Rhs::RowMajor => rhs[c * n + j],
                        Rhs::Transposed => rhs[j * k + c],
                    };
                    acc += f64::from(lhs[i * k + c]) * f64::from(r);
                }
                out[i * n + j] = acc as f32;
            }
        }
        out
    }

    #[test]
    fn products_match_the_definition_in_both_layouts_with_and_without_bias() {
        // the last shape is above the threshold: its rows are split over threads
        for [m, k, n] in [[1, 1, 1], [5, 3, 7], [37, 64, 19], [0, 4, 4], [300, 64, 96]] {
            let lhs = values(m * k, 1);
            let rhs = values(k * n, 2);
            let bias = values(n, 3);
            for layout in [Rhs::RowMajor, Rhs::Transposed] {
                for bias in [None, Some(bias.as_slice())] {
                    let got = product(&lhs, &rhs, layout, bias, [m, k, n]);
                    let want = reference(&lhs, &rhs, layout, bias, [m, k, n]);
                    assert_eq!(got.len(), want.len());
                    let diff = got
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        diff < 1e-4,
                        "{m}x{k}x{n} {layout:?} bias {}: {diff}",
                        bias.is_some()
                    );
                }
            }
        }
        const { assert!(300 * 64 * 96 >= PARALLEL_WORK) };
    }
}
