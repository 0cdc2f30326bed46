//! Several competitions in one epoch. A loss means something only next to losses measured on the
//! same eval set after training with the same settings, so each competition is scored on its own
//! (win rates, softmax or winner-takes-all) and the emission is split between competitions by
//! their shares (`docs/scoring.md`).

use std::collections::BTreeMap;

use super::win_rate::ScoredMiner;

/// The scored miners by competition, `competition_of(uid)` naming each one's (one id, e.g. "",
/// for all puts them in one field), each group in the order of `scored`.
pub fn by_competition(
    scored: &[ScoredMiner],
    competition_of: impl Fn(u16) -> String,
) -> BTreeMap<String, Vec<ScoredMiner>> {
    let mut groups: BTreeMap<String, Vec<ScoredMiner>> = BTreeMap::new();
    for m in scored {
        groups.entry(competition_of(m.uid)).or_default().push(*m);
    }
    groups
}

/// One epoch's weights of several competitions, combined into one map over uids:
///
/// ```text
/// weight(i) = s_c / Σ_{d ∈ A} s_d · w_c(i)        for miner i of competition c
/// ```
///
/// `w_c` are competition c's own epoch weights (summing to 1 within it, or all 0), `s_c` its
/// share from `shares` (1 when absent), and A the competitions that have a positive weight this
/// epoch: a competition whose miners all failed leaves its share to the others. A share that is
/// not a finite positive number counts as 0: that competition gets nothing. A uid is expected in
/// one competition; if it appears in several, its weights add. With no competition in A every
/// weight is 0.
pub fn split_by_share(
    per_competition: &BTreeMap<String, BTreeMap<u16, f64>>,
    shares: &BTreeMap<String, f64>,
) -> BTreeMap<u16, f64> {
    let share = |id: &String| {
        let s = shares.get(id).copied().unwrap_or(1.0);
        if s.is_finite() && s > 0.0 {
            s
        } else {
            0.0
        }
    };
    let active = |weights: &BTreeMap<u16, f64>| weights.values().any(|w| w.is_finite() && *w > 0.0);
    let total: f64 = per_competition
        .iter()
        .filter(|(_, w)| active(w))
        .map(|(id, _)| share(id))
        .sum();
    let mut combined = BTreeMap::new();
    for (id, weights) in per_competition {
        let scale = if total > 0.0 && active(weights) {
            share(id) / total
        } else {
            0.0
        };
        for (uid, w) in weights {
            let w = if w.is_finite() && *w > 0.0 { *w } else { 0.0 };
            *combined.entry(*uid).or_insert(0.0) += scale * w;
        }
    }
    combined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(entries: &[(u16, f64)]) -> BTreeMap<u16, f64> {
        entries.iter().copied().collect()
    }

    fn competitions(list: &[(&str, &[(u16, f64)])]) -> BTreeMap<String, BTreeMap<u16, f64>> {
        list.iter()
            .map(|(id, w)| (id.to_string(), weights(w)))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn each_competition_gets_its_share_of_the_emission() {
        let per = competitions(&[("1", &[(1, 0.75), (2, 0.25)]), ("2", &[(3, 1.0)])]);
        let shares = [("1".to_string(), 3.0), ("2".to_string(), 1.0)]
            .into_iter()
            .collect();
        let w = split_by_share(&per, &shares);
        assert!(
            close(w[&1], 0.5625) && close(w[&2], 0.1875) && close(w[&3], 0.25),
            "{w:?}"
        );
        assert!(close(w.values().sum(), 1.0));
        // Without shares the split is equal.
        let w = split_by_share(&per, &BTreeMap::new());
        assert!(close(w[&1], 0.375) && close(w[&3], 0.5), "{w:?}");
    }

    #[test]
    fn a_competition_without_weight_leaves_its_share_to_the_others() {
        let per = competitions(&[("1", &[(1, 0.0), (2, 0.0)]), ("2", &[(3, 1.0)])]);
        let w = split_by_share(&per, &BTreeMap::new());
        assert!(close(w[&3], 1.0) && w[&1] == 0.0 && w[&2] == 0.0, "{w:?}");
    }

    #[test]
    fn bad_shares_and_weights_give_nothing_and_never_nan() {
        let per = competitions(&[("1", &[(1, 1.0)]), ("2", &[(2, f64::NAN), (3, 1.0)])]);
        let shares = [("1".to_string(), f64::NAN), ("2".to_string(), -1.0)]
            .into_iter()
            .collect();
        let w = split_by_share(&per, &shares);
        assert!(w.values().all(|v| *v == 0.0), "{w:?}");
        assert!(split_by_share(&BTreeMap::new(), &BTreeMap::new()).is_empty());
        let shares = [("1".to_string(), f64::INFINITY)].into_iter().collect();
        let w = split_by_share(&per, &shares);
        assert!(w[&1] == 0.0 && close(w[&3], 1.0) && w[&2] == 0.0, "{w:?}");
    }
}
