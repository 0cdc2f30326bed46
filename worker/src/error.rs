//! The engine's error type: every variant names the file, tensor, row or setting at fault.

use std::path::Path;

/// Why the engine could not load a model or run a job.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The checkpoint (config.json, safetensors, adapter) does not fit the model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The tokenizer cannot be used (unreadable, or lacks the ChatML tokens).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A data row cannot be turned into tokens.
    #[error("data: {0}")]
    Data(String),
    /// The training configuration is unusable.
    #[error("config: {0}")]
    Config(String),
    /// The requested device is not available in this build.
    #[error("device: {0}")]
    Device(String),
    /// Training diverged (a non-finite loss).
    #[error("training diverged: {0}")]
    Diverged(String),
    /// The job was cancelled by its caller.
    #[error("cancelled")]
    Cancelled,
}

impl EngineError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, err: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.display().to_string(),
            reason: err.to_string(),
        }
    }
}
