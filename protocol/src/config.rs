//! Configuration types shared by the coordinator, the workers and miner-cli: the `[training]`
//! table and the whole `cluster.toml`. Unknown keys are rejected and every validation error
//! names its key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::DatasetLimits;
use crate::json;

/// A configuration problem: which file, line and key, and why.
///
/// Displays as `cluster.toml:31: scoring.temperature: must be > 0`; the parts that are unknown
/// are left out (`training.lora_rank: must be at least 1` from [`TrainingConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (as given to [`ClusterConfig::load`] or [`ClusterConfig::from_toml_str`]).
    pub file: Option<String>,
    /// 1-based line of the offending key or value, when it is written in the file.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `scoring.temperature` or `workers[1].device`.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl ConfigError {
    /// A problem with one key's value, not yet placed in a file.
    fn key(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            key: Some(key.into()),
            reason: reason.into(),
        }
    }

    /// Places the error in `file`, finding the key's line in `text` when it is written there.
    fn in_file(mut self, file: &str, text: &str) -> Self {
        self.file = Some(file.to_string());
        if self.line.is_none() {
            self.line = self
                .key
                .as_deref()
                .and_then(|key| toml_path::line_of_key(text, key));
        }
        self
    }
}

/// How a miner's LoRA adapter is trained and evaluated (`docs/training.md`). Every field is a key of the
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
    /// Checks every value's range; errors name the key, e.g. `training.lora_rank: must be at
    /// least 1`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail =
            |key: &str, reason: &str| Err(ConfigError::key(format!("training.{key}"), reason));
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
            return fail("lr", "must be a finite number > 0");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail("weight_decay", "must be a finite number >= 0");
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return fail(
                "max_grad_norm",
                "must be a finite number >= 0 (0 disables clipping)",
            );
        }
        if self.lora_rank == 0 {
            return fail("lora_rank", "must be at least 1");
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return fail("lora_alpha", "must be a finite number > 0");
        }
        if !(self.lora_dropout.is_finite() && (0.0..1.0).contains(&self.lora_dropout)) {
            return fail("lora_dropout", "must be in [0, 1)");
        }
        if self.max_rows == 0 {
            return fail("max_rows", "must be at least 1");
        }
        Ok(())
    }

    /// SHA-256 (lowercase hex) of the canonical JSON (see [`crate::json`]) of every setting: the
    /// config part of the loss cache key. Any setting that changes changes the hash.
    pub fn hash(&self) -> String {
        // Serialising plain numbers, strings and booleans cannot fail; a non-finite float would
        // become null (validation refuses those).
        let canonical = serde_json::to_value(self)
            .map(|v| json::canonical_json(&v))
            .unwrap_or_default();
        hex::encode(Sha256::digest(canonical.as_bytes()))
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

/// How weights are derived from losses (`docs/scoring.md`).
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
    /// The evaluation set: a local JSONL file, or `org/name@sha` on the Hub. A
    /// `[[competitions]]` entry may name its own.
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

/// The `[subtensor]` table: how a validator or miner reaches a subtensor node and which wallet
/// signs (modes `local`, `test`, `finney`). The command-line flags `--subtensor.network`,
/// `--netuid`, `--wallet.name`, `--wallet.hotkey` and `--wallet.path` override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubtensorConfig {
    /// A `ws://` or `wss://` URL; empty: the public endpoint of `mode`.
    pub endpoint: String,
    /// Limit of every chain request, and of waiting for an extrinsic's inclusion.
    pub timeout_secs: u64,
    /// Wallet name (`~/.bittensor/wallets/<name>`).
    pub wallet_name: String,
    /// Hotkey name (`<wallet>/hotkeys/<hotkey>`).
    pub wallet_hotkey: String,
    /// The wallets directory; `~` is the home directory.
    pub wallet_path: String,
}

impl Default for SubtensorConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            timeout_secs: 60,
            wallet_name: "default".into(),
            wallet_hotkey: "default".into(),
            wallet_path: "~/.bittensor/wallets".into(),
        }
    }
}

/// Which dataset hub a validator and miner use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HubKind {
    /// The devnet's local directory in mode `devnet`, the Hugging Face Hub otherwise.
    #[default]
    Auto,
    /// The local directory hub under the state directory.
    Local,
    /// The Hugging Face Hub (or a server speaking its API at `endpoint` / `HF_ENDPOINT`).
    Huggingface,
}

/// The `[hub]` table: the dataset hub (the Hugging Face Hub in modes `local`, `test` and
/// `finney`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Where datasets live: `auto` (the devnet's local directory hub in mode `devnet`, the
    /// Hugging Face Hub otherwise), `local` or `huggingface`.
    pub kind: HubKind,
    /// The Hub's URL; empty: `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: String,
    /// The download cache; empty: the standard one (`HF_HUB_CACHE`, `HF_HOME`/hub, ...).
    pub cache_dir: String,
    /// Datasets fetched at once.
    pub parallel_downloads: usize,
    /// Limit on fetching one dataset file (a miner's `data.jsonl`, an eval set) from the Hub,
    /// retries included, in seconds.
    pub download_deadline_secs: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            kind: HubKind::Auto,
            endpoint: String::new(),
            cache_dir: String::new(),
            parallel_downloads: 4,
            download_deadline_secs: 300,
        }
    }
}

/// The `[scoring]` table (`docs/scoring.md`).
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

/// One `[[competitions]]` entry: a competition id miners commit under, with its eval set, row
/// limit and training overrides. Without any entry every competition id is scored with the
/// top-level settings; with entries, a commitment naming another id gets weight 0 ("unknown
/// competition X").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompetitionConfig {
    /// The id in `repo:competition_id:sha` commitments.
    pub id: String,
    /// Its eval set (`org/name@sha` or a local JSONL); empty: `[eval] set`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub eval_set: String,
    /// Rows of a miner dataset used (overrides `training.max_rows`; at most `dataset.max_rows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// `[training]` keys that differ for this competition, e.g. `{ epochs = 3 }`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub training: toml::Table,
    /// Its share of the emission, relative to the other entries' (default 1: equal shares).
    /// Losses are compared only within a competition; each competition's weights are scaled by
    /// its share (`docs/scoring.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_share: Option<f64>,
}

impl CompetitionConfig {
    /// Its share of the emission: `reward_share`, 1 when not given.
    pub fn share(&self) -> f64 {
        self.reward_share.unwrap_or(1.0)
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

impl ClusterNetConfig {
    /// The QUIC keep-alive interval (`keep_alive_ms`).
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }

    /// How long a silent QUIC connection lives (`idle_timeout_ms`).
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

impl ClusterConfig {
    /// Whether datasets go through the Hugging Face Hub (API) rather than the local directory.
    pub fn uses_huggingface(&self) -> bool {
        match self.hub.kind {
            HubKind::Auto => self.mode != Mode::Devnet,
            HubKind::Local => false,
            HubKind::Huggingface => true,
        }
    }

    /// Whether `[model] source` asks for the tiny model generated under the state directory.
    pub fn uses_tiny_model(&self) -> bool {
        self.model.source == "tiny"
    }
}

/// The directory a config file's relative paths resolve against: the file's own directory, or
/// `.` for a bare file name.
pub fn config_base(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the files of one validator (and of the miner-cli that shares its config) live: the
/// config's relative paths resolved against the config file's directory, and the layout of the
/// state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The state directory (`[coordinator] state_dir`).
    pub state_dir: PathBuf,
    /// The directory relative paths of the config are resolved against.
    pub base: PathBuf,
}

impl Paths {
    /// Paths for `config`, read from the file at `config_path`.
    pub fn new(config: &ClusterConfig, config_path: &Path) -> Self {
        let base = config_base(config_path);
        Self {
            state_dir: base.join(&config.coordinator.state_dir),
            base,
        }
    }

    /// `path` relative to the config's directory unless absolute.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The validator's SQLite state.
    pub fn state_db(&self) -> PathBuf {
        self.state_dir.join("validator.sqlite")
    }

    /// The last finished epoch's report as JSON, which the validator rewrites after each epoch
    /// for readers that must not open its database (`miner-cli status` and `eval`).
    pub fn last_report(&self) -> PathBuf {
        self.state_dir.join("last_report.json")
    }

    /// The devnet chain's SQLite file.
    pub fn devnet_db(&self) -> PathBuf {
        self.state_dir.join("devnet.sqlite")
    }

    /// The local hub's directory.
    pub fn hub_dir(&self) -> PathBuf {
        self.state_dir.join("hub")
    }

    /// Wallets of the devnet's validator and miners.
    pub fn wallets(&self) -> PathBuf {
        self.state_dir.join("wallets")
    }

    /// The model directory `[model] source` names when it is not a Hub repo: the tiny model's
    /// place under the state directory for `"tiny"` (which the engine generates there on first
    /// use), else the path itself.
    pub fn model_dir(&self, config: &ClusterConfig) -> PathBuf {
        if config.uses_tiny_model() {
            self.state_dir.join("tiny-model")
        } else {
            self.resolve(&config.model.source)
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
    /// `[subtensor]`.
    pub subtensor: SubtensorConfig,
    /// `[hub]`.
    pub hub: HubConfig,
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
    /// `[[competitions]]`: empty accepts every competition id.
    pub competitions: Vec<CompetitionConfig>,
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
            subtensor: SubtensorConfig::default(),
            hub: HubConfig::default(),
            scoring: ScoringConfig::default(),
            training: TrainingConfig::default(),
            dataset: DatasetLimits::default(),
            workers: default_workers(),
            cluster: ClusterNetConfig::default(),
            remote_workers: Vec::new(),
            worker_node: WorkerNodeConfig::default(),
            competitions: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// Reads, parses and validates a cluster.toml file; errors start with its path.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(name.clone()),
            line: None,
            key: None,
            reason: e.to_string(),
        })?;
        Self::from_toml_str(&text, &name)
    }

    /// Parses and validates TOML text; `source` names the file in errors. Every key is optional
    /// (an empty text gives [`ClusterConfig::default`]) and unknown keys are errors that name the
    /// key with its table and line, e.g. `cluster.toml:2: scoring.temprature: unknown field ...`.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let span = e.span();
            ConfigError {
                file: Some(source.to_string()),
                line: span.as_ref().map(|s| toml_path::line_at(text, s.start)),
                key: span.and_then(|s| toml_path::key_at(text, s)),
                reason: e.message().trim().to_string(),
            }
        })?;
        config.validate().map_err(|e| e.in_file(source, text))?;
        Ok(config)
    }

    /// The configuration as TOML text that [`ClusterConfig::from_toml_str`] reads back equal.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError {
            file: None,
            line: None,
            key: None,
            reason: format!("cannot be written as TOML: {e}"),
        })
    }

    /// Checks values and their relations across tables; errors name the key, e.g.
    /// `scoring.temperature: must be > 0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, reason: &str| Err(ConfigError::key(key, reason));
        self.training.validate()?;
        let endpoint = &self.subtensor.endpoint;
        let websocket = endpoint.starts_with("ws://") || endpoint.starts_with("wss://");
        if !endpoint.is_empty() && !websocket {
            return fail(
                "subtensor.endpoint",
                "must be a ws:// or wss:// URL (or empty)",
            );
        }
        if self.subtensor.timeout_secs == 0 {
            return fail("subtensor.timeout_secs", "must be at least 1");
        }
        if self.hub.parallel_downloads == 0 {
            return fail("hub.parallel_downloads", "must be at least 1");
        }
        if self.hub.download_deadline_secs == 0 {
            return fail("hub.download_deadline_secs", "must be at least 1");
        }
        if self.training.max_rows > self.dataset.max_rows {
            return Err(ConfigError::key(
                "training.max_rows",
                format!(
                    "{} exceeds dataset.max_rows ({}): only that many rows are read and checked",
                    self.training.max_rows, self.dataset.max_rows
                ),
            ));
        }
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
            return fail("scoring.duplicate_loss_rel", "must be a finite number >= 0");
        }
        let c = &self.coordinator;
        if c.state_dir.is_empty() {
            return fail("coordinator.state_dir", "must not be empty");
        }
        if c.max_miners_per_epoch == 0 {
            return fail("coordinator.max_miners_per_epoch", "must be at least 1");
        }
        if c.job_timeout_secs == 0 {
            return fail("coordinator.job_timeout_secs", "must be at least 1");
        }
        if !c.metrics_listen.is_empty() && c.metrics_listen.parse::<SocketAddr>().is_err() {
            return fail(
                "coordinator.metrics_listen",
                "must be empty (off) or an address like 127.0.0.1:9100",
            );
        }
        if self.model.source.is_empty() {
            return fail("model.source", "must be \"tiny\" or a model directory");
        }
        if self.eval.set.is_empty() {
            return fail("eval.set", "must name the evaluation set");
        }
        if self.devnet.tempo == 0 {
            return fail("devnet.tempo", "must be at least 1");
        }
        let d = &self.dataset;
        if d.max_file_bytes == 0 {
            return fail("dataset.max_file_bytes", "must be at least 1");
        }
        if d.max_file_bytes > crate::dataset::MAX_JOB_DATASET_BYTES {
            return Err(ConfigError::key(
                "dataset.max_file_bytes",
                format!(
                    "{} exceeds {}, the largest dataset one job frame carries to a worker",
                    d.max_file_bytes,
                    crate::dataset::MAX_JOB_DATASET_BYTES
                ),
            ));
        }
        if d.max_line_bytes == 0 {
            return fail("dataset.max_line_bytes", "must be at least 1");
        }
        if d.max_rows == 0 {
            return fail("dataset.max_rows", "must be at least 1");
        }
        if d.max_json_depth < 3 {
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
        for (i, w) in self.workers.iter().enumerate() {
            if !valid_device(&w.device) {
                return Err(ConfigError::key(
                    format!("workers[{i}].device"),
                    format!(
                        "{} is not cpu, cuda or cuda:N",
                        json::preview(&w.device, 40)
                    ),
                ));
            }
        }
        for (i, w) in self.remote_workers.iter().enumerate() {
            let key = |field: &str| format!("remote_workers[{i}].{field}");
            if w.id.is_empty() {
                return Err(ConfigError::key(key("id"), "must not be empty"));
            }
            if self.remote_workers[..i]
                .iter()
                .any(|other| other.id == w.id)
            {
                return Err(ConfigError::key(
                    key("id"),
                    format!("{} is used by an earlier entry", json::preview(&w.id, 40)),
                ));
            }
            if w.address.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::key(
                    key("address"),
                    format!(
                        "{} is not an IP:port address (e.g. 10.0.0.2:7443)",
                        json::preview(&w.address, 40)
                    ),
                ));
            }
            if !is_sha256_hex(&w.fingerprint) {
                return Err(ConfigError::key(
                    key("fingerprint"),
                    "must be 64 hex digits (SHA-256, printed by `worker keygen`)",
                ));
            }
        }
        let n = &self.cluster;
        if n.keep_alive_ms == 0 || n.keep_alive_ms >= n.idle_timeout_ms {
            return fail(
                "cluster.keep_alive_ms",
                "must be positive and below cluster.idle_timeout_ms",
            );
        }
        if n.heartbeat_ms == 0 || n.heartbeat_ms >= n.worker_timeout_ms {
            return fail(
                "cluster.heartbeat_ms",
                "must be positive and below cluster.worker_timeout_ms",
            );
        }
        let w = &self.worker_node;
        if w.listen.parse::<SocketAddr>().is_err() {
            return fail(
                "worker_node.listen",
                "must be an IP:port address (e.g. 0.0.0.0:7443)",
            );
        }
        if !w.coordinator_fingerprint.is_empty() && !is_sha256_hex(&w.coordinator_fingerprint) {
            return fail(
                "worker_node.coordinator_fingerprint",
                "must be 64 hex digits (SHA-256, printed by `coordinator keygen`)",
            );
        }
        if w.devices.is_empty() {
            return fail("worker_node.devices", "must list at least one device");
        }
        for (i, device) in w.devices.iter().enumerate() {
            if !valid_device(device) {
                return Err(ConfigError::key(
                    format!("worker_node.devices[{i}]"),
                    format!("{} is not cpu, cuda or cuda:N", json::preview(device, 40)),
                ));
            }
        }
        self.validate_competitions()
    }

    /// Checks the `[[competitions]]` entries: valid, unique ids; row limits within
    /// `dataset.max_rows`; training overrides that name `[training]` keys with valid values; at
    /// most [`crate::wire::MAX_EVAL_SETS`] distinct eval sets in all.
    fn validate_competitions(&self) -> Result<(), ConfigError> {
        let sets = self.eval_sets().len();
        if sets > crate::wire::MAX_EVAL_SETS {
            return Err(ConfigError::key(
                "competitions",
                format!(
                    "{sets} distinct eval sets (eval.set and the competitions' eval_set); \
                     workers keep at most {}",
                    crate::wire::MAX_EVAL_SETS
                ),
            ));
        }
        for (i, c) in self.competitions.iter().enumerate() {
            let key = |field: &str| format!("competitions[{i}].{field}");
            if !crate::commitment::valid_competition_id(&c.id) {
                return Err(ConfigError::key(
                    key("id"),
                    format!(
                        "{} is not a competition id (1 to 32 letters, digits, _ or -)",
                        json::preview(&c.id, 40)
                    ),
                ));
            }
            if self.competitions[..i].iter().any(|o| o.id == c.id) {
                return Err(ConfigError::key(
                    key("id"),
                    format!("{} is used by an earlier entry", json::preview(&c.id, 40)),
                ));
            }
            if let Some(share) = c.reward_share {
                if !(share.is_finite() && share > 0.0) {
                    return Err(ConfigError::key(
                        key("reward_share"),
                        format!("{share} is not a positive number"),
                    ));
                }
            }
            if let Some(rows) = c.max_rows {
                if rows == 0 || rows > self.dataset.max_rows {
                    return Err(ConfigError::key(
                        key("max_rows"),
                        format!(
                            "must be between 1 and dataset.max_rows ({})",
                            self.dataset.max_rows
                        ),
                    ));
                }
            }
            let training = self.merged_training(c).map_err(|mut e| {
                e.key = Some(key(&e.key.unwrap_or_else(|| "training".into())));
                e
            })?;
            if training.max_rows > self.dataset.max_rows {
                return Err(ConfigError::key(
                    key("training.max_rows"),
                    format!("exceeds dataset.max_rows ({})", self.dataset.max_rows),
                ));
            }
        }
        Ok(())
    }

    /// `[training]` with competition `c`'s overrides and row limit; errors name the key under
    /// `training.`.
    fn merged_training(&self, c: &CompetitionConfig) -> Result<TrainingConfig, ConfigError> {
        let mut training = self.training.clone();
        if !c.training.is_empty() {
            let mut table = toml::Table::try_from(&self.training)
                .map_err(|e| ConfigError::key("training", format!("cannot be merged: {e}")))?;
            for (k, v) in &c.training {
                table.insert(k.clone(), v.clone());
            }
            training = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError::key("training", e.message().trim().to_string())
                })?;
        }
        if let Some(rows) = c.max_rows {
            training.max_rows = rows;
        }
        training.validate()?;
        Ok(training)
    }

    /// The `[[competitions]]` entry of `id`: `Ok(None)` when the table is empty (every id is
    /// scored with the top-level settings), `Err("unknown competition X")` when `id` is not in
    /// it.
    pub fn competition(&self, id: &str) -> Result<Option<&CompetitionConfig>, String> {
        if self.competitions.is_empty() {
            return Ok(None);
        }
        self.competitions
            .iter()
            .find(|c| c.id == id)
            .map(Some)
            .ok_or_else(|| {
                if crate::commitment::valid_competition_id(id) {
                    format!("unknown competition {id}")
                } else {
                    format!("unknown competition {}", json::preview(id, 40))
                }
            })
    }

    /// The training settings of competition `id`: `[training]` with its overrides (the
    /// top-level ones for an id without an entry).
    pub fn training_for(&self, id: &str) -> TrainingConfig {
        match self.competition(id) {
            // Validated on load, so the merge succeeds; the base is the safe fallback.
            Ok(Some(c)) => self
                .merged_training(c)
                .unwrap_or_else(|_| self.training.clone()),
            _ => self.training.clone(),
        }
    }

    /// The eval set (`org/name@sha` or a path) submissions to competition `id` are scored on:
    /// its `[[competitions]]` entry's `eval_set` when it names one, else `[eval] set`.
    pub fn eval_set_for(&self, id: &str) -> &str {
        match self.competition(id) {
            Ok(Some(c)) if !c.eval_set.is_empty() => &c.eval_set,
            _ => &self.eval.set,
        }
    }

    /// Each competition's share of the emission by id ([`CompetitionConfig::share`]).
    pub fn competition_shares(&self) -> BTreeMap<String, f64> {
        self.competitions
            .iter()
            .map(|c| (c.id.clone(), c.share()))
            .collect()
    }

    /// Every eval set the validator scores on, each once: `[eval] set` first, then the
    /// competitions' own in table order.
    pub fn eval_sets(&self) -> Vec<&str> {
        let mut sets = vec![self.eval.set.as_str()];
        for c in &self.competitions {
            if !c.eval_set.is_empty() && !sets.contains(&c.eval_set.as_str()) {
                sets.push(&c.eval_set);
            }
        }
        sets
    }

    /// The config part of the loss cache key of a submission to competition `id`: SHA-256 of
    /// the competition id and its training settings (see [`TrainingConfig::hash`]).
    pub fn training_hash_for(&self, id: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"competition\0");
        hasher.update(id.as_bytes());
        hasher.update(b"\0training\0");
        hasher.update(self.training_for(id).hash().as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// Whether `device` is `cpu`, `cuda` or `cuda:N` (N decimal digits).
fn valid_device(device: &str) -> bool {
    device == "cpu"
        || device == "cuda"
        || device
            .strip_prefix("cuda:")
            .is_some_and(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `text` is a SHA-256 in hex (either case).
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Maps between positions in TOML text and dotted key paths, for error messages.
mod toml_path {
    use std::ops::Range;

    use toml::de::{DeTable, DeValue};

    /// One step of a key path.
    enum Step {
        Key(String),
        Index(usize),
    }

    fn render(path: &[Step]) -> String {
        let mut out = String::new();
        for step in path {
            match step {
                Step::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    let bare = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        out.push_str(key);
                    } else {
                        out.push_str(&crate::json::preview(key, 40));
                    }
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The 1-based line of byte offset `at` in `text`.
    pub fn line_at(text: &str, at: usize) -> usize {
        let at = at.min(text.len());
        text.as_bytes()[..at]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The dotted path of the key or value that `span` points into (the innermost one), if the
    /// text parses as TOML.
    pub fn key_at(text: &str, span: Range<usize>) -> Option<String> {
        let table = DeTable::parse(text).ok()?;
        let mut best: Option<(usize, String)> = None;
        let mut path = Vec::new();
        visit_table(table.get_ref(), &mut path, &mut |path, candidate| {
            let hit = candidate.start <= span.start
                && (span.start < candidate.end || span.end <= candidate.end);
            let size = candidate.end.saturating_sub(candidate.start);
            if hit && best.as_ref().is_none_or(|(b, _)| size <= *b) {
                best = Some((size, render(path)));
            }
        });
        best.map(|(_, path)| path).filter(|p| !p.is_empty())
    }

    /// The line where dotted `key` (as [`key_at`] writes it) is written in `text`, if it is.
    pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
        let table = DeTable::parse(text).ok()?;
        let mut found = None;
        let mut path = Vec::new();
        visit_table(table.get_ref(), &mut path, &mut |path, span| {
            if found.is_none() && render(path) == key {
                found = Some(span.start);
            }
        });
        found.map(|at| line_at(text, at))
    }

    /// Calls `f` with the path and span of every key, value and array element, depth first.
    fn visit_table(
        table: &DeTable<'_>,
        path: &mut Vec<Step>,
        f: &mut dyn FnMut(&[Step], Range<usize>),
    ) {
        for (key, value) in table.iter() {
            path.push(Step::Key(key.get_ref().to_string()));
            f(path, key.span());
            f(path, value.span());
            visit_value(value.get_ref(), path, f);
            path.pop();
        }
    }

    fn visit_value(
        value: &DeValue<'_>,
        path: &mut Vec<Step>,
        f: &mut dyn FnMut(&[Step], Range<usize>),
    ) {
        match value {
            DeValue::Table(table) => visit_table(table, path, f),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    f(path, item.span());
                    visit_value(item.get_ref(), path, f);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::from_toml_str(text, "cluster.toml")
    }

    fn err(text: &str) -> ConfigError {
        parse(text).expect_err(text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").expect("valid");
        assert_eq!(c, ClusterConfig::default());
        assert_eq!(c.mode, Mode::Devnet);
        assert_eq!(c.netuid, 1);
        assert_eq!(c.coordinator.state_dir, "state");
        assert_eq!(c.coordinator.max_miners_per_epoch, 32);
        assert_eq!(c.model.source, "tiny");
        assert_eq!(c.eval.set, "eval_data/data.jsonl");
        assert_eq!(c.devnet.tempo, 100);
        assert_eq!(c.scoring.policy, ScoringPolicy::WinRate);
        assert_eq!(c.scoring.epsilon, 0.04);
        assert_eq!(c.training, TrainingConfig::default());
        assert_eq!(c.training.lora_rank, 16);
        assert_eq!(c.dataset, DatasetLimits::default());
        assert_eq!(
            c.workers,
            vec![WorkerConfig {
                device: "cpu".into()
            }]
        );
        assert!(c.remote_workers.is_empty());
        // Comments and empty tables are as good as nothing.
        assert_eq!(
            parse("# nothing\n[scoring]\n[training]\n").expect("valid"),
            c
        );
    }

    #[test]
    fn the_repository_cluster_toml_is_valid() {
        let text = include_str!("../../cluster.toml");
        let c = parse(text).expect("the shipped cluster.toml");
        assert_eq!(c.mode, Mode::Devnet);
    }

    #[test]
    fn arbitrary_text_never_panics() {
        // Every prefix of the shipped file, and every one with a junk line appended: errors or
        // configs, never a panic (the key/line lookup runs on broken text too).
        let text = include_str!("../../cluster.toml");
        for (cut, _) in text.char_indices() {
            let _ = parse(&text[..cut]);
            let _ = parse(&format!("{}\n]x = é\n", &text[..cut]));
        }
    }

    #[test]
    fn unknown_keys_are_named_with_their_table_and_line() {
        let cases = [
            (
                "bogus = 1\n",
                "cluster.toml:1: bogus: unknown field `bogus`",
            ),
            (
                "netuid = 2\n[scoring]\nalpha = 0.5\ntemprature = 0.1\n",
                "cluster.toml:4: scoring.temprature: unknown field `temprature`, expected one of",
            ),
            (
                "[training]\nlora_rnk = 4\n",
                "cluster.toml:2: training.lora_rnk: unknown field `lora_rnk`",
            ),
            (
                "[dataset]\nmax_row = 4\n",
                "cluster.toml:2: dataset.max_row: unknown field `max_row`",
            ),
            (
                "[[workers]]\ndevice = \"cpu\"\n[[workers]]\ndevice = \"cpu\"\ngpu = 1\n",
                "cluster.toml:5: workers[1].gpu: unknown field `gpu`, expected `device`",
            ),
            (
                "scoring = { temprature = 1 }\n",
                "cluster.toml:1: scoring.temprature: unknown field",
            ),
            (
                "[coordinator.extra]\na = 1\n",
                "cluster.toml:1: coordinator.extra: unknown field `extra`",
            ),
            (
                "[devnet]\ntempo.x = 1\n",
                "cluster.toml:2: devnet.tempo: invalid type",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(
                e.to_string().starts_with(want),
                "{text:?}\n got: {e}\nwant: {want}"
            );
            assert_eq!(e.file.as_deref(), Some("cluster.toml"));
        }
    }

    #[test]
    fn type_and_syntax_errors_name_the_place() {
        let e = err("[training]\nlr = \"fast\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("training.lr")));
        assert!(e.reason.contains("invalid type: string \"fast\""), "{e}");
        let e = err("mode = \"mainnet\"\n");
        assert_eq!(e.key.as_deref(), Some("mode"));
        assert!(e.reason.contains("unknown variant `mainnet`"), "{e}");
        let e = err("netuid = 70000\n");
        assert_eq!(e.key.as_deref(), Some("netuid"), "{e}");
        let e = err("[[remote_workers]]\nid = \"a\"\n");
        assert!(e.reason.contains("missing field `address`"), "{e}");
        assert!(
            e.key
                .as_deref()
                .is_some_and(|k| k.starts_with("remote_workers")),
            "{e}"
        );
        // Broken TOML: a line, no key.
        let e = err("[scoring\nalpha = 1\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), None), "{e}");
        let e = err("[scoring]\nalpha = 0.1\nalpha = 0.2\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.reason.contains("duplicate key"), "{e}");
        // Multi-byte text before the error does not upset line counting.
        let e = err("# é ü 日本\n[eval]\nset = 5\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("eval.set")));
    }

    #[test]
    fn validation_names_the_key_and_its_line() {
        let cases = [
            (
                "[scoring]\ntemperature = 0.0",
                "scoring.temperature: must be > 0",
            ),
            ("[scoring]\ntemperature = -1.0", "scoring.temperature"),
            ("[scoring]\ntemperature = nan", "scoring.temperature"),
            ("[scoring]\nalpha = 1.5", "scoring.alpha: must be in (0, 1]"),
            ("[scoring]\nalpha = 0.0", "scoring.alpha"),
            (
                "[scoring]\nepsilon = 1.0",
                "scoring.epsilon: must be in [0, 1)",
            ),
            ("[scoring]\nepsilon = -0.1", "scoring.epsilon"),
            (
                "[scoring]\nduplicate_overlap = 0.0",
                "scoring.duplicate_overlap",
            ),
            (
                "[scoring]\nduplicate_overlap = 1.01",
                "scoring.duplicate_overlap",
            ),
            (
                "[scoring]\nduplicate_loss_rel = -1e-9",
                "scoring.duplicate_loss_rel",
            ),
            (
                "[training]\nmicro_batch = 0",
                "training.micro_batch: must be at least 1",
            ),
            (
                "[training]\ngrad_accum = 0",
                "training.grad_accum: must be at least 1",
            ),
            (
                "[training]\nmax_seq_len = 1",
                "training.max_seq_len: must be at least 2",
            ),
            ("[training]\nlr = 0.0", "training.lr"),
            ("[training]\nlr = -1.0", "training.lr"),
            ("[training]\nlr = inf", "training.lr"),
            ("[training]\nlr = nan", "training.lr"),
            ("[training]\nweight_decay = -0.1", "training.weight_decay"),
            ("[training]\nmax_grad_norm = -1.0", "training.max_grad_norm"),
            (
                "[training]\nlora_rank = 0",
                "training.lora_rank: must be at least 1",
            ),
            ("[training]\nlora_alpha = 0.0", "training.lora_alpha"),
            (
                "[training]\nlora_dropout = 1.0",
                "training.lora_dropout: must be in [0, 1)",
            ),
            ("[training]\nlora_dropout = -0.5", "training.lora_dropout"),
            (
                "[training]\nmax_rows = 0",
                "training.max_rows: must be at least 1",
            ),
            (
                "[training]\nmax_rows = 300",
                "training.max_rows: 300 exceeds dataset.max_rows (250)",
            ),
            (
                "[coordinator]\nmax_miners_per_epoch = 0",
                "coordinator.max_miners_per_epoch",
            ),
            (
                "[coordinator]\njob_timeout_secs = 0",
                "coordinator.job_timeout_secs",
            ),
            ("[coordinator]\nstate_dir = \"\"", "coordinator.state_dir"),
            (
                "[coordinator]\nmetrics_listen = \"nowhere\"",
                "coordinator.metrics_listen",
            ),
            ("[model]\nsource = \"\"", "model.source"),
            ("[eval]\nset = \"\"", "eval.set"),
            ("[devnet]\ntempo = 0", "devnet.tempo"),
            ("[dataset]\nmax_file_bytes = 0", "dataset.max_file_bytes"),
            (
                "[dataset]\nmax_file_bytes = 68157440",
                "dataset.max_file_bytes: 68157440 exceeds 68091904, the largest dataset one job frame carries",
            ),
            ("[dataset]\nmax_line_bytes = 0", "dataset.max_line_bytes"),
            (
                "[dataset]\nmax_rows = 0\n[training]\nmax_rows = 0",
                "training.max_rows",
            ),
            ("[dataset]\nmax_json_depth = 2", "dataset.max_json_depth"),
            ("workers = []", "workers: at least one"),
            (
                "[[workers]]\ndevice = \"tpu\"",
                "workers[0].device: \"tpu\" is not cpu, cuda or cuda:N",
            ),
            (
                "[[workers]]\ndevice = \"cpu\"\n[[workers]]\ndevice = \"cuda:+1\"",
                "workers[1].device",
            ),
            ("[[workers]]\ndevice = \"cuda:\"", "workers[0].device"),
            ("[[workers]]\ndevice = \"CPU\"", "workers[0].device"),
            (
                "[[remote_workers]]\nid = \"a\"\naddress = \"nowhere\"\nfingerprint = \"00\"",
                "remote_workers[0].address",
            ),
            (
                "[[remote_workers]]\nid = \"a\"\naddress = \"10.0.0.2:7443\"\nfingerprint = \"00\"",
                "remote_workers[0].fingerprint",
            ),
            (
                "[[remote_workers]]\nid = \"\"\naddress = \"10.0.0.2:7443\"\nfingerprint = \"00\"",
                "remote_workers[0].id",
            ),
            ("[cluster]\nkeep_alive_ms = 20000", "cluster.keep_alive_ms"),
            ("[cluster]\nheartbeat_ms = 0", "cluster.heartbeat_ms"),
            ("[worker_node]\nlisten = \"x\"", "worker_node.listen"),
            (
                "[worker_node]\ncoordinator_fingerprint = \"abc\"",
                "worker_node.coordinator_fingerprint",
            ),
            ("[worker_node]\ndevices = []", "worker_node.devices"),
            (
                "[worker_node]\ndevices = [\"cpu\", \"gpu\"]",
                "worker_node.devices[1]",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            let shown = e.to_string();
            assert!(shown.starts_with("cluster.toml:"), "{text}: {e}");
            assert!(shown.contains(want), "{text}\n got: {e}\nwant: {want}");
            // The key is written in the text, so its line is known.
            if !text.contains("max_rows = 300") && want != "workers: at least one" {
                assert!(e.line.is_some(), "{text}: {e}");
            }
        }
        let e = err("netuid = 3\n\n[scoring]\nalpha = 0.5\ntemperature = 0.0\n");
        assert_eq!(
            e.to_string(),
            "cluster.toml:5: scoring.temperature: must be > 0"
        );
        // A relation between a written key and a default one still names the key.
        let e = err("[training]\nmax_rows = 300\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("training.max_rows"))
        );
    }

    #[test]
    fn remote_worker_ids_are_unique() {
        let fp = "ab".repeat(32);
        let entry = |id: &str| {
            format!("[[remote_workers]]\nid = \"{id}\"\naddress = \"10.0.0.2:7443\"\nfingerprint = \"{fp}\"\n")
        };
        let c = parse(&format!("workers = []\n{}{}", entry("a"), entry("b"))).expect("valid");
        assert_eq!(c.remote_workers.len(), 2);
        let e = err(&format!("{}{}", entry("a"), entry("a")));
        assert_eq!(e.key.as_deref(), Some("remote_workers[1].id"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
    }

    #[test]
    fn policy_mode_and_devices_parse() {
        let c = parse(
            "mode = \"finney\"\nnetuid = 96\n[scoring]\npolicy = \"winner_takes_all\"\n[[workers]]\ndevice = \"cuda:1\"\n[[workers]]\ndevice = \"cuda\"",
        )
        .expect("valid");
        assert_eq!(c.mode, Mode::Finney);
        assert_eq!(c.netuid, 96);
        assert_eq!(c.scoring.policy, ScoringPolicy::WinnerTakesAll);
        assert_eq!(c.workers.len(), 2);
        assert_eq!(c.workers[0].device, "cuda:1");
        for mode in ["devnet", "local", "test", "finney"] {
            assert!(parse(&format!("mode = \"{mode}\"")).is_ok(), "{mode}");
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let fp = "0f".repeat(32);
        let mut c = ClusterConfig {
            mode: Mode::Test,
            netuid: 96,
            ..ClusterConfig::default()
        };
        c.coordinator.metrics_listen = "127.0.0.1:9100".into();
        c.scoring.policy = ScoringPolicy::WinnerTakesAll;
        c.scoring.duplicate_loss_rel = 1e-12;
        c.training.lr = 3e-5;
        c.training.max_rows = 100;
        c.dataset.max_rows = 100;
        c.workers = vec![
            WorkerConfig {
                device: "cuda:0".into(),
            },
            WorkerConfig {
                device: "cuda:1".into(),
            },
        ];
        c.remote_workers = vec![RemoteWorkerConfig {
            id: "gpu-box".into(),
            address: "10.0.0.2:7443".into(),
            fingerprint: fp,
        }];
        for config in [ClusterConfig::default(), c] {
            let text = config.to_toml().expect("writes");
            let back = parse(&text).expect("reads back");
            assert_eq!(back, config, "{text}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let e =
            ClusterConfig::load(Path::new("/nonexistent/dir/cluster.toml")).expect_err("missing");
        assert_eq!(e.file.as_deref(), Some("/nonexistent/dir/cluster.toml"));
        assert!(
            e.to_string().starts_with("/nonexistent/dir/cluster.toml: "),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("murmuration-protocol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("cluster.toml");
        std::fs::write(&path, "[scoring]\ntemprature = 0.1\n").expect("write");
        let e = ClusterConfig::load(&path).expect_err("typo");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2: scoring.temprature", path.display())),
            "{e}"
        );
        std::fs::write(&path, "netuid = 5\n").expect("write");
        assert_eq!(ClusterConfig::load(&path).expect("valid").netuid, 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn training_validate_alone_names_the_key_without_a_file() {
        let t = TrainingConfig {
            lora_rank: 0,
            ..TrainingConfig::default()
        };
        let e = t.validate().expect_err("rank 0");
        assert_eq!(e.to_string(), "training.lora_rank: must be at least 1");
        assert!(TrainingConfig::default().validate().is_ok());
    }

    #[test]
    fn training_hash_changes_with_any_setting_and_is_pinned() {
        let a = TrainingConfig::default();
        assert_eq!(a.hash(), TrainingConfig::default().hash());
        assert_eq!(a.hash().len(), 64);
        let variants = [
            TrainingConfig {
                micro_batch: 3,
                ..a.clone()
            },
            TrainingConfig {
                grad_accum: 3,
                ..a.clone()
            },
            TrainingConfig {
                epochs: 3,
                ..a.clone()
            },
            TrainingConfig {
                max_seq_len: 2048,
                ..a.clone()
            },
            TrainingConfig {
                lr: 2.0001e-4,
                ..a.clone()
            },
            TrainingConfig {
                warmup_steps: 6,
                ..a.clone()
            },
            TrainingConfig {
                weight_decay: 0.01,
                ..a.clone()
            },
            TrainingConfig {
                max_grad_norm: 0.5,
                ..a.clone()
            },
            TrainingConfig {
                lora_rank: 8,
                ..a.clone()
            },
            TrainingConfig {
                lora_alpha: 16.0,
                ..a.clone()
            },
            TrainingConfig {
                lora_dropout: 0.0,
                ..a.clone()
            },
            TrainingConfig {
                seed: 43,
                ..a.clone()
            },
            TrainingConfig {
                shuffle: false,
                ..a.clone()
            },
            TrainingConfig {
                max_rows: 100,
                ..a.clone()
            },
        ];
        let mut seen = std::collections::HashSet::new();
        seen.insert(a.hash());
        for v in &variants {
            assert!(seen.insert(v.hash()), "{v:?}");
        }
        // Golden value (Python: sha256 of json.dumps(defaults, sort_keys=True,
        // separators=(",", ":"))). A change here invalidates every validator's loss cache.
        assert_eq!(
            a.hash(),
            "00c0bfe5dd0ef98e6677072e4d115e0e4956590b3b0e99675f7c6181715ef93d"
        );
    }
}
