//! Profiles and the production guard (README "Profiles and the guard"): the shipped production
//! profile (`profiles/finney.toml`), the starting config `coordinator init` writes from it with
//! the lines the operator must fill in, and the settings a validator on a real chain refuses to
//! set weights with (the tiny model, the bundled demo eval set, training on the CPU).

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::{ClusterConfig, ConfigError, Mode, Paths};

/// The production profile as shipped: Qwen2.5-1.5B-Instruct, LoRA rank 16 / alpha 32,
/// micro-batch 2 x gradient accumulation 4, 4096 tokens, `cuda` (bf16), a pinned eval set and
/// the subnet's netuid on finney.
pub const PRODUCTION_PROFILE: &str = include_str!("../../profiles/finney.toml");

/// SHA-256 of the bundled demo eval set (`eval_data/data.jsonl`), so a copy of it under any
/// name is recognised.
pub const DEMO_EVAL_SET_SHA256: &str =
    "5776816a0e48597f1065af2a24e78b1c2137859b89aeb2b25a0de3c0edb502bf";

/// The marker of a profile line the operator must check or set.
const FILL_IN: &str = "# FILL IN";

/// A line of a starting config the operator must check or set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillIn {
    /// 1-based line in the written file.
    pub line: usize,
    /// The setting, as written (`wallet_name = "validator"`).
    pub setting: String,
    /// What to put there.
    pub note: String,
}

/// The network name `coordinator init --network` takes for `mode`.
pub fn network_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Devnet => "devnet",
        Mode::Local => "local",
        Mode::Test => "test",
        Mode::Finney => "finney",
    }
}

/// The starting config for `network` (`finney`, `test` or `local`): the production profile
/// with its `mode`, and the lines to fill in for that network. The text parses and validates
/// as a [`ClusterConfig`].
pub fn starting_config(network: Mode) -> Result<(String, Vec<FillIn>), ConfigError> {
    if network == Mode::Devnet {
        return Err(ConfigError {
            file: None,
            line: None,
            key: Some("mode".into()),
            reason: "the devnet needs no profile: the shipped cluster.toml is the devnet demo"
                .into(),
        });
    }
    let name = network_name(network);
    let mut text = String::new();
    let mut fill = Vec::new();
    for (i, line) in PRODUCTION_PROFILE.lines().enumerate() {
        let line = if line.starts_with("mode = ") {
            format!("mode = \"{name}\"")
        } else {
            line.to_string()
        };
        if let Some((setting, marker)) = line.split_once(FILL_IN) {
            let marker = marker.trim_start();
            // `# FILL IN: note` applies everywhere, `# FILL IN on test, local: note` there only.
            let (networks, note) = marker.split_once(':').unwrap_or(("", marker));
            let applies = match networks.trim().strip_prefix("on ") {
                Some(list) => list.split(',').any(|n| n.trim() == name),
                None => true,
            };
            if applies {
                fill.push(FillIn {
                    line: i + 1,
                    setting: setting.trim().to_string(),
                    note: note.trim().to_string(),
                });
            }
        }
        text.push_str(&line);
        text.push('\n');
    }
    ClusterConfig::from_toml_str(&text, "the production profile")?;
    Ok((text, fill))
}

/// One reason a validator on a real chain refuses to set weights: the key to change and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The config key to change (`model.source`, `eval.set`, `workers[0].device`).
    pub key: String,
    /// Why, and what to put there instead.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Whether the file at `path` is the bundled demo eval set (by content).
fn is_demo_eval_file(path: &Path) -> bool {
    std::fs::read(path)
        .map(|bytes| hex::encode(Sha256::digest(&bytes)) == DEMO_EVAL_SET_SHA256)
        .unwrap_or(false)
}

/// The demo settings `config` would set weights with on a real chain: the tiny model, the
/// bundled demo eval set (by path or content), training on the CPU. Empty on the devnet, and
/// for a config fit for a real subnet.
pub fn production_refusals(config: &ClusterConfig, paths: &Paths) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    if config.mode == Mode::Devnet {
        return refusals;
    }
    if config.uses_tiny_model() {
        refusals.push(Refusal {
            key: "model.source".into(),
            reason: "\"tiny\" is the devnet's random demo model; set model.source = \
                     \"Qwen/Qwen2.5-1.5B-Instruct\" (profiles/finney.toml)"
                .into(),
        });
    }
    let sets = std::iter::once(("eval.set".to_string(), &config.eval.set)).chain(
        config
            .competitions
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.eval_set.is_empty())
            .map(|(i, c)| (format!("competitions[{i}].eval_set"), &c.eval_set)),
    );
    for (key, set) in sets {
        let normalized = set.replace('\\', "/");
        if normalized.ends_with("eval_data/data.jsonl") || is_demo_eval_file(&paths.resolve(set)) {
            refusals.push(Refusal {
                reason: format!(
                    "{set:?} is the bundled demo eval set; set {key} to the subnet's eval set, \
                     pinned as \"org/name@sha\""
                ),
                key,
            });
        }
    }
    for (i, worker) in config.workers.iter().enumerate() {
        if worker.device == "cpu" {
            refusals.push(Refusal {
                key: format!("workers[{i}].device"),
                reason: "\"cpu\" trains on the CPU (f32, far too slow for Qwen2.5-1.5B at 4096 \
                         tokens); set it to \"cuda\" or \"cuda:N\""
                    .into(),
            });
        }
    }
    refusals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_holds_the_production_defaults() {
        let config = ClusterConfig::from_toml_str(PRODUCTION_PROFILE, "finney.toml").unwrap();
        assert_eq!(config.mode, Mode::Finney);
        assert_eq!(config.netuid, 96);
        assert_eq!(config.model.source, "Qwen/Qwen2.5-1.5B-Instruct");
        let t = &config.training;
        assert_eq!((t.lora_rank, t.lora_alpha), (16, 32.0));
        assert_eq!((t.micro_batch, t.grad_accum, t.max_seq_len), (2, 4, 4096));
        assert_eq!(config.workers.len(), 1);
        assert_eq!(config.workers[0].device, "cuda");
        let (repo, sha) = config.eval.set.split_once('@').expect("pinned");
        assert!(crate::commitment::split_repo_id(repo).is_some());
        assert!(sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
        let paths = Paths::new(&config, Path::new("finney.toml"));
        assert_eq!(production_refusals(&config, &paths), vec![]);
    }

    #[test]
    fn starting_configs_name_what_to_fill_in() {
        let (text, fill) = starting_config(Mode::Finney).unwrap();
        let keys: Vec<&str> = fill.iter().map(|f| f.setting.as_str()).collect();
        assert!(
            keys.iter().any(|k| k.starts_with("wallet_name"))
                && keys.iter().any(|k| k.starts_with("set = "))
                && !keys.iter().any(|k| k.starts_with("netuid")),
            "{keys:?}"
        );
        let lines: Vec<&str> = text.lines().collect();
        for f in &fill {
            assert!(lines[f.line - 1].starts_with(&f.setting), "{f:?}");
        }
        let (text, fill) = starting_config(Mode::Test).unwrap();
        assert!(text.contains("mode = \"test\"\n"));
        assert!(fill.iter().any(|f| f.setting.starts_with("netuid")));
        let config = ClusterConfig::from_toml_str(&text, "t").unwrap();
        assert_eq!(config.mode, Mode::Test);
        assert!(starting_config(Mode::Devnet).is_err());
    }

    #[test]
    fn the_demo_settings_are_refused_off_the_devnet() {
        let mut config = ClusterConfig::default();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let paths = Paths::new(&config, &repo.join("cluster.toml"));
        assert!(production_refusals(&config, &paths).is_empty(), "devnet");
        config.mode = Mode::Test;
        let keys: Vec<String> = production_refusals(&config, &paths)
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(keys, ["model.source", "eval.set", "workers[0].device"]);
        // A copy of the demo set under another name is recognised by its content.
        let copy = std::env::temp_dir().join(format!("demo-copy-{}.jsonl", std::process::id()));
        std::fs::copy(repo.join("eval_data/data.jsonl"), &copy).unwrap();
        config.eval.set = copy.display().to_string();
        config.model.source = "models/qwen".into();
        config.workers[0].device = "cuda:1".into();
        let refusals = production_refusals(&config, &paths);
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert_eq!(refusals[0].key, "eval.set");
        // A competition's own eval set is checked the same way.
        config.eval.set = "org/evals@0123456789abcdef0123456789abcdef01234567".into();
        config.competitions = vec![
            crate::config::CompetitionConfig {
                id: "1".into(),
                eval_set: String::new(),
                max_rows: None,
                training: Default::default(),
                reward_share: None,
            },
            crate::config::CompetitionConfig {
                id: "2".into(),
                eval_set: copy.display().to_string(),
                max_rows: None,
                training: Default::default(),
                reward_share: None,
            },
        ];
        let refusals = production_refusals(&config, &paths);
        let _ = std::fs::remove_file(&copy);
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert_eq!(refusals[0].key, "competitions[1].eval_set");
        assert!(refusals[0]
            .to_string()
            .contains("set competitions[1].eval_set to"));
    }
}
