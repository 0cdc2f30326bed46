//! The `worker` binary: `eval` (train a LoRA adapter on a dataset and measure the eval loss),
//! `tiny-model` (write a small random checkpoint) and `bench` (training and eval throughput).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::config::TrainingConfig;
use protocol::dataset::{parse_dataset, DatasetLimits, Row};
use worker::{Device, Engine, JobOptions, Profile};

#[derive(Parser)]
#[command(name = "worker", version, about = "Murmuration evaluation engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a LoRA adapter on a dataset and print the eval loss.
    Eval {
        /// Directory with config.json, model*.safetensors and tokenizer.json.
        #[arg(long)]
        model: PathBuf,
        /// Training rows (JSONL).
        #[arg(long)]
        train: PathBuf,
        /// Evaluation rows (JSONL).
        #[arg(long)]
        eval: PathBuf,
        /// TOML file with a [training] table (defaults otherwise).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Start from this PEFT adapter directory.
        #[arg(long)]
        init_adapter: Option<PathBuf>,
        /// Save the trained adapter here (PEFT format).
        #[arg(long)]
        save_adapter: Option<PathBuf>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// f32 or bf16 for the frozen base (default: f32 on the CPU, bf16 on CUDA).
        #[arg(long)]
        precision: Option<String>,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write a small random Qwen2 checkpoint and tokenizer.
    TinyModel {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the weights.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Write a model of a real architecture with random weights (for benchmarks).
    RandomModel {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// qwen2.5-1.5b (Qwen2.5-1.5B-Instruct's shapes) or proxy:HIDDEN (its 28 layers, heads
        /// and vocabulary with a narrow hidden size).
        #[arg(long, default_value = "qwen2.5-1.5b")]
        shape: String,
        /// Store the weights in bf16 (as the real checkpoint).
        #[arg(long)]
        bf16: bool,
        /// Seed of the weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measure training tokens/s and eval rows/s, or memory (--memory), or exact shapes
    /// (--synthetic).
    Bench(worker::bench::BenchArgs),
    /// Serve jobs to a coordinator over QUIC ([worker_node] of the config).
    Serve {
        /// The cluster configuration.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
    /// Create this worker's key pair under [cluster] pki_dir and print its fingerprint.
    Keygen {
        /// The cluster configuration (for pki_dir).
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
}

/// The `[training]` table of a TOML file; nothing else is allowed in the file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingFile {
    #[serde(default)]
    training: TrainingConfig,
}

fn load_training(path: Option<&Path>) -> Result<TrainingConfig> {
    let Some(path) = path else {
        return Ok(TrainingConfig::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let file: TrainingFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    file.training
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(file.training)
}

fn read_rows(path: &Path, max_rows: usize) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let limits = DatasetLimits {
        max_rows,
        ..DatasetLimits::default()
    };
    let dataset =
        parse_dataset(&bytes, &limits).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(dataset.rows)
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    if let Err(err) = run(Cli::parse()) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::TinyModel { out, seed } => {
            worker::write_tiny_model(&out, seed)?;
            eprintln!("wrote a tiny Qwen2 model to {}", out.display());
            Ok(())
        }
        Command::RandomModel {
            out,
            shape,
            bf16,
            seed,
        } => {
            let config = match shape.as_str() {
                "qwen2.5-1.5b" => worker::config::Qwen2Config::qwen2_5_1_5b(),
                other => match other.strip_prefix("proxy:").and_then(|h| h.parse().ok()) {
                    Some(hidden) => worker::config::Qwen2Config::proxy_1_5b(hidden),
                    None => {
                        anyhow::bail!("--shape {other:?}: expected qwen2.5-1.5b or proxy:HIDDEN")
                    }
                },
            };
            config.validate().map_err(anyhow::Error::msg)?;
            worker::tiny::write_random_model(&out, &config, seed, bf16)?;
            eprintln!("wrote a random {shape} model to {}", out.display());
            Ok(())
        }
        Command::Bench(args) => worker::bench::run(&args),
        Command::Serve { config } => {
            let cluster = protocol::config::ClusterConfig::load(&config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(worker::serve::serve(cluster, &config))
        }
        Command::Keygen { config } => {
            let cluster = if config.exists() {
                protocol::config::ClusterConfig::load(&config)?
            } else {
                protocol::config::ClusterConfig::default()
            };
            let dir = worker::serve::config_base(&config).join(&cluster.cluster.pki_dir);
            let path = dir.join("worker.key.der");
            anyhow::ensure!(
                !path.exists(),
                "{} exists: refusing to overwrite a key",
                path.display()
            );
            let identity = protocol::transport::Identity::generate(&cluster.worker_node.id)?;
            identity.save(&dir, "worker")?;
            println!("{}", identity.fingerprint());
            eprintln!("wrote {}/worker.{{cert,key}}.der; pin this fingerprint in the coordinator's [[remote_workers]]", dir.display());
            Ok(())
        }
        Command::Eval {
            model,
            train,
            eval,
            config,
            init_adapter,
            save_adapter,
            device,
            precision,
            json,
        } => {
            let config = load_training(config.as_deref())?;
            let device: Device = device.parse()?;
            let mut profile = Profile::for_device(&device);
            if let Some(precision) = precision {
                profile.precision = precision.parse().map_err(anyhow::Error::msg)?;
            }
            let engine = Engine::load_with(&model, &device, profile)?;
            let train_rows = read_rows(&train, config.max_rows)?;
            let eval_rows = read_rows(&eval, usize::MAX)?;
            let eval_set = engine.prepare_eval(&eval_rows, &config)?;
            let bar = if std::io::stderr().is_terminal() {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:40}] step {pos}/{len} loss {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar
            } else {
                ProgressBar::hidden()
            };
            let options = JobOptions {
                init_adapter,
                save_adapter,
                eval_batch_rows: None,
            };
            let report = engine.run_job_with(
                &train_rows,
                &eval_set,
                &config,
                &options,
                &AtomicBool::new(false),
                &mut |p| {
                    bar.set_length(p.total_steps as u64);
                    bar.set_position(p.step as u64);
                    bar.set_message(format!("{:.4}", p.loss));
                },
            )?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "eval_loss {:.6}  steps {}  train_rows {}  train_tokens {}  eval_rows {} (skipped {})  {:.1}s",
                    report.eval_loss,
                    report.steps,
                    report.train_rows,
                    report.train_tokens,
                    report.eval_rows,
                    report.eval_rows_skipped,
                    report.seconds
                );
            }
            Ok(())
        }
    }
}
