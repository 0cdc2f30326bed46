//! The engine's facade: a base model resident on one device that runs jobs — a fresh LoRA
//! adapter trained on a miner's rows, then the eval loss — one after another.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::chat::{ChatTokenizer, Example};
use crate::checkpoint::{load_model_with, LoadOptions};
use crate::error::EngineError;
use crate::eval::{eval_loss, EvalBatching, EvalSet, EVAL_BATCH_TOKENS};
use crate::lora::Adapter;
use crate::model::{AttentionKernel, Qwen2};
use crate::peft::{load_adapter, save_adapter};
use crate::precision::Precision;
use crate::train::{train_with, Backward, JobProgress, TrainSettings, TrainStats};
use protocol::config::TrainingConfig;
use protocol::dataset::Row;

pub use crate::backend::CpuBackend;

/// The CUDA backend, with Burn's kernel fusion and autotuning.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda<f32, i32>;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Device {
    /// The CPU (flex backend).
    Cpu,
    /// CUDA device N (build with the `cuda` feature).
    Cuda(usize),
}

impl FromStr for Device {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    EngineError::Device(format!("{s:?} is not a device (cpu, cuda, cuda:N)"))
                }),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The outcome of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// Mean over eval rows of each row's mean assistant-token loss.
    pub eval_loss: f64,
    /// One loss per optimizer step.
    pub train_losses: Vec<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Training rows used.
    pub train_rows: usize,
    /// Tokens in the training rows after truncation (one epoch).
    pub train_tokens: usize,
    /// Eval rows that counted.
    pub eval_rows: usize,
    /// Eval rows without a supervised token.
    pub eval_rows_skipped: usize,
    /// Wall time of the job.
    pub seconds: f64,
}

/// Extra inputs and outputs of a job, for the CLI and parity checks.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Start from this PEFT adapter instead of a fresh one.
    pub init_adapter: Option<PathBuf>,
    /// Save the trained adapter here in PEFT format.
    pub save_adapter: Option<PathBuf>,
    /// Eval rows per forward pass (default 8).
    pub eval_batch_rows: Option<usize>,
}

/// How an engine runs on its device; [`Profile::for_device`] gives each device's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Storage and matmul precision of the frozen base.
    pub precision: Precision,
    /// Attention kernel of forward passes.
    pub attention: AttentionKernel,
    /// Fuse q/k/v and gate/up into one matmul each.
    pub fuse: bool,
    /// Training-loop settings.
    pub train: TrainSettings,
    /// Eval batching.
    pub eval: EvalBatching,
}

impl Profile {
    /// How to load the base model for this profile.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            precision: self.precision,
            attention: self.attention,
            fuse: self.fuse,
        }
    }

    /// The defaults of `device`. CPU: f32, projections apart, exact sequence lengths, eval
    /// batches of 8 rows and 8,192 tokens. CUDA: bf16 base weights, q/k/v and gate/up fused,
    /// lengths padded to buckets (few autotune keys), eval batches of up to 64 rows and 32,768
    /// tokens. Both: Burn's native attention kernel forward, and the recomputing backward pass.
    pub fn for_device(device: &Device) -> Self {
        match device {
            Device::Cpu => Self {
                precision: Precision::F32,
                attention: AttentionKernel::Native,
                fuse: false,
                train: TrainSettings {
                    backward: Backward::Recompute,
                    bucket: false,
                },
                eval: EvalBatching {
                    rows: 8,
                    tokens: EVAL_BATCH_TOKENS,
                    bucket: false,
                },
            },
            Device::Cuda(_) => Self {
                precision: Precision::Bf16,
                attention: AttentionKernel::Native,
                fuse: true,
                train: TrainSettings {
                    backward: Backward::Recompute,
                    bucket: true,
                },
                eval: EvalBatching {
                    rows: 64,
                    tokens: 32_768,
                    bucket: true,
                },
            },
        }
    }
}

/// A model resident on one device, with its tokenizer.
pub struct Engine {
    session: Session,
    tokenizer: ChatTokenizer,
    model_id: String,
    model_dir: PathBuf,
    profile: Profile,
}

enum Session {
    Cpu(Resident<CpuBackend>),
    #[cfg(feature = "cuda")]
    Cuda(Resident<CudaBackend>),
}

struct Resident<B: Backend> {
    model: Qwen2<B>,
    device: B::Device,
}

impl Engine {
    /// Loads `config.json`, the safetensors weights and `tokenizer.json` from `model_dir` with
    /// the device's [`Profile`].
    pub fn load(model_dir: &Path, device: &Device) -> Result<Engine, EngineError> {
        Self::load_with(model_dir, device, Profile::for_device(device))
    }

    /// [`Engine::load`] with another profile (e.g. f32 on CUDA, bf16 on the CPU).
    pub fn load_with(
        model_dir: &Path,
        device: &Device,
        profile: Profile,
    ) -> Result<Engine, EngineError> {
        let tokenizer = ChatTokenizer::load(&model_dir.join("tokenizer.json"))?;
        let options = profile.load_options();
        let (session, model_id) = match device {
            Device::Cpu => {
                let device = Default::default();
                let loaded = load_model_with::<CpuBackend>(model_dir, &device, options)?;
                (
                    Session::Cpu(Resident {
                        model: loaded.model,
                        device,
                    }),
                    loaded.model_id,
                )
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => {
                crate::kernel_cache::configure()?;
                let device = burn::backend::cuda::CudaDevice::new(*n);
                let loaded = load_model_with::<CudaBackend>(model_dir, &device, options)?;
                (
                    Session::Cuda(Resident {
                        model: loaded.model,
                        device,
                    }),
                    loaded.model_id,
                )
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => {
                return Err(EngineError::Device(
                    "this binary was built without CUDA support (cargo build --features cuda)"
                        .into(),
                ))
            }
        };
        Ok(Engine {
            session,
            tokenizer,
            model_id,
            model_dir: model_dir.to_path_buf(),
            profile,
        })
    }

    /// How this engine runs.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// SHA-256 (hex) of config.json and the weight files.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The chat tokenizer of the model.
    pub fn tokenizer(&self) -> &ChatTokenizer {
        &self.tokenizer
    }

    /// Tokenises an eval set once for many jobs.
    pub fn prepare_eval(
        &self,
        rows: &[Row],
        config: &TrainingConfig,
    ) -> Result<EvalSet, EngineError> {
        EvalSet::new(&self.tokenizer, rows, config.max_seq_len)
    }

    /// Trains a fresh adapter on `train` (the first `max_rows` rows) and evaluates it on `eval`.
    /// `epochs = 0` evaluates the base model.
    pub fn run_job(
        &self,
        train: &[Row],
        eval: &EvalSet,
        config: &TrainingConfig,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(JobProgress),
    ) -> Result<JobReport, EngineError> {
        self.run_job_with(
            train,
            eval,
            config,
            &JobOptions::default(),
            cancel,
            progress,
        )
    }

    /// [`Engine::run_job`] with an initial adapter, adapter saving and eval batch size.
    pub fn run_job_with(
        &self,
        train: &[Row],
        eval: &EvalSet,
        config: &TrainingConfig,
        options: &JobOptions,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(JobProgress),
    ) -> Result<JobReport, EngineError> {
        let started = Instant::now();
        let rows = &train[..train.len().min(config.max_rows)];
        let examples = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                self.tokenizer
                    .encode_row(row, config.max_seq_len)
                    .map_err(|e| EngineError::Data(format!("train row {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<Example>, _>>()?;
        let job = Job {
            examples: &examples,
            eval,
            config,
            options,
            profile: &self.profile,
            model_dir: &self.model_dir,
        };
        let (loss, stats) = match &self.session {
            Session::Cpu(r) => r.run(&job, cancel, progress)?,
            #[cfg(feature = "cuda")]
            Session::Cuda(r) => r.run(&job, cancel, progress)?,
        };
        Ok(JobReport {
            eval_loss: loss,
            train_losses: stats.losses,
            steps: stats.steps,
            train_rows: examples.len(),
            train_tokens: examples.iter().map(Example::len).sum(),
            eval_rows: eval.rows(),
            eval_rows_skipped: eval.skipped(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The inputs of one job on a resident model.
struct Job<'a> {
    examples: &'a [Example],
    eval: &'a EvalSet,
    config: &'a TrainingConfig,
    options: &'a JobOptions,
    profile: &'a Profile,
    model_dir: &'a Path,
}

impl<B: Backend> Resident<B> {
    /// Runs `job`, then returns the device allocator's free pages (the base model stays).
    fn run(
        &self,
        job: &Job<'_>,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(JobProgress),
    ) -> Result<(f64, TrainStats), EngineError> {
        let outcome = self.job(job, cancel, progress);
        B::memory_cleanup(&self.device);
        outcome
    }

    fn job(
        &self,
        job: &Job<'_>,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(JobProgress),
    ) -> Result<(f64, TrainStats), EngineError> {
        let config = job.config;
        let mut batching = job.profile.eval;
        if let Some(rows) = job.options.eval_batch_rows {
            batching.rows = rows;
        }
        let adapter = match &job.options.init_adapter {
            Some(dir) => Some(load_adapter::<B>(dir, &self.model.config, &self.device)?),
            None if config.epochs > 0 => Some(Adapter::init(
                &self.model.config,
                config.lora_rank,
                config.lora_alpha,
                config.seed,
                &self.device,
            )),
            None => None,
        };
        let (adapter, stats) = match adapter {
            Some(adapter) if config.epochs > 0 && !job.examples.is_empty() => {
                let (adapter, stats) = train_with(
                    &self.model,
                    adapter,
                    job.examples,
                    config,
                    job.profile.train,
                    cancel,
                    progress,
                )?;
                (Some(adapter), stats)
            }
            other => (other, TrainStats::default()),
        };
        if let (Some(dir), Some(adapter)) = (&job.options.save_adapter, &adapter) {
            save_adapter(
                dir,
                adapter,
                config.lora_dropout,
                &job.model_dir.display().to_string(),
            )?;
        }
        let loss = eval_loss(&self.model, adapter.as_ref(), job.eval, batching)?;
        Ok((loss, stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::dataset::{Message, Role};

    fn row(user: String, assistant: String) -> Row {
        Row {
            system: None,
            conversations: vec![
                Message {
                    role: Role::User,
                    content: user,
                },
                Message {
                    role: Role::Assistant,
                    content: assistant,
                },
            ],
        }
    }

    #[test]
    fn training_on_rows_lowers_their_eval_loss() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::tiny::write_tiny_model(dir.path(), 1).expect("tiny model");
        let engine = Engine::load(dir.path(), &Device::Cpu).expect("loads");
        let rows: Vec<Row> = (0..24)
            .map(|i| {
                row(
                    format!("What is {i} plus {i}?"),
                    format!("The answer is {}.", 2 * i),
                )
            })
            .collect();
        let config = TrainingConfig {
            epochs: 2,
            max_seq_len: 128,
            lr: 5e-3,
            warmup_steps: 1,
            lora_rank: 4,
            lora_alpha: 8.0,
            micro_batch: 4,
            grad_accum: 1,
            ..TrainingConfig::default()
        };
        let eval = engine.prepare_eval(&rows, &config).expect("eval set");
        let never = AtomicBool::new(false);
        let base = engine
            .run_job(
                &[],
                &eval,
                &TrainingConfig {
                    epochs: 0,
                    ..config.clone()
                },
                &never,
                &mut |_| {},
            )
            .expect("base");
        let mut seen = Vec::new();
        let tuned = engine
            .run_job(&rows, &eval, &config, &never, &mut |p| seen.push(p.step))
            .expect("tuned");
        assert_eq!(tuned.steps, 12);
        assert_eq!(seen, (1..=12).collect::<Vec<_>>());
        assert!(
            tuned.eval_loss < base.eval_loss,
            "{} !< {}",
            tuned.eval_loss,
            base.eval_loss
        );
    }
}
