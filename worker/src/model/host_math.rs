//! Element-wise math for the host kernels, written without branches or library calls so the
//! compiler can run it on SIMD lanes: `exp` (the libm call costs as much as the rest of a
//! softmax or SiLU), the logistic function, and lane-wise maximum, sum and sum of exponentials of a
//! slice.

/// Below this `exp` is 0 (it would be subnormal).
const EXP_LOW: f32 = -87.336_55;
/// Above this `exp` is clamped to its value here (about 2.4e38; f32 overflows at 88.72).
const EXP_HIGH: f32 = 88.376_26;
/// `1.5·2²³`: adding it rounds a float in ±2²² to an integer held in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `e^x` within 2 ulp (Cephes' `expf`: `x = n·ln 2 + r`, a degree-7 polynomial in `r`, and
/// `2^n` built from its bits). NaN stays NaN; below −87.34 (where `e^x` is subnormal) it is 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let low = x < EXP_LOW;
    let x = if x > EXP_HIGH { EXP_HIGH } else { x };
    let x = if low { EXP_LOW } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * (r * r) + r + 1.0;
    // n + 127 in the exponent field: t's low mantissa bits hold 2²² + n
    let scale = f32::from_bits(((t.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32);
    if low {
        0.0
    } else {
        y * scale
    }
}

/// The logistic function `1 / (1 + e^−x)`, in the form that never overflows (as Burn's CPU
/// `sigmoid`: `e^x / (1 + e^x)` for negative `x`).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// Lanes of the slice reductions.
const LANES: usize = 8;

/// The largest value of `values` (−∞ when empty; NaNs are skipped, as `f32::max` does).
#[inline(always)]
pub fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane = if *v > *lane { *v } else { *lane };
        }
    }
    lanes
        .iter()
        .chain(tail)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// The sum of `values`, eight running sums side by side.
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `Σ e^(v − shift)` over `values`: the exponentials of a block at a time into a buffer (a
/// loop the compiler runs on SIMD lanes), then their [`sum`].
#[inline(always)]
pub fn sum_exp(values: &[f32], shift: f32) -> f32 {
    let mut buffer = [0f32; 64];
    let mut total = 0f32;
    for block in values.chunks(buffer.len()) {
        let exps = &mut buffer[..block.len()];
        for (e, v) in exps.iter_mut().zip(block) {
            *e = exp(v - shift);
        }
        total += sum(exps);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_over_the_normal_range() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.3 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_3;
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_keeps_nan_and_flushes_the_far_left_to_zero() {
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert!(exp(88.3).is_finite());
    }

    #[test]
    fn sigmoid_matches_the_definition_on_both_sides() {
        for x in [-90.0f32, -20.0, -3.5, -1e-3, 0.0, 1e-3, 2.0, 15.0, 90.0] {
            let want = 1.0 / (1.0 + (-f64::from(x)).exp());
            let got = f64::from(sigmoid(x));
            // subnormal results (x < −87.3) are flushed to 0
            assert!(
                (got - want).abs() <= 2.5e-7 * want + 1e-38,
                "{x}: {got} vs {want}"
            );
        }
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn reductions_match_sequential_ones() {
        let values: Vec<f32> = (0..29).map(|i| ((i * 7919) % 113) as f32 - 50.0).collect();
        for n in [0, 1, 7, 8, 9, 29] {
            let slice = &values[..n];
            let want_max = slice.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(slice), want_max, "max of {n}");
            let want_sum: f32 = slice.iter().sum();
            assert_eq!(sum(slice), want_sum, "sum of {n} (integers: exact)");
            let want: f64 = slice
                .iter()
                .map(|v| (f64::from(*v) / 50.0 - 1.0).exp())
                .sum();
            let scaled: Vec<f32> = slice.iter().map(|v| v / 50.0).collect();
            let got = f64::from(sum_exp(&scaled, 1.0));
            assert!((got - want).abs() <= 1e-6 * want.max(1.0), "sum_exp of {n}");
        }
    }
}
