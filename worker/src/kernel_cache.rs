//! Where CubeCL keeps its autotune results and compiled kernels across runs on CUDA.
//!
//! Without this, CubeCL writes them under the `target/` directory of the nearest Cargo project,
//! or `~/.cache/cubecl` for an installed binary. The engine sets one documented place:
//! `$MURMURATION_KERNEL_CACHE`, else `$XDG_CACHE_HOME/murmuration/kernels`, else
//! `~/.cache/murmuration/kernels`. A `cubecl.toml` that names its own cache wins.

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::cubecl::config::cache::CacheConfig;
use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

use crate::error::EngineError;

/// The kernel cache directory (see the module docs).
pub fn directory() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MURMURATION_KERNEL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("murmuration").join("kernels"))
}

/// Points CubeCL's autotune and compilation caches at [`directory`]; once per process, before
/// the first CUDA client exists.
pub fn configure() -> Result<(), EngineError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let Some(dir) = directory() else {
            return Ok(()); // no home: CubeCL's own default
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("kernel cache {}: {e}", dir.display()))?;
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        if matches!(config.autotune.cache, CacheConfig::Target) {
            config.autotune.cache = CacheConfig::File(dir.clone());
        }
        if config.compilation.cache.is_none() {
            config.compilation.cache = Some(CacheConfig::File(dir.clone()));
        }
        CubeClRuntimeConfig::set(config);
        tracing::info!(dir = %dir.display(), "CubeCL kernel cache");
        Ok(())
    })
    .clone()
    .map_err(EngineError::Device)
}
