//! Scoring, shared by the validator and miner-cli: from losses to the weights set on chain, as
//! pure functions with their formulas in their doc comments (`docs/scoring.md` explains the
//! whole pipeline).
//!
//! - [`duplicates`]: which submissions are copies of an earlier one (by content before
//!   training, by loss after it).
//! - [`eval_queue`]: which submissions are trained this epoch, in which order.
//! - [`win_rate`]: pairwise wins with the earlier commit's advantage, win rates, the softmax,
//!   the moving average, and the winner-takes-all alternative.
//! - [`competitions`]: the emission split between competitions, each scored on its own.
//! - [`emission`]: float weights to the `u16` vector the chain takes, and the version key.
//! - [`report`]: the epoch report, one line per miner.
//! - [`audit`]: one epoch's scoring recomputed from a JSON list (`coordinator score`).
//!
//! Nothing here panics: every function accepts empty input, NaN and infinite values, and
//! out-of-range parameters (the ranges are also checked when `cluster.toml` is loaded).

pub mod audit;
pub mod competitions;
pub mod duplicates;
pub mod emission;
pub mod eval_queue;
pub mod report;
pub mod win_rate;

pub use audit::{score_audit, score_audit_competitions};
pub use competitions::{by_competition, split_by_share};
pub use duplicates::{content_duplicates, loss_duplicates, DatasetIdentity};
pub use emission::{to_u16_weights, version_key};
pub use eval_queue::{select_for_evaluation, Candidate};
pub use report::{EpochReport, MinerLine};
pub use win_rate::{
    epoch_weights, iswin, moving_average, win_rates, winner_takes_all, ScoredMiner,
};
