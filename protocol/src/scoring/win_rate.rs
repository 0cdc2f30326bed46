//! Losses → win rates → weights, as pure functions.
//!
//! Failed submissions never reach these functions (they get weight 0 upstream); a loss that is
//! NaN or infinite is treated as a failed evaluation here too.

use std::collections::BTreeMap;

/// A miner with an eval loss this epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredMiner {
    /// The miner's uid.
    pub uid: u16,
    /// Block of its commitment (earlier is favoured).
    pub commit_block: u64,
    /// Its eval loss (lower is better).
    pub eval_loss: f64,
}

/// Whether miner i beats miner j.
///
/// The earlier commit's loss is multiplied by `(1 − epsilon)`; i wins iff its adjusted loss is
/// strictly lower:
///
/// ```text
/// l_i' = l_i·(1 − ε) if b_i < b_j else l_i      l_j' = l_j·(1 − ε) if b_j < b_i else l_j
/// iswin(i, j) = l_i' < l_j'
/// ```
///
/// Equal blocks get no adjustment; a tie is a win for neither. A non-finite loss never wins and
/// loses to every finite one. A non-finite `epsilon` is treated as 0 (no advantage).
pub fn iswin(loss_i: f64, block_i: u64, loss_j: f64, block_j: u64, epsilon: f64) -> bool {
    let factor = if epsilon.is_finite() {
        1.0 - epsilon
    } else {
        1.0
    };
    let (mut li, mut lj) = (loss_i, loss_j);
    if block_i < block_j {
        li *= factor;
    } else if block_j < block_i {
        lj *= factor;
    }
    li.is_finite() && (li < lj || !lj.is_finite())
}

/// Pairwise win rates:
///
/// ```text
/// win_rate(i) = |{ j ≠ i : iswin(i, j) }| / (n − 1)
/// ```
///
/// over the n miners with a finite loss; miners with a NaN or infinite loss are left out (no
/// entry, so weight 0 downstream) and do not count in n.
///
/// A lone miner has no comparison and gets win rate **1**, as in pretraining (SN9) HEAD; FLock
/// OFF's era A gave 0 when there were no matches. The choice does not change its weight — a
/// softmax over one entry is 1 either way — but 1 says what happened: nobody beat it.
///
/// Uids are expected to be distinct; if one repeats, each entry is compared as its own miner and
/// the last one's rate is kept.
pub fn win_rates(miners: &[ScoredMiner], epsilon: f64) -> BTreeMap<u16, f64> {
    let field: Vec<&ScoredMiner> = miners.iter().filter(|m| m.eval_loss.is_finite()).collect();
    let n = field.len();
    field
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if n < 2 {
                return (m.uid, 1.0);
            }
            let wins = field
                .iter()
                .enumerate()
                .filter(|(j, o)| {
                    *j != i
                        && iswin(
                            m.eval_loss,
                            m.commit_block,
                            o.eval_loss,
                            o.commit_block,
                            epsilon,
                        )
                })
                .count();
            (m.uid, wins as f64 / (n - 1) as f64)
        })
        .collect()
}

/// Epoch weights, a softmax over win rates:
///
/// ```text
/// weight(i) = exp((w_i − w_max)/T) / Σ_j exp((w_j − w_max)/T)
/// ```
///
/// Subtracting the largest rate `w_max` keeps every exponent ≤ 0, so nothing overflows and the
/// denominator is at least 1. A NaN or infinite win rate gets weight 0 and is left out of the
/// sum. A temperature that is not a finite positive number is read as the limit T → 0⁺: the
/// miners with the highest rate share the weight equally. No finite rate at all → all weights 0.
pub fn epoch_weights(win_rates: &BTreeMap<u16, f64>, temperature: f64) -> BTreeMap<u16, f64> {
    let max = win_rates
        .values()
        .copied()
        .filter(|w| w.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return win_rates.keys().map(|uid| (*uid, 0.0)).collect();
    }
    let exps: BTreeMap<u16, f64> = if temperature.is_finite() && temperature > 0.0 {
        win_rates
            .iter()
            .map(|(uid, w)| {
                let e = if w.is_finite() {
                    ((w - max) / temperature).exp()
                } else {
                    0.0
                };
                (*uid, e)
            })
            .collect()
    } else {
        win_rates
            .iter()
            .map(|(uid, w)| (*uid, if *w == max { 1.0 } else { 0.0 }))
            .collect()
    };
    let total: f64 = exps.values().sum();
    exps.into_iter()
        .map(|(uid, e)| (uid, if total > 0.0 { e / total } else { 0.0 }))
        .collect()
}

/// The moving average of epoch weights, over every uid in the metagraph:
///
/// ```text
/// score(uid) = (1 − α)·score_prev(uid) + α·epoch_weight(uid)
/// ```
///
/// `score_prev` is 0 when the uid is new, when its hotkey changed (a new owner starts from 0),
/// or when the stored score is not finite; `epoch_weight` is 0 for a uid not scored this epoch
/// (and for a NaN, infinite or negative weight). Uids no longer in `current_hotkeys` are dropped.
/// α is clamped to [0, 1]; a NaN α is read as 0 (scores only carry over).
pub fn moving_average(
    previous: &BTreeMap<u16, (String, f64)>,
    epoch: &BTreeMap<u16, f64>,
    current_hotkeys: &BTreeMap<u16, String>,
    alpha: f64,
) -> BTreeMap<u16, (String, f64)> {
    let alpha = if alpha.is_nan() {
        0.0
    } else {
        alpha.clamp(0.0, 1.0)
    };
    current_hotkeys
        .iter()
        .map(|(uid, hotkey)| {
            let old = match previous.get(uid) {
                Some((h, s)) if h == hotkey && s.is_finite() => *s,
                _ => 0.0,
            };
            let new = epoch
                .get(uid)
                .copied()
                .filter(|w| w.is_finite() && *w > 0.0)
                .unwrap_or(0.0);
            (*uid, (hotkey.clone(), (1.0 - alpha) * old + alpha * new))
        })
        .collect()
}

/// FLock OFF's newer rule (`docs/scoring.md`): among the `k` lowest losses, the earliest commit wins
/// and gets weight 1.
///
/// ```text
/// k = max(⌊0.05·n⌋, 1) = max(n / 20, 1)      (integer division)
/// top = the k lowest (loss, commit_block, uid)
/// winner = the member of top with the lowest (commit_block, uid)
/// ```
///
/// n is the number of miners with a finite loss (NaN and infinite losses are left out). FLock
/// takes n from the metagraph size (256 uids → k = 12) even when few miners are scored, which lets
/// the earliest of up to 12 submissions win however much worse its loss is; counting scored
/// miners keeps k = 1 (the best loss wins outright) until there are 40 of them. Equal losses at
/// the cut are ordered by commit block, so the earlier commit makes the top k. `None` when no
/// miner has a finite loss.
pub fn winner_takes_all(miners: &[ScoredMiner]) -> Option<u16> {
    let mut by_loss: Vec<&ScoredMiner> =
        miners.iter().filter(|m| m.eval_loss.is_finite()).collect();
    by_loss.sort_by(|a, b| {
        a.eval_loss
            .total_cmp(&b.eval_loss)
            .then(a.commit_block.cmp(&b.commit_block))
            .then(a.uid.cmp(&b.uid))
    });
    let top = (by_loss.len() / 20).max(1);
    by_loss
        .into_iter()
        .take(top)
        .min_by_key(|m| (m.commit_block, m.uid))
        .map(|m| m.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uid: u16, commit_block: u64, eval_loss: f64) -> ScoredMiner {
        ScoredMiner {
            uid,
            commit_block,
            eval_loss,
        }
    }

    #[test]
    fn iswin_favours_the_earlier_commit_by_epsilon() {
        // 1.00 at block 10 vs 0.97 at block 20: the earlier one counts as 0.96 < 0.97 → wins.
        assert!(iswin(1.0, 10, 0.97, 20, 0.04));
        assert!(!iswin(0.97, 20, 1.0, 10, 0.04));
        // 1.00 at block 10 vs 0.95 at block 20: 0.96 > 0.95 → the later, better one wins.
        assert!(!iswin(1.0, 10, 0.95, 20, 0.04));
        assert!(iswin(0.95, 20, 1.0, 10, 0.04));
        // Same block: no adjustment, ties win for nobody.
        assert!(!iswin(1.0, 5, 1.0, 5, 0.04));
        // Non-finite losses never win and lose to any finite loss.
        assert!(!iswin(f64::NAN, 1, 1.0, 5, 0.04));
        assert!(iswin(1.0, 5, f64::NAN, 1, 0.04));
        assert!(!iswin(f64::INFINITY, 1, f64::NAN, 5, 0.04));
        // NaN epsilon: no advantage, 1.0 vs 0.97 is decided on the raw losses.
        assert!(!iswin(1.0, 10, 0.97, 20, f64::NAN));
    }

    #[test]
    fn win_rates_on_a_hand_worked_field() {
        // uid 0: loss 1.00 @ block 10; uid 1: 0.97 @ 20; uid 2: 1.20 @ 5.
        // 0 vs 1: 0.96 < 0.97 → 0 wins.  0 vs 2: 2 is earlier → 1.2·0.96 = 1.152 > 1.00 → 0 wins.
        // 1 vs 2: 1.152 > 0.97 → 1 wins.  Wins: 0 → 2, 1 → 1, 2 → 0; n − 1 = 2.
        let rates = win_rates(&[m(0, 10, 1.0), m(1, 20, 0.97), m(2, 5, 1.2)], 0.04);
        assert_eq!(rates[&0], 1.0);
        assert_eq!(rates[&1], 0.5);
        assert_eq!(rates[&2], 0.0);
        assert_eq!(win_rates(&[m(4, 1, 2.0)], 0.04)[&4], 1.0);
        assert!(win_rates(&[], 0.04).is_empty());
    }

    #[test]
    fn non_finite_losses_are_left_out_of_win_rates() {
        // uid 9's NaN does not count: uids 0 and 1 compare only with each other (n − 1 = 1).
        let rates = win_rates(&[m(0, 10, 1.0), m(1, 20, 0.97), m(9, 1, f64::NAN)], 0.04);
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[&0], 1.0);
        assert_eq!(rates[&1], 0.0);
    }

    #[test]
    fn softmax_over_win_rates() {
        // rates 1, .5, 0 at T = 0.5: exp(2), exp(1), exp(0) / (e² + e + 1).
        let rates: BTreeMap<u16, f64> = [(0, 1.0), (1, 0.5), (2, 0.0)].into_iter().collect();
        let w = epoch_weights(&rates, 0.5);
        let z = 1f64.exp().powi(2) + 1f64.exp() + 1.0;
        assert!((w[&0] - 1f64.exp().powi(2) / z).abs() < 1e-12);
        assert!((w[&1] - 1f64.exp() / z).abs() < 1e-12);
        assert!((w[&2] - 1.0 / z).abs() < 1e-12);
        // T = 0.08 does not overflow: weights still sum to 1.
        let w = epoch_weights(&rates, 0.08);
        assert!((w.values().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn softmax_degenerate_inputs() {
        let rates: BTreeMap<u16, f64> = [(0, 1.0), (1, 1.0), (2, 0.5), (3, f64::NAN)]
            .into_iter()
            .collect();
        // T = 0, negative or NaN → limit T → 0⁺: the two rates of 1.0 share the weight.
        for t in [0.0, -1.0, f64::NAN] {
            let w = epoch_weights(&rates, t);
            assert_eq!(w[&0], 0.5);
            assert_eq!(w[&1], 0.5);
            assert_eq!(w[&2], 0.0);
            assert_eq!(w[&3], 0.0);
        }
        let nan: BTreeMap<u16, f64> = [(0, f64::NAN)].into_iter().collect();
        assert_eq!(epoch_weights(&nan, 0.08)[&0], 0.0);
        assert!(epoch_weights(&BTreeMap::new(), 0.08).is_empty());
    }

    #[test]
    fn moving_average_with_a_changed_hotkey_and_an_unscored_uid() {
        let previous: BTreeMap<u16, (String, f64)> = [
            (0, ("a".to_string(), 0.5)),
            (1, ("b".to_string(), 0.4)),
            (9, ("z".to_string(), 1.0)),
        ]
        .into_iter()
        .collect();
        let epoch: BTreeMap<u16, f64> = [(0, 1.0), (1, 1.0)].into_iter().collect();
        let hotkeys: BTreeMap<u16, String> = [
            (0, "a".to_string()),
            (1, "b2".to_string()),
            (2, "c".to_string()),
        ]
        .into_iter()
        .collect();
        let s = moving_average(&previous, &epoch, &hotkeys, 0.2);
        assert!((s[&0].1 - (0.8 * 0.5 + 0.2)).abs() < 1e-12); // 0.6
        assert!((s[&1].1 - 0.2).abs() < 1e-12); // new hotkey: 0.8·0 + 0.2·1
        assert_eq!(s[&2].1, 0.0); // not scored: decays from 0
        assert!(!s.contains_key(&9)); // gone from the metagraph
    }

    #[test]
    fn winner_takes_all_picks_the_earliest_of_the_best() {
        // 20 miners → k = max(20/20, 1) = 1: the lowest loss wins outright.
        let mut field: Vec<ScoredMiner> = (0..20)
            .map(|u| m(u, 100 - u as u64, 2.0 + u as f64))
            .collect();
        assert_eq!(winner_takes_all(&field), Some(0));
        // 40 miners → k = 2: losses 2.0 (uid 0, block 100) and 2.0001 (uid 1, block 99).
        field.extend((20..40).map(|u| m(u, 500, 9.0)));
        field[1].eval_loss = 2.0001;
        assert_eq!(
            winner_takes_all(&field),
            Some(1),
            "uid 1 (block 99) beats uid 0 (block 100) among the top 2"
        );
        assert_eq!(winner_takes_all(&[]), None);
        assert_eq!(winner_takes_all(&[m(3, 1, f64::NAN)]), None);
    }
}
