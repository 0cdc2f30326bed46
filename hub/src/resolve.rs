//! What a `cluster.toml` names on a hub, resolved for the validator and miner-cli alike: the
//! dataset hub (`[hub]`), the base model (`[model] source`) and the eval set (`[eval] set`). A
//! source is a Hub repo when it has the shape `org/name[@revision]` and no such local path
//! exists; otherwise it is a local path resolved against the config's directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::config::{ClusterConfig, Paths};
use protocol::dataset::{parse_dataset, DatasetLimits, Row};

use crate::client::HubClient;
use crate::config::ClientConfig;
use crate::dataset::Hub;
use crate::error::HubError;
use crate::local::LocalHub;
use crate::progress::ProgressSink;

/// Why a model or eval set could not be resolved; each names what the config asked for.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The model repo could not be downloaded.
    #[error("model {spec}: {source}")]
    Model {
        /// `[model] source`.
        spec: String,
        /// Why.
        source: Box<HubError>,
    },
    /// The eval set could not be downloaded.
    #[error("eval set {spec}: {source}")]
    EvalSetDownload {
        /// `[eval] set`.
        spec: String,
        /// Why.
        source: Box<HubError>,
    },
    /// The eval set file could not be read or is not a valid dataset.
    #[error("eval set {path}: {reason}")]
    EvalSetFile {
        /// The file.
        path: String,
        /// Why (the dataset error names the line and field).
        reason: String,
    },
}

/// Whether `source` names a Hub repo (`org/name` or `org/name@revision`) rather than a local
/// path: it has the shape and no such local file or directory exists.
pub fn is_hub_spec(source: &str, paths: &Paths) -> bool {
    let repo = source.split('@').next().unwrap_or_default();
    source != "tiny"
        && protocol::commitment::split_repo_id(repo).is_some()
        && !paths.resolve(source).exists()
}

/// The Hugging Face Hub client of `config`: the environment (`HF_ENDPOINT`, `HF_TOKEN`, `.env`,
/// `HF_HOME`, `HF_HUB_OFFLINE`), with `[hub] endpoint` and `cache_dir` when set, and the
/// `[hub] download_deadline_secs` limit on one dataset file.
pub fn client(config: &ClusterConfig) -> Result<HubClient, HubError> {
    let mut client_config = ClientConfig::from_env().with_download_deadline(
        std::time::Duration::from_secs(config.hub.download_deadline_secs),
    );
    if !config.hub.endpoint.is_empty() {
        client_config.endpoint = config.hub.endpoint.trim_end_matches('/').to_string();
    }
    if !config.hub.cache_dir.is_empty() {
        client_config.cache_dir = PathBuf::from(&config.hub.cache_dir);
    }
    HubClient::new(client_config)
}

/// The dataset hub of `config`: the local directory under the state directory, or the Hugging
/// Face Hub (whose client is also returned, for models and eval sets).
pub fn dataset_hub(
    config: &ClusterConfig,
    paths: &Paths,
) -> Result<(Arc<dyn Hub>, Option<HubClient>), HubError> {
    if config.uses_huggingface() {
        let client = client(config)?;
        Ok((Arc::new(client.clone()), Some(client)))
    } else {
        Ok((Arc::new(LocalHub::new(&paths.hub_dir())), None))
    }
}

/// The model directory: a Hub repo (`Qwen/Qwen2.5-1.5B-Instruct`, optionally `@revision`)
/// downloaded into the Hub cache when `hub` is given and `[model] source` is one, with byte
/// progress into `progress`; otherwise [`Paths::model_dir`] (for `"tiny"`, where the engine
/// generates the model).
pub async fn model(
    config: &ClusterConfig,
    paths: &Paths,
    hub: Option<&HubClient>,
    progress: Option<Arc<dyn ProgressSink>>,
) -> Result<PathBuf, ResolveError> {
    let source = &config.model.source;
    match hub.filter(|_| is_hub_spec(source, paths)) {
        Some(hub) => {
            let hub = match progress {
                Some(sink) => hub.clone().with_progress(sink),
                None => hub.clone(),
            };
            let files =
                hub.download_model(source)
                    .await
                    .map_err(|source_err| ResolveError::Model {
                        spec: source.clone(),
                        source: Box::new(source_err),
                    })?;
            tracing::info!(model = %files.repo, revision = %files.revision, dir = %files.dir.display(), "model from the Hub cache");
            Ok(files.dir)
        }
        None => Ok(paths.model_dir(config)),
    }
}

/// The path of `[eval] set`: see [`eval_set_path_of`].
pub async fn eval_set_path(
    config: &ClusterConfig,
    paths: &Paths,
    hub: Option<&HubClient>,
) -> Result<PathBuf, ResolveError> {
    eval_set_path_of(&config.eval.set, config, paths, hub).await
}

/// The path of the eval set `set` (`[eval] set` or a competition's): a local file, or
/// `org/name@sha` downloaded from the Hub (or found in its cache) when `hub` is given.
pub async fn eval_set_path_of(
    set: &str,
    config: &ClusterConfig,
    paths: &Paths,
    hub: Option<&HubClient>,
) -> Result<PathBuf, ResolveError> {
    match hub.filter(|_| is_hub_spec(set, paths)) {
        Some(hub) => hub
            .download_eval_set(set, config.dataset.max_file_bytes)
            .await
            .map_err(|source| ResolveError::EvalSetDownload {
                spec: set.to_string(),
                source: Box::new(source),
            }),
        None => Ok(paths.resolve(set)),
    }
}

/// The eval set at `path`: its rows, their content hash and the file's bytes. The dataset rules
/// of `config` apply except the row and file-size limits (the eval set is ours, not a miner's).
pub fn eval_set(
    config: &ClusterConfig,
    path: &Path,
) -> Result<(Vec<Row>, String, Vec<u8>), ResolveError> {
    let fail = |reason: String| ResolveError::EvalSetFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let limits = DatasetLimits {
        max_rows: usize::MAX,
        max_file_bytes: u64::MAX,
        ..config.dataset.clone()
    };
    let dataset = parse_dataset(&bytes, &limits).map_err(|e| fail(e.to_string()))?;
    Ok((dataset.rows, dataset.content_hash, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_download_deadline_comes_from_the_config() {
        let config = ClusterConfig::from_toml_str(
            "mode = \"test\"\n[hub]\ndownload_deadline_secs = 42\n",
            "cluster.toml",
        )
        .expect("config");
        let hub = client(&config).expect("client");
        assert_eq!(
            hub.config().download_deadline,
            std::time::Duration::from_secs(42)
        );
        let err = ClusterConfig::from_toml_str("[hub]\ndownload_deadline_secs = 0\n", "c.toml")
            .expect_err("zero");
        assert!(
            err.to_string().contains("hub.download_deadline_secs"),
            "{err}"
        );
    }
}
