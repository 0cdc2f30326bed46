//! Emission: float weights → the `u16` vector `set_weights` / `commit_weights` carry, and the
//! `version_key` to send with it (`docs/scoring.md`, `docs/subtensor.md`).

use std::collections::BTreeMap;

/// Max-upscale to u16, the way bittensor's `convert_weights_and_uids_for_emit` does it:
///
/// ```text
/// w' = w if w is finite and > 0, else 0
/// u16(uid) = round_half_even(w'(uid) / max(w') · 65535)      (uids with u16 = 0 are dropped)
/// ```
///
/// The largest weight becomes 65535. All-zero (or empty, or all-invalid) input gives an empty
/// vector, which sets no weights. The result is sorted by uid.
///
/// Same as bittensor: the order of operations (divide by the max, then multiply by 65535) and
/// Python's `round` (half to even), so the values are bit-for-bit those of the Python SDK for
/// the same floats; zeros are dropped together with their uid.
///
/// Different from bittensor:
/// * negative weights are read as 0 instead of raising, and NaN or infinite ones as 0 instead of
///   raising (bittensor 11) or propagating;
/// * the all-zero test is on the maximum of the cleaned weights (bittensor tests `sum == 0`,
///   the same thing for non-negative weights);
/// * no `process_weights` step: no clipping to `MaxWeightsLimit` and no padding to
///   `MinAllowedWeights`. On a subnet that sets `MaxWeightsLimit < 65535` or
///   `MinAllowedWeights` above the number of non-zero weights the chain rejects the call.
///
/// The chain rescales the vector to sum 65535 on its side, so only the ratios matter.
pub fn to_u16_weights(weights: &BTreeMap<u16, f64>) -> Vec<(u16, u16)> {
    let clean = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let max = weights.values().copied().map(clean).fold(0.0, f64::max);
    if max <= 0.0 {
        return Vec::new();
    }
    weights
        .iter()
        .map(|(uid, w)| {
            let scaled = (clean(*w) / max * 65535.0).round_ties_even();
            (*uid, scaled.clamp(0.0, 65535.0) as u16)
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The `version_key` to send with weights: `max(ours, chain)`.
///
/// The chain accepts a key iff `WeightsVersionKey(netuid) == 0 || key >= WeightsVersionKey`
/// (`docs/subtensor.md`); the maximum always passes, and keeps our own key when the subnet owner asks
/// for less.
pub fn version_key(ours: u64, chain: u64) -> u64 {
    ours.max(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u16_weights_max_upscale_with_round_half_even() {
        let w: BTreeMap<u16, f64> = [
            (0, 2.0),
            (1, 1.0),
            (2, 0.0),
            (3, f64::NAN),
            (4, 1.0 / 131070.0 * 2.0),
        ]
        .into_iter()
        .collect();
        // 1/2 · 65535 = 32767.5 → 32768 (even); uid 4: (2/131070)/2 · 65535 = 0.5 → 0 (even) →
        // dropped, like the 0 and the NaN.
        assert_eq!(to_u16_weights(&w), vec![(0, 65535), (1, 32768)]);
        // 2.5/65535 · 65535 = 2.5 → 2 (even).
        let half: BTreeMap<u16, f64> = [(0, 65535.0), (1, 2.5)].into_iter().collect();
        assert_eq!(to_u16_weights(&half), vec![(0, 65535), (1, 2)]);
        assert!(to_u16_weights(&BTreeMap::new()).is_empty());
        assert!(to_u16_weights(&[(0, 0.0)].into_iter().collect()).is_empty());
        assert!(to_u16_weights(&[(0, -1.0), (1, f64::INFINITY)].into_iter().collect()).is_empty());
    }

    #[test]
    fn version_key_is_the_larger() {
        assert_eq!(version_key(1, 0), 1);
        assert_eq!(version_key(1, 9_010_000), 9_010_000);
        assert_eq!(version_key(u64::MAX, 3), u64::MAX);
    }
}
