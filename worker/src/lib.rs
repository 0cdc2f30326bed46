//! The Murmuration evaluation engine: a Qwen2 decoder in Burn, LoRA adapters, the ChatML SFT data
//! pipeline, the training loop and the eval loss (docs/engine.md). [`Engine`] is the facade the
//! coordinator and the `worker` binary use.

pub mod backend;
pub mod batch;
pub mod bench;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod dropout;
pub mod engine;
pub mod error;
pub mod eval;
#[cfg(feature = "cuda")]
mod kernel_cache;
pub mod lora;
pub mod loss;
pub mod model;
pub mod optim;
pub mod peft;
pub mod precision;
mod recent;
pub mod runner;
pub mod serve;
pub mod tensors;
pub mod tiny;
pub mod train;

pub use engine::{CpuBackend, Device, Engine, JobOptions, JobReport, Profile};
pub use error::EngineError;
pub use eval::EvalSet;
pub use precision::Precision;
pub use tiny::write_tiny_model;
pub use train::JobProgress;
