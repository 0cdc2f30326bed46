//! The Murmuration evaluation engine: a Qwen2 decoder in Burn, LoRA adapters, the ChatML SFT data
//! pipeline, the training loop and the eval loss (DESIGN.md §5). [`Engine`] is the facade the
//! coordinator and the `worker` binary use.

pub mod batch;
pub mod bench;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod error;
pub mod eval;
pub mod lora;
pub mod model;
pub mod optim;
pub mod peft;
pub mod runner;
pub mod serve;
pub mod tensors;
pub mod tiny;
pub mod train;

pub use engine::{CpuBackend, Device, Engine, JobOptions, JobReport};
pub use error::EngineError;
pub use eval::EvalSet;
pub use tiny::write_tiny_model;
pub use train::JobProgress;
