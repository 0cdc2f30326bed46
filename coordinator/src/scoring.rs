//! Scoring: losses → win rates → weights (DESIGN.md §6), as pure functions. Failed and duplicate
//! submissions never reach these functions; they get weight 0 upstream.

use std::collections::{BTreeMap, BTreeSet};

/// A miner with a loss this epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredMiner {
    /// The miner's uid.
    pub uid: u16,
    /// Block of its commitment (earlier is favoured).
    pub commit_block: u64,
    /// Its eval loss (lower is better).
    pub eval_loss: f64,
}

/// Whether miner i beats miner j: the earlier commit's loss is multiplied by `(1 − epsilon)`;
/// i wins iff its (adjusted) loss is strictly lower. Equal blocks get no adjustment; a tie is no
/// win for either; a non-finite loss never wins.
pub fn iswin(loss_i: f64, block_i: u64, loss_j: f64, block_j: u64, epsilon: f64) -> bool {
    let (mut li, mut lj) = (loss_i, loss_j);
    if block_i < block_j {
        li *= 1.0 - epsilon;
    } else if block_j < block_i {
        lj *= 1.0 - epsilon;
    }
    li.is_finite() && (li < lj || !lj.is_finite())
}

/// `win_rate(i) = wins(i) / (n − 1)` over all pairs of scored miners. A lone miner has no
/// comparison and gets win rate 1 (after the softmax it would get all the weight anyway).
pub fn win_rates(miners: &[ScoredMiner], epsilon: f64) -> BTreeMap<u16, f64> {
    let n = miners.len();
    miners
        .iter()
        .map(|m| {
            if n < 2 {
                return (m.uid, 1.0);
            }
            let wins = miners
                .iter()
                .filter(|o| {
                    o.uid != m.uid
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

/// `weight(i) = exp(w_i/T) / Σ_j exp(w_j/T)` over the scored miners (computed with the maximum
/// subtracted, so it never overflows).
pub fn epoch_weights(win_rates: &BTreeMap<u16, f64>, temperature: f64) -> BTreeMap<u16, f64> {
    let max = win_rates
        .values()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: BTreeMap<u16, f64> = win_rates
        .iter()
        .map(|(uid, w)| (*uid, ((w - max) / temperature).exp()))
        .collect();
    let total: f64 = exps.values().sum();
    exps.into_iter()
        .map(|(uid, e)| (uid, if total > 0.0 { e / total } else { 0.0 }))
        .collect()
}

/// `score = (1 − α)·score + α·epoch_weight` for every current uid (weight 0 when not scored); a
/// uid whose hotkey changed starts from 0; uids no longer in the metagraph are dropped.
pub fn moving_average(
    previous: &BTreeMap<u16, (String, f64)>,
    epoch: &BTreeMap<u16, f64>,
    current_hotkeys: &BTreeMap<u16, String>,
    alpha: f64,
) -> BTreeMap<u16, (String, f64)> {
    current_hotkeys
        .iter()
        .map(|(uid, hotkey)| {
            let old = match previous.get(uid) {
                Some((h, s)) if h == hotkey && s.is_finite() => *s,
                _ => 0.0,
            };
            let new = epoch.get(uid).copied().unwrap_or(0.0);
            (*uid, (hotkey.clone(), (1.0 - alpha) * old + alpha * new))
        })
        .collect()
}

/// FLock OFF's newer rule: among the lowest `max(floor(0.05·n), 1)` losses (n = scored miners),
/// the earliest commit (lowest block, then lowest uid) wins.
pub fn winner_takes_all(miners: &[ScoredMiner]) -> Option<u16> {
    let mut by_loss: Vec<&ScoredMiner> =
        miners.iter().filter(|m| m.eval_loss.is_finite()).collect();
    by_loss.sort_by(|a, b| a.eval_loss.total_cmp(&b.eval_loss).then(a.uid.cmp(&b.uid)));
    let top = ((miners.len() as f64 * 0.05).floor() as usize).max(1);
    by_loss
        .into_iter()
        .take(top)
        .min_by_key(|m| (m.commit_block, m.uid))
        .map(|m| m.uid)
}

/// Max-upscale to u16: the largest weight becomes 65535, others `round_half_even(w/max · 65535)`;
/// zeros (and NaN or negative weights) are dropped; all-zero input gives no weights.
pub fn to_u16_weights(weights: &BTreeMap<u16, f64>) -> Vec<(u16, u16)> {
    let clean = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let max = weights.values().cloned().map(clean).fold(0.0, f64::max);
    if max <= 0.0 {
        return Vec::new();
    }
    weights
        .iter()
        .map(|(uid, w)| {
            (
                *uid,
                (clean(*w) / max * 65535.0).round_ties_even().min(65535.0) as u16,
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// One dataset as the duplicate rules see it.
#[derive(Debug, Clone)]
pub struct DatasetIdentity<'a> {
    /// The miner.
    pub uid: u16,
    /// Its commit block.
    pub commit_block: u64,
    /// SHA-256 of its sorted canonical rows.
    pub content_hash: &'a str,
    /// Its canonical rows.
    pub rows: &'a [String],
}

fn union_find_groups(n: usize, same: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for i in 0..n {
        for j in i + 1..n {
            if same(i, j) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    (0..n).map(|i| find(&mut parent, i)).collect()
}

/// For each duplicate, the uid it copies: within a group of datasets linked by equal content
/// hash or by row overlap ≥ `overlap_fraction` × the smaller dataset's distinct rows (groups are
/// transitive), every member but the earliest commit (lowest block, then uid) is a duplicate of
/// that earliest one.
pub fn content_duplicates(
    datasets: &[DatasetIdentity<'_>],
    overlap_fraction: f64,
) -> BTreeMap<u16, u16> {
    let sets: Vec<BTreeSet<&String>> = datasets.iter().map(|d| d.rows.iter().collect()).collect();
    let groups = union_find_groups(datasets.len(), |i, j| {
        if datasets[i].content_hash == datasets[j].content_hash {
            return true;
        }
        let smaller = sets[i].len().min(sets[j].len());
        let shared = sets[i].intersection(&sets[j]).count();
        smaller > 0 && shared as f64 >= overlap_fraction * smaller as f64
    });
    originals(
        datasets.iter().map(|d| (d.uid, d.commit_block)).collect(),
        &groups,
    )
}

/// Like [`content_duplicates`] for losses equal within relative `rel`
/// (`|a − b| ≤ rel · max(|a|, |b|)`).
pub fn loss_duplicates(miners: &[ScoredMiner], rel: f64) -> BTreeMap<u16, u16> {
    let groups = union_find_groups(miners.len(), |i, j| {
        let (a, b) = (miners[i].eval_loss, miners[j].eval_loss);
        (a - b).abs() <= rel * a.abs().max(b.abs())
    });
    originals(
        miners.iter().map(|m| (m.uid, m.commit_block)).collect(),
        &groups,
    )
}

fn originals(members: Vec<(u16, u64)>, groups: &[usize]) -> BTreeMap<u16, u16> {
    let mut earliest: BTreeMap<usize, (u64, u16)> = BTreeMap::new();
    for (i, (uid, block)) in members.iter().enumerate() {
        let e = earliest.entry(groups[i]).or_insert((*block, *uid));
        if (*block, *uid) < *e {
            *e = (*block, *uid);
        }
    }
    members
        .iter()
        .enumerate()
        .filter_map(|(i, (uid, _))| {
            let original = earliest[&groups[i]].1;
            (original != *uid).then_some((*uid, original))
        })
        .collect()
}

/// A submission waiting for a loss under the current cache key.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The miner.
    pub uid: u16,
    /// Its commit block.
    pub commit_block: u64,
    /// Whether this dataset revision has a loss under some older key.
    pub ever_evaluated: bool,
    /// The miner's current moving-average score.
    pub score: f64,
}

/// The EvalQueue (DESIGN.md §2): never-evaluated submissions first, oldest commit first (then
/// uid); then stale ones by current score, highest first (then block, uid); at most `max`.
/// Deterministic in its input, so honest validators pick the same set.
pub fn select_for_evaluation(candidates: &[Candidate], max: usize) -> Vec<u16> {
    let mut fresh: Vec<&Candidate> = candidates.iter().filter(|c| !c.ever_evaluated).collect();
    fresh.sort_by_key(|c| (c.commit_block, c.uid));
    let mut stale: Vec<&Candidate> = candidates.iter().filter(|c| c.ever_evaluated).collect();
    stale.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.commit_block.cmp(&b.commit_block))
            .then(a.uid.cmp(&b.uid))
    });
    fresh
        .into_iter()
        .chain(stale)
        .take(max)
        .map(|c| c.uid)
        .collect()
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
        assert!(!iswin(f64::NAN, 1, 1.0, 5, 0.04));
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
        // 20 miners → top max(floor(1.0), 1) = 1: the lowest loss wins outright.
        let mut field: Vec<ScoredMiner> = (0..20)
            .map(|u| m(u, 100 - u as u64, 2.0 + u as f64))
            .collect();
        assert_eq!(winner_takes_all(&field), Some(0));
        // 40 miners → top 2: losses 2.0 (uid 0, block 100) and 2.0+ε... make uid 1 earlier and close.
        field.extend((20..40).map(|u| m(u, 500, 9.0)));
        field[1].eval_loss = 2.0001;
        assert_eq!(
            winner_takes_all(&field),
            Some(1),
            "uid 1 (block 99) beats uid 0 (block 100) among the top 2"
        );
        assert_eq!(winner_takes_all(&[]), None);
    }

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
        // 1/2 · 65535 = 32767.5 → 32768 (even); uid 4: (2/131070)/2 · 65535 = 0.5 → 0 (even) → dropped.
        assert_eq!(to_u16_weights(&w), vec![(0, 65535), (1, 32768)]);
        let half: BTreeMap<u16, f64> = [(0, 65535.0), (1, 2.5)].into_iter().collect();
        assert_eq!(to_u16_weights(&half), vec![(0, 65535), (1, 2)]); // 2.5 → 2
        assert!(to_u16_weights(&BTreeMap::new()).is_empty());
        assert!(to_u16_weights(&[(0, 0.0)].into_iter().collect()).is_empty());
    }

    #[test]
    fn duplicates_by_hash_overlap_and_loss_are_transitive_and_keep_the_earliest() {
        let rows = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, b, c, d) = (
            rows(&["1", "2", "3", "4"]),
            rows(&["4", "3", "2", "1"]),
            rows(&["1", "2", "9"]),
            rows(&["7", "8"]),
        );
        let ds = [
            DatasetIdentity {
                uid: 5,
                commit_block: 30,
                content_hash: "h1",
                rows: &b,
            },
            DatasetIdentity {
                uid: 2,
                commit_block: 10,
                content_hash: "h1",
                rows: &a,
            },
            DatasetIdentity {
                uid: 7,
                commit_block: 40,
                content_hash: "h3",
                rows: &c,
            },
            DatasetIdentity {
                uid: 1,
                commit_block: 50,
                content_hash: "h4",
                rows: &d,
            },
        ];
        // c shares 2 of its 3 rows with a: 2 ≥ 0.5·3 → duplicate of the group's earliest (uid 2).
        let dups = content_duplicates(&ds, 0.5);
        assert_eq!(dups, [(5, 2), (7, 2)].into_iter().collect());
        let dups = content_duplicates(&ds, 0.9);
        assert_eq!(dups, [(5, 2)].into_iter().collect());
        let losses = [m(3, 20, 1.0), m(4, 10, 1.0 + 1e-12), m(6, 5, 1.5)];
        assert_eq!(
            loss_duplicates(&losses, 1e-9),
            [(3, 4)].into_iter().collect()
        );
    }

    #[test]
    fn queue_takes_fresh_oldest_first_then_stale_by_score() {
        let c = |uid, commit_block, ever_evaluated, score| Candidate {
            uid,
            commit_block,
            ever_evaluated,
            score,
        };
        let cands = [
            c(1, 50, false, 0.0),
            c(2, 10, false, 0.0),
            c(3, 5, true, 0.1),
            c(4, 7, true, 0.9),
            c(5, 10, false, 0.0),
        ];
        assert_eq!(select_for_evaluation(&cands, 10), vec![2, 5, 1, 4, 3]);
        assert_eq!(select_for_evaluation(&cands, 2), vec![2, 5]);
        assert!(select_for_evaluation(&cands, 0).is_empty());
    }
}
