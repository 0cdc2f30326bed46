//! Configuration types shared by the coordinator, the workers and miner-cli: the `[training]`
//! table and the whole `cluster.toml`. Unknown keys are rejected and every validation error
//! names its key.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::DatasetLimits;

/// A configuration problem, naming the file and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How a miner's LoRA adapter is trained and evaluated (DESIGN.md §5). Every field is a key of the
/// `[training]` table; its hash is part of the loss cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Rows per micro-batch.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Passes over the training rows; 0 evaluates the base model only.
    pub epochs: usize,
    /// Tokens kept per row (right truncation).
    pub max_seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps (step 0 uses lr 0).
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables clipping.
    pub max_grad_norm: f64,
    /// LoRA rank r.
    pub lora_rank: usize,
    /// LoRA alpha (scale = alpha / r).
    pub lora_alpha: f64,
    /// Dropout on the LoRA input during training.
    pub lora_dropout: f64,
    /// Seed for adapter init, dropout and shuffling.
    pub seed: u64,
    /// Shuffle the training rows every epoch (from the seed).
    pub shuffle: bool,
    /// Rows of a miner dataset used (the first ones in file order).
    pub max_rows: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            micro_batch: 2,
            grad_accum: 4,
            epochs: 2,
            max_seq_len: 4096,
            lr: 2e-4,
            warmup_steps: 5,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            lora_rank: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.1,
            seed: 42,
            shuffle: true,
            max_rows: 250,
        }
    }
}

impl TrainingConfig {
    /// Checks every value's range; errors read `training.<key>: <reason>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, reason: &str| Err(ConfigError(format!("training.{key}: {reason}")));
        if self.micro_batch == 0 {
            return fail("micro_batch", "must be at least 1");
        }
        if self.grad_accum == 0 {
            return fail("grad_accum", "must be at least 1");
        }
        if self.max_seq_len < 2 {
            return fail("max_seq_len", "must be at least 2");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return fail("lr", "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail("weight_decay", "must be a number >= 0");
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return fail(
                "max_grad_norm",
                "must be a number >= 0 (0 disables clipping)",
            );
        }
        if self.lora_rank == 0 {
            return fail("lora_rank", "must be at least 1");
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return fail("lora_alpha", "must be a positive number");
        }
        if !(self.lora_dropout.is_finite() && (0.0..1.0).contains(&self.lora_dropout)) {
            return fail("lora_dropout", "must be in [0, 1)");
        }
        if self.max_rows == 0 {
            return fail("max_rows", "must be at least 1");
        }
        Ok(())
    }

    /// SHA-256 (hex) of the canonical JSON of every setting: the config part of the loss cache key.
    pub fn hash(&self) -> String {
        let json = serde_json::to_value(self)
            .map(|v| v.to_string())
            .unwrap_or_default();
        hex::encode(Sha256::digest(json.as_bytes()))
    }
}

/// Where the validator talks to: the embedded devnet or a subtensor network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Embedded chain in a SQLite file, local directory hub, tiny model, CPU.
    #[default]
    Devnet,
    /// A local subtensor node.
    Local,
    /// The Bittensor test network.
    Test,
    /// The Bittensor main network.
    Finney,
}

/// How weights are derived from losses (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScoringPolicy {
    /// Pairwise win rates, softmax, moving average.
    #[default]
    WinRate,
    /// The earliest commit among the best 5 % gets all the weight (FLock OFF's newer rule).
    WinnerTakesAll,
}

/// The `[coordinator]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// Directory of the validator state, devnet chain, local hub and keys.
    pub state_dir: String,
    /// Most submissions trained per epoch.
    pub max_miners_per_epoch: usize,
    /// Wall-clock limit of one training job.
    pub job_timeout_secs: u64,
    /// Pause between epochs when running continuously.
    pub epoch_interval_secs: u64,
    /// Address of the Prometheus endpoint; empty = off.
    pub metrics_listen: String,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            state_dir: "state".into(),
            max_miners_per_epoch: 32,
            job_timeout_secs: 3600,
            epoch_interval_secs: 60,
            metrics_listen: String::new(),
        }
    }
}

/// The `[model]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `"tiny"` (generated under the state directory) or a local model directory.
    pub source: String,
    /// Seed of the generated tiny model.
    pub tiny_seed: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            source: "tiny".into(),
            tiny_seed: 7,
        }
    }
}

/// The `[eval]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// The evaluation set: a local JSONL file.
    pub set: String,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            set: "eval_data/data.jsonl".into(),
        }
    }
}

/// The `[devnet]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevnetConfig {
    /// Blocks per tempo (weights are set at most once per tempo).
    pub tempo: u64,
    /// Blocks between two weight settings of one validator.
    pub weights_rate_limit: u64,
    /// Wall time of one block.
    pub block_time_ms: u64,
    /// Register the demo miners of `demo_dir` on first run.
    pub demo_miners: bool,
    /// Where the demo miners' datasets are.
    pub demo_dir: String,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            tempo: 100,
            weights_rate_limit: 100,
            block_time_ms: 12_000,
            demo_miners: true,
            demo_dir: "eval_data/demo".into(),
        }
    }
}

/// The `[scoring]` table (DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Win rates + softmax + moving average, or winner takes all.
    pub policy: ScoringPolicy,
    /// Advantage of the earlier commit: its loss is multiplied by (1 − epsilon).
    pub epsilon: f64,
    /// Softmax temperature over win rates.
    pub temperature: f64,
    /// Moving-average weight of the new epoch.
    pub alpha: f64,
    /// Row overlap (fraction of the smaller dataset) that makes a duplicate.
    pub duplicate_overlap: f64,
    /// Relative difference under which two losses are a duplicate.
    pub duplicate_loss_rel: f64,
    /// Our weights version key (the chain's is used when larger).
    pub version_key: u64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            policy: ScoringPolicy::WinRate,
            epsilon: 0.04,
            temperature: 0.08,
            alpha: 0.2,
            duplicate_overlap: 0.5,
            duplicate_loss_rel: 1e-9,
            version_key: 1,
        }
    }
}

/// One `[[workers]]` entry: an in-process worker on a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

fn default_workers() -> Vec<WorkerConfig> {
    vec![WorkerConfig {
        device: "cpu".into(),
    }]
}

/// The `[cluster]` table: the coordinator's side of the QUIC cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterNetConfig {
    /// Directory of this node's key pair (`<name>.cert.der`, `<name>.key.der`), made by `keygen`.
    pub pki_dir: String,
    /// QUIC keep-alive interval.
    pub keep_alive_ms: u64,
    /// A connection silent this long is dead.
    pub idle_timeout_ms: u64,
    /// Application heartbeat interval during a job.
    pub heartbeat_ms: u64,
    /// A worker missing heartbeats this long is presumed dead and its job moves.
    pub worker_timeout_ms: u64,
}

impl Default for ClusterNetConfig {
    fn default() -> Self {
        Self {
            pki_dir: "pki".into(),
            keep_alive_ms: 2_000,
            idle_timeout_ms: 10_000,
            heartbeat_ms: 1_000,
            worker_timeout_ms: 10_000,
        }
    }
}

/// A `[[remote_workers]]` entry: a `worker serve` process the coordinator connects to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWorkerConfig {
    /// Name in reports.
    pub id: String,
    /// `host:port` of its QUIC listener.
    pub address: String,
    /// SHA-256 of its certificate (printed by `worker keygen`).
    pub fingerprint: String,
}

/// The `[worker_node]` table, read by `worker serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerNodeConfig {
    /// This worker's name.
    pub id: String,
    /// UDP address to listen on.
    pub listen: String,
    /// SHA-256 of the coordinator's certificate (printed by `coordinator keygen`).
    pub coordinator_fingerprint: String,
    /// Devices to run jobs on, one job per device at a time.
    pub devices: Vec<String>,
    /// Simulate training instead of running it: sleep this many microseconds per training token
    /// (0 = real training). For the scale benchmark.
    pub simulate_us_per_token: u64,
}

impl Default for WorkerNodeConfig {
    fn default() -> Self {
        Self {
            id: "worker".into(),
            listen: "0.0.0.0:7443".into(),
            coordinator_fingerprint: String::new(),
            devices: vec!["cpu".into()],
            simulate_us_per_token: 0,
        }
    }
}

/// The whole `cluster.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Devnet or a subtensor network.
    pub mode: Mode,
    /// The subnet.
    pub netuid: u16,
    /// `[coordinator]`.
    pub coordinator: CoordinatorConfig,
    /// `[model]`.
    pub model: ModelConfig,
    /// `[eval]`.
    pub eval: EvalConfig,
    /// `[devnet]`.
    pub devnet: DevnetConfig,
    /// `[scoring]`.
    pub scoring: ScoringConfig,
    /// `[training]`.
    pub training: TrainingConfig,
    /// `[dataset]`.
    pub dataset: DatasetLimits,
    /// `[[workers]]`: in-process workers (none is fine when remote workers exist).
    #[serde(default = "default_workers")]
    pub workers: Vec<WorkerConfig>,
    /// `[cluster]`.
    pub cluster: ClusterNetConfig,
    /// `[[remote_workers]]`.
    pub remote_workers: Vec<RemoteWorkerConfig>,
    /// `[worker_node]` (only `worker serve` reads it).
    pub worker_node: WorkerNodeConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Devnet,
            netuid: 1,
            coordinator: CoordinatorConfig::default(),
            model: ModelConfig::default(),
            eval: EvalConfig::default(),
            devnet: DevnetConfig::default(),
            scoring: ScoringConfig::default(),
            training: TrainingConfig::default(),
            dataset: DatasetLimits::default(),
            workers: default_workers(),
            cluster: ClusterNetConfig::default(),
            remote_workers: Vec::new(),
            worker_node: WorkerNodeConfig::default(),
        }
    }
}

impl ClusterConfig {
    /// Reads and validates a cluster.toml file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `source` names the file in errors.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            let at = e
                .span()
                .map(|span| {
                    format!(
                        " (line {})",
                        text[..span.start.min(text.len())].matches('\n').count() + 1
                    )
                })
                .unwrap_or_default();
            ConfigError(format!("{source}{at}: {msg}"))
        })?;
        config
            .validate()
            .map_err(|e| ConfigError(format!("{source}: {e}")))?;
        Ok(config)
    }

    /// Checks values across tables; errors name the key, e.g. `scoring.temperature: must be > 0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, reason: &str| Err(ConfigError(format!("{key}: {reason}")));
        self.training.validate()?;
        let s = &self.scoring;
        if !(s.epsilon.is_finite() && (0.0..1.0).contains(&s.epsilon)) {
            return fail("scoring.epsilon", "must be in [0, 1)");
        }
        if !(s.temperature.is_finite() && s.temperature > 0.0) {
            return fail("scoring.temperature", "must be > 0");
        }
        if !(s.alpha.is_finite() && s.alpha > 0.0 && s.alpha <= 1.0) {
            return fail("scoring.alpha", "must be in (0, 1]");
        }
        if !(s.duplicate_overlap.is_finite()
            && s.duplicate_overlap > 0.0
            && s.duplicate_overlap <= 1.0)
        {
            return fail("scoring.duplicate_overlap", "must be in (0, 1]");
        }
        if !(s.duplicate_loss_rel.is_finite() && s.duplicate_loss_rel >= 0.0) {
            return fail("scoring.duplicate_loss_rel", "must be >= 0");
        }
        if self.coordinator.max_miners_per_epoch == 0 {
            return fail("coordinator.max_miners_per_epoch", "must be at least 1");
        }
        if self.coordinator.job_timeout_secs == 0 {
            return fail("coordinator.job_timeout_secs", "must be at least 1");
        }
        if self.coordinator.state_dir.is_empty() {
            return fail("coordinator.state_dir", "must not be empty");
        }
        if !self.coordinator.metrics_listen.is_empty()
            && self
                .coordinator
                .metrics_listen
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return fail(
                "coordinator.metrics_listen",
                "must be empty or an address like 127.0.0.1:9100",
            );
        }
        if self.devnet.tempo == 0 {
            return fail("devnet.tempo", "must be at least 1");
        }
        if self.dataset.max_rows == 0 {
            return fail("dataset.max_rows", "must be at least 1");
        }
        if self.dataset.max_json_depth < 3 {
            return fail(
                "dataset.max_json_depth",
                "must be at least 3 (a row nests three levels)",
            );
        }
        if self.workers.is_empty() && self.remote_workers.is_empty() {
            return fail(
                "workers",
                "at least one [[workers]] or [[remote_workers]] entry is needed",
            );
        }
        for (i, w) in self.remote_workers.iter().enumerate() {
            if w.address.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError(format!(
                    "remote_workers[{i}].address: {:?} is not host:port",
                    w.address
                )));
            }
            if w.fingerprint.len() != 64 || !w.fingerprint.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError(format!(
                    "remote_workers[{i}].fingerprint: must be 64 hex digits (SHA-256)"
                )));
            }
        }
        let c = &self.cluster;
        if c.keep_alive_ms == 0 || c.keep_alive_ms >= c.idle_timeout_ms {
            return fail(
                "cluster.keep_alive_ms",
                "must be positive and below cluster.idle_timeout_ms",
            );
        }
        if c.heartbeat_ms == 0 || c.heartbeat_ms >= c.worker_timeout_ms {
            return fail(
                "cluster.heartbeat_ms",
                "must be positive and below cluster.worker_timeout_ms",
            );
        }
        for (i, w) in self.workers.iter().enumerate() {
            let ok = w.device == "cpu"
                || w.device == "cuda"
                || w.device
                    .strip_prefix("cuda:")
                    .is_some_and(|n| n.parse::<usize>().is_ok());
            if !ok {
                return Err(ConfigError(format!(
                    "workers[{i}].device: {:?} is not cpu, cuda or cuda:N",
                    w.device
                )));
            }
        }
        if self.model.source.is_empty() {
            return fail("model.source", "must be \"tiny\" or a model directory");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = ClusterConfig::from_toml_str("", "cluster.toml").expect("valid");
        assert_eq!(c, ClusterConfig::default());
        assert_eq!(c.training.lora_rank, 16);
        assert_eq!(c.workers.len(), 1);
    }

    #[test]
    fn unknown_keys_are_named_at_top_level_and_nested() {
        let e = ClusterConfig::from_toml_str("bogus = 1\n", "cluster.toml").expect_err("unknown");
        assert!(e.0.contains("cluster.toml") && e.0.contains("bogus"), "{e}");
        let e = ClusterConfig::from_toml_str("[scoring]\ntemprature = 0.1\n", "cluster.toml")
            .expect_err("typo");
        assert!(e.0.contains("temprature") && e.0.contains("line 2"), "{e}");
        let e =
            ClusterConfig::from_toml_str("[training]\nlora_rnk = 4\n", "c.toml").expect_err("typo");
        assert!(e.0.contains("lora_rnk"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            ("[scoring]\ntemperature = 0.0", "scoring.temperature"),
            ("[scoring]\nalpha = 1.5", "scoring.alpha"),
            ("[scoring]\nepsilon = 1.0", "scoring.epsilon"),
            (
                "[scoring]\nduplicate_overlap = 0.0",
                "scoring.duplicate_overlap",
            ),
            ("[training]\nlora_rank = 0", "training.lora_rank"),
            ("[training]\nlora_dropout = 1.0", "training.lora_dropout"),
            ("[training]\nlr = -1.0", "training.lr"),
            ("[training]\nmicro_batch = 0", "training.micro_batch"),
            (
                "[coordinator]\nmax_miners_per_epoch = 0",
                "coordinator.max_miners_per_epoch",
            ),
            (
                "[coordinator]\nmetrics_listen = \"nowhere\"",
                "coordinator.metrics_listen",
            ),
            ("workers = []", "workers"),
            (
                "[[remote_workers]]\nid = \"a\"\naddress = \"nowhere\"\nfingerprint = \"00\"",
                "remote_workers[0].address",
            ),
            ("[cluster]\nkeep_alive_ms = 20000", "cluster.keep_alive_ms"),
            ("[[workers]]\ndevice = \"tpu\"", "workers[0].device"),
        ];
        for (text, key) in cases {
            let e = ClusterConfig::from_toml_str(text, "cluster.toml").expect_err(text);
            assert!(e.0.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn policy_and_mode_parse() {
        let c = ClusterConfig::from_toml_str(
            "mode = \"finney\"\nnetuid = 96\n[scoring]\npolicy = \"winner_takes_all\"\n[[workers]]\ndevice = \"cuda:1\"",
            "c",
        )
        .expect("valid");
        assert_eq!(c.mode, Mode::Finney);
        assert_eq!(c.scoring.policy, ScoringPolicy::WinnerTakesAll);
        assert_eq!(c.workers[0].device, "cuda:1");
    }

    #[test]
    fn training_hash_changes_with_any_setting() {
        let a = TrainingConfig::default();
        let b = TrainingConfig {
            seed: 43,
            ..a.clone()
        };
        assert_eq!(a.hash(), TrainingConfig::default().hash());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
    }
}
