//! Duplicate submissions: the same dataset committed again by a later miner.
//!
//! Two submissions are linked when
//!
//! * their content hashes are equal (SHA-256 of the sorted canonical rows), or
//! * their distinct canonical rows overlap by at least `duplicate_overlap` × the smaller
//!   dataset's distinct rows (and by at least one row), or
//! * after training, their eval losses are equal within a relative tolerance.
//!
//! Links are made transitive (union-find): if A is linked to B and B to C, all three are one
//! group even when A and C share nothing. In every group the earliest commit — lowest
//! `commit_block`, then lowest uid — is the original; every other member is a duplicate *of that
//! original* and gets weight 0. Results are `BTreeMap`s keyed by uid and depend only on the set
//! of inputs, not on their order.
//!
//! [`content_duplicates`] runs before training (duplicates are not trained); [`loss_duplicates`]
//! after it.

use std::collections::{BTreeMap, BTreeSet};

use super::win_rate::ScoredMiner;

/// One fetched and validated dataset, as the content rules see it.
#[derive(Debug, Clone)]
pub struct DatasetIdentity<'a> {
    /// The miner.
    pub uid: u16,
    /// Block of its commitment.
    pub commit_block: u64,
    /// SHA-256 (hex) of its sorted canonical rows.
    pub content_hash: &'a str,
    /// Its canonical rows (repeats allowed; the overlap rule uses the distinct ones).
    pub rows: &'a [String],
}

/// For each duplicate, the uid of its group's original (see the module docs), by content:
///
/// ```text
/// linked(a, b) = hash_a == hash_b
///              ∨ (|R_a ∩ R_b| ≥ max(overlap_fraction · min(|R_a|, |R_b|), 1))
/// ```
///
/// with `R` the *set* of a dataset's canonical rows. Requiring at least one shared row means
/// datasets with nothing in common are never duplicates, whatever the fraction (0, negative);
/// a NaN fraction turns the overlap rule off. Uids that are not duplicates are not in the map.
pub fn content_duplicates(
    datasets: &[DatasetIdentity<'_>],
    overlap_fraction: f64,
) -> BTreeMap<u16, u16> {
    let sets: Vec<BTreeSet<&str>> = datasets
        .iter()
        .map(|d| d.rows.iter().map(String::as_str).collect())
        .collect();
    let groups = union_find_groups(datasets.len(), |i, j| {
        if datasets[i].content_hash == datasets[j].content_hash {
            return true;
        }
        let smaller = sets[i].len().min(sets[j].len());
        let shared = sets[i].intersection(&sets[j]).count();
        shared > 0 && shared as f64 >= overlap_fraction * smaller as f64
    });
    originals(datasets.iter().map(|d| (d.uid, d.commit_block)), &groups)
}

/// For each duplicate, the uid of its group's original (see the module docs), by eval loss:
///
/// ```text
/// linked(a, b) = |l_a − l_b| ≤ rel · max(|l_a|, |l_b|)
/// ```
///
/// (`rel` = `duplicate_loss_rel`, 1e-9 by default; two losses of exactly 0 are equal). NaN and
/// infinite losses are never linked. Uids that are not duplicates are not in the map.
pub fn loss_duplicates(miners: &[ScoredMiner], rel: f64) -> BTreeMap<u16, u16> {
    let groups = union_find_groups(miners.len(), |i, j| {
        let (a, b) = (miners[i].eval_loss, miners[j].eval_loss);
        a.is_finite() && b.is_finite() && (a - b).abs() <= rel * a.abs().max(b.abs())
    });
    originals(miners.iter().map(|m| (m.uid, m.commit_block)), &groups)
}

/// The group root of each of `n` items, linking every pair `(i, j)` for which `linked(i, j)`;
/// a root is its group's lowest index.
fn union_find_groups(n: usize, linked: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut parent: Vec<usize> = (0..n).collect();
    for i in 0..n {
        for j in i + 1..n {
            if linked(i, j) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    (0..n).map(|i| find(&mut parent, i)).collect()
}

/// `uid → original uid` for every member of a group of two or more that is not its group's
/// earliest `(commit_block, uid)`.
fn originals(members: impl Iterator<Item = (u16, u64)>, groups: &[usize]) -> BTreeMap<u16, u16> {
    let members: Vec<(u16, u64)> = members.collect();
    let mut earliest: BTreeMap<usize, (u64, u16)> = BTreeMap::new();
    for ((uid, block), group) in members.iter().zip(groups) {
        let e = earliest.entry(*group).or_insert((*block, *uid));
        *e = (*e).min((*block, *uid));
    }
    members
        .iter()
        .zip(groups)
        .filter_map(|((uid, _), group)| {
            let original = earliest.get(group)?.1;
            (original != *uid).then_some((*uid, original))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn duplicates_by_hash_overlap_and_loss_keep_the_earliest() {
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
        // c shares 2 of its 3 rows with a: 2 ≥ 0.5·3 = 1.5 → duplicate of the group's earliest
        // (uid 2, block 10). At 0.9: 2 < 2.7, so only the equal hash links 5 to 2.
        assert_eq!(
            content_duplicates(&ds, 0.5),
            [(5, 2), (7, 2)].into_iter().collect()
        );
        assert_eq!(content_duplicates(&ds, 0.9), [(5, 2)].into_iter().collect());
        // A fraction of 0 still needs one shared row: d shares nothing and stays original.
        assert!(!content_duplicates(&ds, 0.0).contains_key(&1));
        assert_eq!(
            content_duplicates(&ds, f64::NAN),
            [(5, 2)].into_iter().collect()
        );
        // |1 − (1 + 1e-12)| = 1e-12 ≤ 1e-9 · (1 + 1e-12) → linked; uid 4 (block 10) is earlier.
        let losses = [
            ScoredMiner {
                uid: 3,
                commit_block: 20,
                eval_loss: 1.0,
            },
            ScoredMiner {
                uid: 4,
                commit_block: 10,
                eval_loss: 1.0 + 1e-12,
            },
            ScoredMiner {
                uid: 6,
                commit_block: 5,
                eval_loss: 1.5,
            },
        ];
        assert_eq!(
            loss_duplicates(&losses, 1e-9),
            [(3, 4)].into_iter().collect()
        );
        assert!(content_duplicates(&[], 0.5).is_empty());
        assert!(loss_duplicates(&[], 1e-9).is_empty());
    }
}
