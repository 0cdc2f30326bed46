//! The EvalQueue (`docs/scoring.md`): which submissions are trained this epoch.

use std::collections::BTreeSet;

/// A submission with no loss cached under the current (eval set, base model, training config)
/// key.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The miner.
    pub uid: u16,
    /// Block of its commitment.
    pub commit_block: u64,
    /// Whether this dataset revision has a loss under some older key (a stale cached loss).
    pub ever_evaluated: bool,
    /// The miner's current moving-average score.
    pub score: f64,
}

/// The uids to train this epoch, in order, at most `max` (`max_miners_per_epoch`):
///
/// ```text
/// 1. never evaluated, by (commit_block ↑, uid ↑)            — FIFO: the oldest commit first
/// 2. stale (evaluated under an older key), by (score ↓, commit_block ↑, uid ↑)
/// ```
///
/// A NaN score sorts as the lowest. The order depends only on the set of candidates (not on
/// their order), so honest validators with the same chain state choose the same uids. A uid
/// listed twice is selected once, at its first place in this order.
pub fn select_for_evaluation(candidates: &[Candidate], max: usize) -> Vec<u16> {
    let score = |c: &Candidate| {
        if c.score.is_nan() {
            f64::NEG_INFINITY
        } else {
            c.score
        }
    };
    let mut fresh: Vec<&Candidate> = candidates.iter().filter(|c| !c.ever_evaluated).collect();
    fresh.sort_by_key(|c| (c.commit_block, c.uid));
    let mut stale: Vec<&Candidate> = candidates.iter().filter(|c| c.ever_evaluated).collect();
    stale.sort_by(|a, b| {
        score(b)
            .total_cmp(&score(a))
            .then(a.commit_block.cmp(&b.commit_block))
            .then(a.uid.cmp(&b.uid))
    });
    let mut taken = BTreeSet::new();
    fresh
        .into_iter()
        .chain(stale)
        .map(|c| c.uid)
        .filter(|uid| taken.insert(*uid))
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(uid: u16, commit_block: u64, ever_evaluated: bool, score: f64) -> Candidate {
        Candidate {
            uid,
            commit_block,
            ever_evaluated,
            score,
        }
    }

    #[test]
    fn queue_takes_fresh_oldest_first_then_stale_by_score() {
        let cands = [
            c(1, 50, false, 0.0),
            c(2, 10, false, 0.0),
            c(3, 5, true, 0.1),
            c(4, 7, true, 0.9),
            c(5, 10, false, 0.0),
        ];
        // fresh: (10, 2), (10, 5), (50, 1); stale: 0.9 (uid 4), 0.1 (uid 3).
        assert_eq!(select_for_evaluation(&cands, 10), vec![2, 5, 1, 4, 3]);
        assert_eq!(select_for_evaluation(&cands, 2), vec![2, 5]);
        assert!(select_for_evaluation(&cands, 0).is_empty());
        assert!(select_for_evaluation(&[], 3).is_empty());
    }

    #[test]
    fn nan_scores_go_last_and_repeated_uids_once() {
        let cands = [
            c(1, 1, true, f64::NAN),
            c(2, 9, true, 0.0),
            c(3, 4, false, 0.0),
            c(3, 4, false, 0.0),
        ];
        assert_eq!(select_for_evaluation(&cands, 10), vec![3, 2, 1]);
    }
}
