//! The epoch report: one line per miner with what the validator decided and why.

use serde::{Deserialize, Serialize};

use crate::text::printable;

/// One miner's line in the epoch report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerLine {
    /// The miner's uid.
    pub uid: u16,
    /// The miner's hotkey (SS58).
    pub hotkey: String,
    /// The block its commitment landed in, when it has one.
    pub commit_block: Option<u64>,
    /// Rows used for training, when the dataset was valid.
    pub rows: Option<usize>,
    /// Eval loss after LoRA training, when it trained.
    pub eval_loss: Option<f64>,
    /// Whether the loss came from the cache rather than training this epoch.
    pub cached: bool,
    /// Fraction of pairwise comparisons won.
    pub win_rate: Option<f64>,
    /// This epoch's weight (softmax of win rates, or winner-takes-all).
    pub epoch_weight: f64,
    /// The moving-average score after this epoch.
    pub score: f64,
    /// The u16 weight set on chain.
    pub weight_u16: u16,
    /// Why the miner got no weight, or "" when it was scored.
    pub reason: String,
    /// Which worker trained it this epoch.
    pub worker: Option<String>,
    /// The competition its commitment names, when the validator has a `[[competitions]]` table
    /// (losses and win rates compare miners of one competition only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub competition: Option<String>,
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch number (1-based, persisted).
    pub epoch: u64,
    /// Chain block when the epoch started.
    pub block: u64,
    /// Jobs trained this epoch.
    pub trained: usize,
    /// Losses reused from the cache.
    pub cached: usize,
    /// Block at which weights were set, when they were.
    pub weights_block: Option<u64>,
    /// Why weights were not set, when they were not.
    pub weights_note: String,
    /// One line per miner, by uid.
    pub miners: Vec<MinerLine>,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Shown for operators: every text that came from outside (hotkeys, reasons quoting a Hub's or
/// a worker's words, notes) passes through [`printable`].
impl std::fmt::Display for EpochReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "epoch {} at block {}: {} trained, {} cached",
            self.epoch, self.block, self.trained, self.cached
        )?;
        // The competition column appears when the lines name more than one competition.
        let named: std::collections::BTreeSet<&str> = self
            .miners
            .iter()
            .filter_map(|m| m.competition.as_deref())
            .collect();
        let competitions = named.len() > 1;
        writeln!(
            f,
            "{:>4}  {:<12}  {:>7}  {:>5}{}  {:>9}  {:>8}  {:>8}  {:>6}  reason",
            "uid",
            "hotkey",
            "commit",
            "rows",
            if competitions { "  competition" } else { "" },
            "loss",
            "win_rate",
            "weight",
            "u16"
        )?;
        for m in &self.miners {
            let competition = match (&m.competition, competitions) {
                (_, false) => String::new(),
                (Some(c), true) => format!("  {:<11}", printable(c)),
                (None, true) => format!("  {:<11}", "-"),
            };
            let hotkey: String = printable(&m.hotkey).chars().take(12).collect();
            let loss = m.eval_loss.map_or_else(
                || "-".into(),
                |l| format!("{l:.5}{}", if m.cached { "*" } else { "" }),
            );
            writeln!(
                f,
                "{:>4}  {:<12}  {:>7}  {:>5}{}  {:>9}  {:>8}  {:>8.4}  {:>6}  {}",
                m.uid,
                hotkey,
                opt(m.commit_block),
                opt(m.rows),
                competition,
                loss,
                m.win_rate.map_or_else(|| "-".into(), |w| format!("{w:.3}")),
                m.epoch_weight,
                m.weight_u16,
                printable(&m.reason)
            )?;
        }
        match self.weights_block {
            Some(block) if self.weights_note.is_empty() => {
                write!(f, "weights set at block {block}")
            }
            Some(block) => write!(
                f,
                "weights {} at block {block}",
                printable(&self.weights_note)
            ),
            None => write!(f, "weights not set: {}", printable(&self.weights_note)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_reaches_the_terminal_escaped() {
        let report = EpochReport {
            epoch: 1,
            block: 2,
            trained: 0,
            cached: 0,
            weights_block: None,
            weights_note: "chain said \u{1b}[2J".into(),
            miners: vec![MinerLine {
                uid: 3,
                hotkey: "5F\u{1b}]0;x\u{7}".into(),
                commit_block: Some(1),
                rows: None,
                eval_loss: None,
                cached: false,
                win_rate: None,
                epoch_weight: 0.0,
                score: 0.0,
                weight_u16: 0,
                reason: "fetch a/b: hub: \u{1b}[31mred\u{202e}".into(),
                worker: None,
                competition: None,
            }],
        };
        let shown = report.to_string();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
            "{shown:?}"
        );
        assert!(shown.contains("\\u{1b}[31mred\\u{202e}"), "{shown}");
        assert!(
            shown.ends_with("weights not set: chain said \\u{1b}[2J"),
            "{shown}"
        );
    }
}
