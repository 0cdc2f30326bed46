//! `coordinator score`: the scoring of one epoch recomputed from a JSON list of
//! `{uid, block, loss|null, hash?, competition?}`, with the same functions the validator uses, so
//! anyone can audit a weight vector.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::competitions::{by_competition, split_by_share};
use super::duplicates::{content_duplicates, loss_duplicates, DatasetIdentity};
use super::emission::to_u16_weights;
use super::win_rate::{epoch_weights, win_rates, winner_takes_all, ScoredMiner};
use crate::config::{ScoringConfig, ScoringPolicy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    uid: u16,
    block: u64,
    loss: Option<f64>,
    #[serde(default)]
    hash: Option<String>,
    /// Its competition, when the validator has a `[[competitions]]` table.
    #[serde(default)]
    competition: Option<String>,
}

/// Scores the miners described by `input` (a JSON array) and returns the JSON result:
/// `{"policy", "miners": [{uid, block, loss, win_rate, weight, u16, reason}]}` sorted by uid.
/// Every miner is in one field; see [`score_audit_competitions`] for several competitions.
pub fn score_audit(input: &str, scoring: &ScoringConfig) -> Result<serde_json::Value, String> {
    score_audit_competitions(input, scoring, &BTreeMap::new())
}

/// [`score_audit`] with the miners' `competition` fields: loss duplicates, win rates and epoch
/// weights within each competition, the emission split by `shares` ([`split_by_share`]; a
/// competition not in `shares` has share 1; miners without a competition form one field).
pub fn score_audit_competitions(
    input: &str,
    scoring: &ScoringConfig,
    shares: &BTreeMap<String, f64>,
) -> Result<serde_json::Value, String> {
    let raw: Vec<serde_json::Value> =
        serde_json::from_str(input).map_err(|e| format!("input is not a JSON array: {e}"))?;
    let mut miners = Vec::with_capacity(raw.len());
    for (i, value) in raw.into_iter().enumerate() {
        let m: Input = serde_json::from_value(value).map_err(|e| format!("[{i}]: {e}"))?;
        if m.loss.is_some_and(|l| !l.is_finite()) {
            return Err(format!("[{i}].loss: must be a finite number or null"));
        }
        if miners.iter().any(|o: &Input| o.uid == m.uid) {
            return Err(format!("[{i}].uid: {} appears twice", m.uid));
        }
        miners.push(m);
    }
    let mut reasons: BTreeMap<u16, String> = BTreeMap::new();
    let no_rows: Vec<String> = Vec::new();
    let identities: Vec<DatasetIdentity<'_>> = miners
        .iter()
        .filter(|m| m.loss.is_some())
        .filter_map(|m| {
            m.hash.as_deref().map(|h| DatasetIdentity {
                uid: m.uid,
                commit_block: m.block,
                content_hash: h,
                rows: &no_rows,
            })
        })
        .collect();
    for (uid, original) in content_duplicates(&identities, 1.0) {
        reasons.insert(uid, format!("duplicate of uid {original}"));
    }
    let mut scored: Vec<ScoredMiner> = miners
        .iter()
        .filter(|m| !reasons.contains_key(&m.uid))
        .filter_map(|m| {
            m.loss.map(|eval_loss| ScoredMiner {
                uid: m.uid,
                commit_block: m.block,
                eval_loss,
            })
        })
        .collect();
    let competition_of: BTreeMap<u16, String> = miners
        .iter()
        .map(|m| (m.uid, m.competition.clone().unwrap_or_default()))
        .collect();
    let groups = |scored: &[ScoredMiner]| {
        by_competition(scored, |uid| {
            competition_of.get(&uid).cloned().unwrap_or_default()
        })
    };
    for group in groups(&scored).values() {
        for (uid, original) in loss_duplicates(group, scoring.duplicate_loss_rel) {
            reasons.insert(uid, format!("duplicate of uid {original} (equal loss)"));
        }
    }
    scored.retain(|m| !reasons.contains_key(&m.uid));
    for m in &miners {
        if m.loss.is_none() {
            reasons.insert(m.uid, "no loss".into());
        }
    }
    let mut rates = BTreeMap::new();
    let mut per_competition = BTreeMap::new();
    for (id, group) in groups(&scored) {
        let group_rates = win_rates(&group, scoring.epsilon);
        let weights = match scoring.policy {
            ScoringPolicy::WinRate => epoch_weights(&group_rates, scoring.temperature),
            ScoringPolicy::WinnerTakesAll => winner_takes_all(&group)
                .into_iter()
                .map(|u| (u, 1.0))
                .collect(),
        };
        rates.extend(group_rates);
        per_competition.insert(id, weights);
    }
    let weights = split_by_share(&per_competition, shares);
    let u16s: BTreeMap<u16, u16> = to_u16_weights(&weights).into_iter().collect();
    miners.sort_by_key(|m| m.uid);
    let out: Vec<serde_json::Value> = miners
        .iter()
        .map(|m| {
            serde_json::json!({
                "uid": m.uid,
                "block": m.block,
                "loss": m.loss,
                "win_rate": rates.get(&m.uid),
                "weight": weights.get(&m.uid).copied().unwrap_or(0.0),
                "u16": u16s.get(&m.uid).copied().unwrap_or(0),
                "reason": reasons.get(&m.uid).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let policy = match scoring.policy {
        ScoringPolicy::WinRate => "win_rate",
        ScoringPolicy::WinnerTakesAll => "winner_takes_all",
    };
    Ok(serde_json::json!({ "policy": policy, "miners": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_scores_failures_duplicates_and_the_field() {
        let input = r#"[
            {"uid": 2, "block": 5, "loss": 1.2, "hash": "h2"},
            {"uid": 0, "block": 10, "loss": 1.0, "hash": "h0"},
            {"uid": 1, "block": 20, "loss": 0.97},
            {"uid": 3, "block": 30, "loss": 0.5, "hash": "h0"},
            {"uid": 4, "block": 1, "loss": null}
        ]"#;
        let out = score_audit(input, &ScoringConfig::default()).expect("scores");
        let miners = out["miners"].as_array().expect("miners");
        assert_eq!(
            miners
                .iter()
                .map(|m| m["uid"].as_u64().unwrap_or(99))
                .collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        // Same field as win_rate::tests: win rates 1, 0.5, 0 for uids 0, 1, 2.
        assert_eq!(miners[0]["win_rate"], 1.0);
        assert_eq!(miners[1]["win_rate"], 0.5);
        assert_eq!(miners[2]["win_rate"], 0.0);
        assert_eq!(miners[0]["u16"], 65535);
        assert_eq!(miners[3]["reason"], "duplicate of uid 0");
        assert_eq!(miners[3]["u16"], 0);
        assert_eq!(miners[4]["reason"], "no loss");
        let total: f64 = miners
            .iter()
            .map(|m| m["weight"].as_f64().unwrap_or(0.0))
            .sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn competitions_are_scored_apart_and_paid_their_share() {
        // Equal losses in two competitions are no duplicate; each competition's best takes its
        // share (3 : 1).
        let input = r#"[
            {"uid": 0, "block": 1, "loss": 1.0, "competition": "1"},
            {"uid": 1, "block": 2, "loss": 2.0, "competition": "1"},
            {"uid": 2, "block": 3, "loss": 1.0, "competition": "2"}
        ]"#;
        let wta = ScoringConfig {
            policy: ScoringPolicy::WinnerTakesAll,
            ..ScoringConfig::default()
        };
        let shares = [("1".to_string(), 3.0)].into_iter().collect();
        let out = score_audit_competitions(input, &wta, &shares).expect("scores");
        let miners = out["miners"].as_array().expect("miners");
        let weights: Vec<f64> = miners
            .iter()
            .map(|m| m["weight"].as_f64().unwrap_or(-1.0))
            .collect();
        assert_eq!(weights, [0.75, 0.0, 0.25]);
        assert_eq!(miners[2]["reason"], "");
        assert_eq!(
            (
                miners[1]["win_rate"].as_f64(),
                miners[2]["win_rate"].as_f64()
            ),
            (Some(0.0), Some(1.0))
        );
        // Without the competition fields it is one field, and uid 2 is a loss duplicate of uid 0.
        let one = score_audit(
            &input.replace(r#", "competition": "2""#, r#", "competition": "1""#),
            &wta,
        )
        .expect("scores");
        assert_eq!(
            one["miners"][2]["reason"],
            "duplicate of uid 0 (equal loss)"
        );
    }

    #[test]
    fn bad_input_names_the_index_and_field() {
        let e = score_audit(
            r#"[{"uid": 1, "block": 2, "loss": 1.0}, {"uid": 2, "loss": 1.0}]"#,
            &ScoringConfig::default(),
        )
        .expect_err("missing block");
        assert!(e.starts_with("[1]") && e.contains("block"), "{e}");
        let e = score_audit("{}", &ScoringConfig::default()).expect_err("not an array");
        assert!(e.contains("JSON array"), "{e}");
        let e = score_audit(
            r#"[{"uid": 1, "block": 2, "loss": 1.0, "extra": 1}]"#,
            &ScoringConfig::default(),
        )
        .expect_err("unknown field");
        assert!(e.contains("extra"), "{e}");
    }
}
