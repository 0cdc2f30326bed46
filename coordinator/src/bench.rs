//! `coordinator bench-cluster`: the scheduler and transport under load. Starts N `worker serve`
//! processes on 127.0.0.1 that simulate training (sleeping a fixed time per token instead of
//! training), sends M jobs of varied sizes through the real QUIC proxies and the real scheduler,
//! and reports the makespan against the lower bound `max(total work / N, longest job)` and the
//! coordinator's CPU time per job.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use protocol::config::TrainingConfig;
use protocol::dataset::{canonical_row, content_hash, DatasetLimits, Message as Turn, Role, Row};
use protocol::transport::{Identity, Timeouts};
use ractor::Actor;

use crate::eval_sets::EvalSet;
use crate::remote::{RemoteArgs, RemoteWorker};
use crate::schedule::{schedule, JobHooks, WorkerHandle};
use crate::worker_actor::{Job, JobOutcome, ValidatedFile};

/// Options of the benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterBenchArgs {
    /// Worker processes.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Jobs.
    #[arg(long, default_value_t = 32)]
    pub jobs: usize,
    /// Simulated training cost in microseconds per token.
    #[arg(long, default_value_t = 200)]
    pub us_per_token: u64,
    /// Seed of the job sizes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

struct NoHooks;

impl JobHooks for NoHooks {
    type Error = std::convert::Infallible;
    fn started(&self, _job: &Job, _worker: &str) -> Result<i64, Self::Error> {
        Ok(0)
    }
    fn finished(
        &self,
        _job: &Job,
        _token: i64,
        _outcome: &JobOutcome,
        _worker: &str,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn row(i: usize) -> Row {
    Row {
        system: None,
        conversations: vec![
            Turn {
                role: Role::User,
                content: format!("What is {i} plus {i}?"),
            },
            Turn {
                role: Role::Assistant,
                content: format!("The answer is {}.", 2 * i),
            },
        ],
    }
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs the benchmark and prints one JSON object.
pub async fn run(args: &ClusterBenchArgs) -> Result<()> {
    let worker_bin: PathBuf = std::env::current_exe()?.with_file_name("worker");
    anyhow::ensure!(
        worker_bin.exists(),
        "{} not found: build the worker binary first",
        worker_bin.display()
    );
    let dir = tempfile::tempdir()?;
    let coordinator = Identity::generate("coordinator")?;
    let mut processes = Processes(Vec::new());
    let mut addresses = Vec::new();
    for i in 0..args.workers {
        let wdir = dir.path().join(format!("w{i}"));
        let identity = Identity::generate(&format!("w{i}"))?;
        identity.save(&wdir.join("pki"), "worker")?;
        let config = wdir.join("cluster.toml");
        std::fs::write(
            &config,
            format!(
                "[worker_node]\nid = \"w{i}\"\nlisten = \"127.0.0.1:0\"\ncoordinator_fingerprint = \"{}\"\nsimulate_us_per_token = {}\n",
                coordinator.fingerprint(),
                args.us_per_token
            ),
        )?;
        let mut child = Command::new(&worker_bin)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("worker serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let address = line
            .split_whitespace()
            .nth(2)
            .context("no listening line")?
            .to_string();
        addresses.push((address, identity.fingerprint()));
        processes.0.push(child);
    }
    let eval_rows: Vec<Row> = (0..16).map(row).collect();
    let eval_text: String = eval_rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
        .collect();
    let eval = Arc::new(EvalSet::new(
        "bench",
        eval_rows.clone(),
        content_hash(&eval_rows.iter().map(canonical_row).collect::<Vec<_>>()),
        eval_text.into_bytes(),
    ));
    let mut workers = Vec::new();
    for (i, (address, fingerprint)) in addresses.iter().enumerate() {
        let (actor, _) = Actor::spawn(
            None,
            RemoteWorker,
            RemoteArgs {
                id: format!("w{i}"),
                address: address.parse()?,
                fingerprint: fingerprint.clone(),
                identity: coordinator.clone(),
                timeouts: Timeouts {
                    keep_alive: Duration::from_secs(2),
                    idle: Duration::from_secs(10),
                },
                heartbeat: Duration::from_secs(1),
                worker_timeout: Duration::from_secs(10),
                expected_model: None,
                status: Arc::new(std::sync::Mutex::new(Default::default())),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("proxy w{i}: {e}"))?;
        workers.push(WorkerHandle {
            name: format!("w{i}"),
            actor: crate::supervisor::ActorSlot::new(actor),
            status: Arc::new(std::sync::Mutex::new(Default::default())),
        });
    }
    // Job sizes: 20..=200 rows, deterministic in the seed.
    let mut state = args
        .seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut jobs = Vec::new();
    let mut costs = Vec::new();
    for id in 0..args.jobs {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = 20 + (state >> 33) as usize % 181;
        let rows: Vec<Row> = (id * 1000..id * 1000 + n).map(row).collect();
        let tokens: usize = rows.iter().map(|r| canonical_row(r).len() / 4).sum();
        let file = Arc::new(ValidatedFile {
            bytes: rows
                .iter()
                .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
                .collect::<String>()
                .into_bytes(),
            limits: DatasetLimits {
                max_rows: usize::MAX,
                ..DatasetLimits::default()
            },
            content_hash: content_hash(&rows.iter().map(canonical_row).collect::<Vec<_>>()),
        });
        costs.push(tokens as f64 * args.us_per_token as f64 / 1e6);
        jobs.push((
            Job {
                id: id as u64,
                uid: id as u16,
                rows,
                file,
                config: TrainingConfig {
                    max_rows: usize::MAX,
                    ..TrainingConfig::default()
                },
                eval: eval.clone(),
                timeout: Duration::from_secs(3600),
            },
            tokens,
        ));
    }
    // Warm the connections so the figure measures scheduling, not handshakes.
    for w in &workers {
        let _ = ractor::call!(w.actor.current(), crate::worker_actor::WorkerMsg::Status);
    }
    let total: f64 = costs.iter().sum();
    let lower_bound = (total / args.workers as f64).max(costs.iter().cloned().fold(0.0, f64::max));
    // The same greedy rule with zero overhead: what the scheduler could at best achieve.
    let mut sorted = costs.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut loads = vec![0.0f64; args.workers];
    for c in sorted {
        if let Some(min) = loads.iter_mut().min_by(|a, b| a.total_cmp(b)) {
            *min += c;
        }
    }
    let lpt_ideal = loads.iter().cloned().fold(0.0, f64::max);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let done = schedule(&workers, jobs, Arc::new(NoHooks))
        .await
        .map(|s| s.finished)
        .unwrap_or_default();
    let makespan = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    for w in &workers {
        w.actor.current().stop(None);
    }
    println!(
        "{}",
        serde_json::json!({
            "workers": args.workers,
            "jobs": args.jobs,
            "jobs_done": done.len(),
            "us_per_token": args.us_per_token,
            "total_work_s": total,
            "lower_bound_s": lower_bound,
            "makespan_s": makespan,
            "makespan_over_lower_bound": makespan / lower_bound,
            "lpt_ideal_s": lpt_ideal,
            "makespan_over_lpt_ideal": makespan / lpt_ideal,
            "coordinator_cpu_s": cpu,
            "coordinator_cpu_ms_per_job": cpu * 1000.0 / args.jobs as f64,
        })
    );
    Ok(())
}
