//! Which submissions count and which get trained, on hand-worked cases: duplicate groups
//! and the EvalQueue order (`docs/scoring.md`).

use std::collections::BTreeMap;

use protocol::scoring::{
    content_duplicates, loss_duplicates, select_for_evaluation, Candidate, DatasetIdentity,
    ScoredMiner,
};

fn rows(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ds<'a>(
    uid: u16,
    commit_block: u64,
    content_hash: &'a str,
    rows: &'a [String],
) -> DatasetIdentity<'a> {
    DatasetIdentity {
        uid,
        commit_block,
        content_hash,
        rows,
    }
}

#[test]
fn overlap_groups_are_transitive_and_point_at_the_earliest() {
    let a = rows(&["1", "2", "3", "4"]);
    let b = rows(&["3", "4", "5", "6"]);
    let c = rows(&["5", "6", "7", "8"]);
    let d = rows(&["x", "y"]);
    // |a ∩ b| = |{3, 4}| = 2 ≥ 0.5·min(4, 4) = 2 → linked; |b ∩ c| = |{5, 6}| = 2 → linked;
    // a ∩ c = ∅ but the group is {a, b, c}. Earliest: c (uid 9, block 10). d shares nothing.
    let input = [
        ds(4, 30, "ha", &a),
        ds(2, 20, "hb", &b),
        ds(9, 10, "hc", &c),
        ds(1, 40, "hd", &d),
    ];
    let expected: BTreeMap<u16, u16> = [(4, 9), (2, 9)].into_iter().collect();
    assert_eq!(content_duplicates(&input, 0.5), expected);
    // The input order does not matter.
    let mut reversed = input.clone();
    reversed.reverse();
    assert_eq!(content_duplicates(&reversed, 0.5), expected);
    // At 0.6 a link needs 0.6·4 = 2.4 → 3 shared rows: no links, no duplicates.
    assert!(content_duplicates(&input, 0.6).is_empty());
}

#[test]
fn equal_hash_links_and_equal_blocks_go_to_the_lower_uid() {
    let a = rows(&["1"]);
    let b = rows(&["2"]);
    // Same hash (whatever the rows): linked. Both at block 7 → the original is uid 3 (lower).
    let input = [ds(8, 7, "same", &a), ds(3, 7, "same", &b)];
    assert_eq!(
        content_duplicates(&input, 0.5),
        [(8, 3)].into_iter().collect()
    );
}

#[test]
fn overlap_counts_distinct_rows() {
    // d: 6 rows but 2 distinct {x, y}; e: 4 distinct {x, a, b, c}. Shared: {x} = 1.
    // Rule on sets: 1 ≥ 0.5·min(2, 4) = 1 → linked; e (block 9) copies d (block 3).
    // (On raw lengths it would be 0.5·min(6, 4) = 2 → not linked.)
    let d = rows(&["x", "x", "x", "x", "y", "y"]);
    let e = rows(&["x", "a", "b", "c"]);
    assert_eq!(
        content_duplicates(&[ds(5, 9, "he", &e), ds(6, 3, "hd", &d)], 0.5),
        [(5, 6)].into_iter().collect()
    );
    // Empty row sets never overlap; only an equal hash links them.
    let none: Vec<String> = Vec::new();
    assert!(content_duplicates(&[ds(1, 1, "p", &none), ds(2, 2, "q", &none)], 0.5).is_empty());
}

#[test]
fn loss_groups_are_transitive() {
    let s = |uid, commit_block, eval_loss| ScoredMiner {
        uid,
        commit_block,
        eval_loss,
    };
    // rel 1e-9: |1 − (1 + 0.8e-9)| = 0.8e-9 ≤ 1e-9·(1 + 0.8e-9) → linked; likewise the second
    // and third (0.8e-9 apart); the first and third are 1.6e-9 apart (not linked directly) but
    // share a group. Earliest: uid 12 at block 3. uid 13 (loss 2.0) stands alone; uids 20 and 21
    // both have loss 0 (|0 − 0| = 0 ≤ 0) → 21 (block 8) copies 20 (block 4). NaN links nothing.
    let miners = [
        s(10, 5, 1.0),
        s(11, 6, 1.0 + 0.8e-9),
        s(12, 3, 1.0 + 1.6e-9),
        s(13, 1, 2.0),
        s(20, 4, 0.0),
        s(21, 8, 0.0),
        s(30, 1, f64::NAN),
        s(31, 2, f64::NAN),
    ];
    assert_eq!(
        loss_duplicates(&miners, 1e-9),
        [(10, 12), (11, 12), (21, 20)].into_iter().collect()
    );
}

#[test]
fn eval_queue_is_fifo_then_by_score_and_capped() {
    let c = |uid, commit_block, ever_evaluated, score| Candidate {
        uid,
        commit_block,
        ever_evaluated,
        score,
    };
    let candidates = vec![
        c(40, 300, true, 0.30),
        c(41, 100, true, 0.30),
        c(42, 50, true, 0.05),
        c(43, 900, true, 0.90),
        c(50, 200, false, 0.0),
        c(51, 120, false, 0.0),
        c(52, 120, false, 0.7),
    ];
    // Fresh by (block, uid): (120, 51), (120, 52), (200, 50).
    // Stale by score ↓, then block ↑: 0.90 (43); 0.30 at block 100 (41) before block 300 (40);
    // 0.05 (42).
    let all = vec![51, 52, 50, 43, 41, 40, 42];
    assert_eq!(select_for_evaluation(&candidates, 32), all);
    assert_eq!(select_for_evaluation(&candidates, 4), all[..4].to_vec());
    let mut shuffled = candidates.clone();
    shuffled.reverse();
    shuffled.swap(1, 4);
    assert_eq!(select_for_evaluation(&shuffled, 32), all);
}
