//! Scoring rules on hand-worked cases (`docs/scoring.md`): iswin, win rates, softmax, moving average,
//! winner takes all, u16 emission, and the `coordinator score` audit built from them.

use std::collections::BTreeMap;

use protocol::config::{ScoringConfig, ScoringPolicy};
use protocol::scoring::{
    epoch_weights, iswin, moving_average, score_audit, to_u16_weights, version_key, win_rates,
    winner_takes_all, ScoredMiner,
};

const EPS: f64 = 0.04;

fn m(uid: u16, commit_block: u64, eval_loss: f64) -> ScoredMiner {
    ScoredMiner {
        uid,
        commit_block,
        eval_loss,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// uid 0: loss 1.00 at block 10; uid 1: 0.97 at block 20; uid 2: 1.20 at block 5.
fn field() -> Vec<ScoredMiner> {
    vec![m(0, 10, 1.0), m(1, 20, 0.97), m(2, 5, 1.2)]
}

#[test]
fn every_iswin_of_the_three_miner_field() {
    // 0 vs 1: 0 is earlier → 1.00·0.96 = 0.96 vs 0.97: 0.96 < 0.97 → 0 wins, 1 does not.
    assert!(iswin(1.0, 10, 0.97, 20, EPS));
    assert!(!iswin(0.97, 20, 1.0, 10, EPS));
    // 0 vs 2: 2 is earlier → 1.00 vs 1.20·0.96 = 1.152: 1.00 < 1.152 → 0 wins, 2 does not.
    assert!(iswin(1.0, 10, 1.2, 5, EPS));
    assert!(!iswin(1.2, 5, 1.0, 10, EPS));
    // 1 vs 2: 2 is earlier → 0.97 vs 1.152 → 1 wins, 2 does not.
    assert!(iswin(0.97, 20, 1.2, 5, EPS));
    assert!(!iswin(1.2, 5, 0.97, 20, EPS));
}

#[test]
fn iswin_edges() {
    // Exactly at the advantage: 1.00·0.96 = 0.96 (exact in f64) vs 0.96 → a tie, no win either way.
    assert!(!iswin(1.0, 1, 0.96, 2, EPS));
    assert!(!iswin(0.96, 2, 1.0, 1, EPS));
    // Same block: no adjustment, 0.99 < 1.00.
    assert!(iswin(0.99, 7, 1.0, 7, EPS));
    assert!(!iswin(1.0, 7, 0.99, 7, EPS));
    // Equal losses at equal blocks: nobody wins.
    assert!(!iswin(1.0, 7, 1.0, 7, EPS));
    // Non-finite losses lose to finite ones and never win.
    assert!(iswin(5.0, 9, f64::INFINITY, 1, EPS));
    assert!(!iswin(f64::NAN, 1, 5.0, 9, EPS));
    assert!(!iswin(f64::NAN, 1, f64::NAN, 9, EPS));
}

#[test]
fn win_rates_and_softmax_of_the_three_miner_field() {
    // Wins from every_iswin_of_the_three_miner_field: 0 → 2, 1 → 1, 2 → 0, over n − 1 = 2.
    let rates = win_rates(&field(), EPS);
    assert_eq!(rates, [(0, 1.0), (1, 0.5), (2, 0.0)].into_iter().collect());

    // Softmax at T = 0.08: rates/T = 12.5, 6.25, 0; minus the max: 0, −6.25, −12.5.
    // z = 1 + e^−6.25 + e^−12.5 = 1 + 0.0019304541362 + 0.0000037266532 = 1.0019341807894
    // weights = 1/z, e^−6.25/z, e^−12.5/z = 0.9980695530440, 0.0019267274969, 0.0000037194591
    let w = epoch_weights(&rates, 0.08);
    assert!((w[&0] - 0.998_069_553_044_0).abs() < 1e-12, "{w:?}");
    assert!((w[&1] - 0.001_926_727_496_9).abs() < 1e-12, "{w:?}");
    assert!((w[&2] - 0.000_003_719_459_1).abs() < 1e-12, "{w:?}");

    // To u16: w1/w0 · 65535 = e^−6.25 · 65535 = 126.512 → 127; e^−12.5 · 65535 = 0.244 → 0,
    // dropped.
    assert_eq!(to_u16_weights(&w), vec![(0, 65535), (1, 127)]);
}

#[test]
fn ties_are_no_wins_and_a_lone_miner_gets_everything() {
    // Two equal losses at the same block: neither wins → rates 0, 0 → softmax 1/2 each.
    let rates = win_rates(&[m(3, 4, 1.0), m(8, 4, 1.0)], EPS);
    assert_eq!(rates, [(3, 0.0), (8, 0.0)].into_iter().collect());
    let w = epoch_weights(&rates, 0.08);
    assert_eq!(w, [(3, 0.5), (8, 0.5)].into_iter().collect());

    // One miner: rate 1 (no comparisons), weight e^0/e^0 = 1, u16 65535.
    let rates = win_rates(&[m(6, 100, 3.0)], EPS);
    assert_eq!(rates, [(6, 1.0)].into_iter().collect());
    let w = epoch_weights(&rates, 0.08);
    assert_eq!(w, [(6, 1.0)].into_iter().collect());
    assert_eq!(to_u16_weights(&w), vec![(6, 65535)]);

    // Nobody scored: nothing to weigh, no weights set.
    assert!(epoch_weights(&win_rates(&[], EPS), 0.08).is_empty());
    assert!(to_u16_weights(&BTreeMap::new()).is_empty());
}

#[test]
fn moving_average_over_three_epochs_with_a_hotkey_change() {
    let keys = |b: &str| -> BTreeMap<u16, String> {
        [(0, "a".to_string()), (1, b.to_string())]
            .into_iter()
            .collect()
    };
    let ep = |v: &[(u16, f64)]| -> BTreeMap<u16, f64> { v.iter().copied().collect() };

    // Epoch 1 from nothing: 0.8·0 + 0.2·0.75 = 0.15; 0.8·0 + 0.2·0.25 = 0.05.
    let s1 = moving_average(
        &BTreeMap::new(),
        &ep(&[(0, 0.75), (1, 0.25)]),
        &keys("b"),
        0.2,
    );
    assert!(close(s1[&0].1, 0.15) && close(s1[&1].1, 0.05), "{s1:?}");
    // Epoch 2: 0.8·0.15 + 0.2·0.25 = 0.12 + 0.05 = 0.17; 0.8·0.05 + 0.2·0.75 = 0.04 + 0.15 = 0.19.
    let s2 = moving_average(&s1, &ep(&[(0, 0.25), (1, 0.75)]), &keys("b"), 0.2);
    assert!(close(s2[&0].1, 0.17) && close(s2[&1].1, 0.19), "{s2:?}");
    // Epoch 3: uid 0 is not scored → 0.8·0.17 + 0 = 0.136; uid 1 has a new hotkey → starts from
    // 0: 0.8·0 + 0.2·1.0 = 0.2.
    let s3 = moving_average(&s2, &ep(&[(1, 1.0)]), &keys("b-new"), 0.2);
    assert!(close(s3[&0].1, 0.136) && close(s3[&1].1, 0.2), "{s3:?}");
    assert_eq!(s3[&1].0, "b-new");
    // A NaN epoch weight counts as 0 and a NaN stored score restarts from 0: 0.8·0 + 0.2·0 = 0.
    let poisoned: BTreeMap<u16, (String, f64)> =
        [(0, ("a".to_string(), f64::NAN))].into_iter().collect();
    let s4 = moving_average(&poisoned, &ep(&[(0, f64::NAN)]), &keys("b"), 0.2);
    assert_eq!(s4[&0].1, 0.0);
    // α = 1 forgets the past: the score is this epoch's weight.
    let s5 = moving_average(&s2, &ep(&[(0, 0.4)]), &keys("b"), 1.0);
    assert!(close(s5[&0].1, 0.4) && close(s5[&1].1, 0.0), "{s5:?}");
}

#[test]
fn winner_takes_all_cut_and_ties() {
    // 39 miners → k = max(⌊39/20⌋, 1) = 1: the lowest loss wins even if others are earlier.
    // uid 7: loss 1.0 at block 100; uid 3: loss 1.1 at block 50; the rest: loss 5.0 at block 1000+.
    let mut miners: Vec<ScoredMiner> = (10..47).map(|u| m(u, 1000 + u as u64, 5.0)).collect();
    miners.push(m(7, 100, 1.0));
    miners.push(m(3, 50, 1.1));
    assert_eq!(miners.len(), 39);
    assert_eq!(winner_takes_all(&miners), Some(7));
    // 40 miners → k = 2: top two are uid 7 (block 100) and uid 3 (block 50) → the earlier, 3.
    miners.push(m(1, 1, 6.0));
    assert_eq!(winner_takes_all(&miners), Some(3));
    // The 41st miner at block 1 has the worst loss: outside the top 2, it cannot win.
    // A NaN loss does not count towards n: 40 entries with one NaN → n = 39 → k = 1 → uid 7.
    miners.pop();
    miners.push(m(2, 1, f64::NAN));
    assert_eq!(winner_takes_all(&miners), Some(7));

    // Tie on the best loss with k = 1: the earlier commit makes the cut (block 5 before block 9).
    assert_eq!(
        winner_takes_all(&[m(4, 9, 2.0), m(5, 5, 2.0), m(6, 1, 3.0)]),
        Some(5)
    );
    // Same loss, same block: the lower uid.
    assert_eq!(winner_takes_all(&[m(9, 5, 2.0), m(8, 5, 2.0)]), Some(8));
    assert_eq!(winner_takes_all(&[]), None);
}

#[test]
fn u16_rounding_is_half_to_even_and_never_overflows() {
    // max = 65535, so w/max·65535 = w (exact for these values); halves go to the even neighbour:
    // 0.5 → 0 (dropped), 1.5 → 2, 2.5 → 2, 3.5 → 4, 4.5 → 4, 65534.5 → 65534.
    let w: BTreeMap<u16, f64> = [
        (0, 65535.0),
        (1, 0.5),
        (2, 1.5),
        (3, 2.5),
        (4, 3.5),
        (5, 4.5),
        (6, 65534.5),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        to_u16_weights(&w),
        vec![(0, 65535), (2, 2), (3, 2), (4, 4), (5, 4), (6, 65534)]
    );
    // 1/2 · 65535 = 32767.5 → 32768 (the even neighbour, up).
    let w: BTreeMap<u16, f64> = [(0, 2.0), (1, 1.0)].into_iter().collect();
    assert_eq!(to_u16_weights(&w), vec![(0, 65535), (1, 32768)]);
    // Huge and tiny scales: only ratios matter. f64::MAX and 1.0 → 65535 and ≈ 4e-304 → 0.
    let w: BTreeMap<u16, f64> = [(0, f64::MAX), (1, 1.0)].into_iter().collect();
    assert_eq!(to_u16_weights(&w), vec![(0, 65535)]);
    let w: BTreeMap<u16, f64> = [(0, 1e-300), (1, 5e-301)].into_iter().collect();
    assert_eq!(to_u16_weights(&w), vec![(0, 65535), (1, 32768)]);
    // NaN, ±∞, negative and zero weights are dropped; all-invalid → no weights.
    let w: BTreeMap<u16, f64> = [
        (0, f64::NAN),
        (1, f64::INFINITY),
        (2, -3.0),
        (3, 0.0),
        (4, f64::NEG_INFINITY),
    ]
    .into_iter()
    .collect();
    assert!(to_u16_weights(&w).is_empty());
    assert_eq!(version_key(1, 0), 1);
    assert_eq!(version_key(1, 9_010_000), 9_010_000);
}

#[test]
fn audit_uses_the_same_functions_and_numbers() {
    // The three-miner field, plus uid 3 with uid 0's hash (later → duplicate), uid 4 with uid 1's
    // loss exactly (later → duplicate by loss) and uid 5 that failed.
    let input = r#"[
        {"uid": 5, "block": 2, "loss": null},
        {"uid": 2, "block": 5, "loss": 1.2, "hash": "h2"},
        {"uid": 4, "block": 21, "loss": 0.97},
        {"uid": 0, "block": 10, "loss": 1.0, "hash": "h0"},
        {"uid": 1, "block": 20, "loss": 0.97},
        {"uid": 3, "block": 30, "loss": 0.5, "hash": "h0"}
    ]"#;
    let out = score_audit(input, &ScoringConfig::default()).expect("valid input");
    assert_eq!(out["policy"], "win_rate");
    let miners = out["miners"].as_array().expect("miners array");
    let uids: Vec<u64> = miners.iter().filter_map(|m| m["uid"].as_u64()).collect();
    assert_eq!(uids, vec![0, 1, 2, 3, 4, 5]);
    let num = |i: usize, k: &str| miners[i][k].as_f64().unwrap_or(f64::NAN);
    // Same numbers as win_rates_and_softmax_of_the_three_miner_field.
    assert_eq!(num(0, "win_rate"), 1.0);
    assert_eq!(num(1, "win_rate"), 0.5);
    assert_eq!(num(2, "win_rate"), 0.0);
    assert!((num(0, "weight") - 0.998_069_553_044_0).abs() < 1e-12);
    assert!((num(1, "weight") - 0.001_926_727_496_9).abs() < 1e-12);
    assert_eq!(miners[0]["u16"], 65535);
    assert_eq!(miners[1]["u16"], 127);
    assert_eq!(miners[2]["u16"], 0);
    assert_eq!(miners[3]["reason"], "duplicate of uid 0");
    assert!(miners[4]["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("duplicate of uid 1")));
    assert_eq!(miners[5]["reason"], "no loss");
    for excluded in &miners[3..6] {
        assert_eq!(excluded["u16"], 0);
        assert_eq!(excluded["weight"].as_f64(), Some(0.0));
    }

    // Winner takes all over the same input: 3 scored miners → k = 1 → the lowest loss, uid 1.
    let wta = ScoringConfig {
        policy: ScoringPolicy::WinnerTakesAll,
        ..ScoringConfig::default()
    };
    let out = score_audit(input, &wta).expect("valid input");
    assert_eq!(out["policy"], "winner_takes_all");
    let u16s: Vec<u64> = out["miners"]
        .as_array()
        .expect("miners array")
        .iter()
        .filter_map(|m| m["u16"].as_u64())
        .collect();
    assert_eq!(u16s, vec![0, 65535, 0, 0, 0, 0]);

    // Bad input names the index and the field.
    let e = score_audit(
        r#"[{"uid": 1, "block": 2, "loss": 1.0}, {"uid": 70000, "block": 2, "loss": 1.0}]"#,
        &ScoringConfig::default(),
    )
    .expect_err("uid out of range");
    assert!(e.starts_with("[1]"), "{e}");
}
