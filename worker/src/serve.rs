//! `worker serve`: a worker process for the QUIC cluster. It loads the model once per device,
//! accepts only the pinned coordinator, and on each stream the coordinator opens it greets with
//! `Hello`, takes `EvalSet` and `Job` messages, streams `Progress`, answers `Heartbeat`, obeys
//! `Cancel` and ends with `Result`. Models stay loaded across coordinator reconnects; eval sets
//! are cached by hash. A malformed or oversized frame closes that connection, nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use protocol::config::{ClusterConfig, Paths};
use protocol::dataset::{parse_dataset, DatasetLimits};
use protocol::transport::{self, Identity, Timeouts};
use protocol::wire::{
    DeviceInfo, FailureKind, FrameDecoder, Hello, JobOutcomeWire, JobRequest, JobResult, Message,
    Progress, PROTOCOL_VERSION,
};

use crate::runner::{DeviceRunner, EvalRows};
use crate::{EngineError, JobReport};

// `worker keygen` reads the config's base directory through this path.
pub use protocol::config::config_base;

/// The model directory `config` names, generating the tiny model there on first use.
fn model_dir(config: &ClusterConfig, config_path: &Path) -> Result<PathBuf> {
    let dir = Paths::new(config, config_path).model_dir(config);
    if config.uses_tiny_model() && !dir.join("config.json").exists() {
        crate::write_tiny_model(&dir, config.model.tiny_seed)?;
    }
    Ok(dir)
}

struct Node {
    hello: Hello,
    free: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<DeviceRunner>>,
    give_back: tokio::sync::mpsc::Sender<DeviceRunner>,
    eval_sets: Mutex<HashMap<String, EvalRows>>,
}

/// Runs the worker until the process is stopped. Prints `listening on ADDR` once ready.
pub async fn serve(config: ClusterConfig, config_path: &Path) -> Result<()> {
    let base = config_base(config_path);
    let node = &config.worker_node;
    let pin = node.coordinator_fingerprint.to_ascii_lowercase();
    if pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{}: worker_node.coordinator_fingerprint must be the coordinator's 64-hex SHA-256 (run `coordinator keygen`)", config_path.display());
    }
    let pki = base.join(&config.cluster.pki_dir);
    let identity = Identity::load(&pki.join("worker.cert.der"), &pki.join("worker.key.der"))
        .with_context(|| {
            format!(
                "no worker key pair in {} (run `worker keygen`)",
                pki.display()
            )
        })?;
    let (give_back, free) = tokio::sync::mpsc::channel(node.devices.len().max(1));
    let mut devices = Vec::new();
    let mut model_id = None;
    for name in &node.devices {
        let runner = if node.simulate_us_per_token > 0 {
            DeviceRunner::simulated(node.simulate_us_per_token)
        } else {
            let dir = model_dir(&config, config_path)?;
            let device = name.parse()?;
            tokio::task::spawn_blocking(move || DeviceRunner::start(device, &dir)).await??
        };
        model_id = Some(runner.model_id.clone());
        devices.push(DeviceInfo {
            name: name.clone(),
            memory_bytes: 0,
        });
        give_back.send(runner).await.ok();
    }
    let state = Arc::new(Node {
        hello: Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id: node.id.clone(),
            devices,
            model_id,
        },
        free: tokio::sync::Mutex::new(free),
        give_back,
        eval_sets: Mutex::new(HashMap::new()),
    });
    let listen: SocketAddr = node
        .listen
        .parse()
        .with_context(|| format!("worker_node.listen {:?}", node.listen))?;
    let timeouts = Timeouts {
        keep_alive: config.cluster.keep_alive(),
        idle: config.cluster.idle_timeout(),
    };
    let endpoint = transport::server_endpoint(&identity, listen, vec![pin], timeouts)?;
    println!(
        "listening on {} fingerprint {}",
        endpoint.local_addr()?,
        identity.fingerprint()
    );
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    while let Some(incoming) = endpoint.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "refused a connection");
                    return;
                }
            };
            tracing::info!(peer = %connection.remote_address(), "coordinator connected");
            while let Ok((send, recv)) = connection.accept_bi().await {
                let (state, connection) = (state.clone(), connection.clone());
                tokio::spawn(async move {
                    if let Err(e) = handle_stream(&state, send, recv).await {
                        tracing::warn!(peer = %connection.remote_address(), error = %e, "closing the connection");
                        connection.close(quinn::VarInt::from_u32(1), e.to_string().as_bytes());
                    }
                });
            }
        });
    }
    Ok(())
}

fn failed(job_id: u64, kind: FailureKind, reason: String) -> Message {
    Message::Result(JobResult {
        job_id,
        outcome: JobOutcomeWire::Failed { kind, reason },
    })
}

fn done(job_id: u64, r: &JobReport) -> Message {
    Message::Result(JobResult {
        job_id,
        outcome: JobOutcomeWire::Done {
            eval_loss: r.eval_loss,
            steps: r.steps as u32,
            train_rows: r.train_rows as u32,
            train_tokens: r.train_tokens as u64,
            eval_rows: r.eval_rows as u32,
            eval_rows_skipped: r.eval_rows_skipped as u32,
            seconds: r.seconds,
            peak_memory_bytes: 0,
        },
    })
}

/// Serves one stream: greeting, then messages until the coordinator finishes it.
async fn handle_stream(
    state: &Node,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<()> {
    transport::send(&mut send, &Message::Hello(state.hello.clone())).await?;
    let mut decoder = FrameDecoder::new();
    while let Some(message) = transport::receive(&mut recv, &mut decoder).await? {
        match message {
            Message::Heartbeat(h) => transport::send(&mut send, &Message::Heartbeat(h)).await?,
            Message::EvalSet(set) => {
                let limits = DatasetLimits {
                    max_rows: usize::MAX,
                    max_file_bytes: u64::MAX,
                    ..DatasetLimits::default()
                };
                let dataset = parse_dataset(&set.data, &limits)
                    .map_err(|e| anyhow::anyhow!("eval set: {e}"))?;
                if dataset.content_hash != set.hash {
                    bail!(
                        "eval set: content hash {} does not match the announced {}",
                        dataset.content_hash,
                        set.hash
                    );
                }
                if let Ok(mut sets) = state.eval_sets.lock() {
                    sets.insert(
                        set.hash.clone(),
                        EvalRows {
                            hash: set.hash,
                            rows: Arc::new(dataset.rows),
                        },
                    );
                }
            }
            Message::Job(job) => run_job(state, job, &mut send, &mut recv, &mut decoder).await?,
            Message::Cancel(_) => {} // nothing is running on this stream
            other => bail!("unexpected message from the coordinator: {other:?}"),
        }
    }
    let _ = send.finish();
    Ok(())
}

/// Runs one job on a free device, streaming progress and answering heartbeats and cancel.
async fn run_job(
    state: &Node,
    job: JobRequest,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<()> {
    let id = job.job_id;
    let eval = state
        .eval_sets
        .lock()
        .ok()
        .and_then(|s| s.get(&job.eval_set_hash).cloned());
    let Some(eval) = eval else {
        return transport::send(
            send,
            &failed(
                id,
                FailureKind::Unavailable,
                format!("unknown eval set {}", job.eval_set_hash),
            ),
        )
        .await
        .map_err(Into::into);
    };
    let limits = DatasetLimits {
        max_rows: job.config.max_rows,
        ..DatasetLimits::default()
    };
    let rows = match parse_dataset(&job.dataset, &limits) {
        Ok(d) => d.rows,
        Err(e) => {
            return transport::send(
                send,
                &failed(id, FailureKind::InvalidDataset, e.to_string()),
            )
            .await
            .map_err(Into::into)
        }
    };
    let runner = state.free.lock().await.recv().await.context("no device")?;
    let cancel = Arc::new(AtomicBool::new(false));
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let run = {
        let (runner, cancel) = (runner.clone(), cancel.clone());
        let progress = Box::new(move |p: crate::JobProgress| {
            let _ = progress_tx.send(p);
        });
        tokio::spawn(async move { runner.run(rows, job.config, eval, cancel, progress).await })
    };
    tokio::pin!(run);
    let outcome = loop {
        tokio::select! {
            finished = &mut run => break finished,
            Some(p) = progress_rx.recv() => {
                let progress = Message::Progress(Progress { job_id: id, step: p.step as u32, total_steps: p.total_steps as u32, loss: p.loss });
                transport::send(send, &progress).await?;
            }
            message = transport::receive(recv, decoder) => match message {
                Ok(Some(Message::Heartbeat(h))) => transport::send(send, &Message::Heartbeat(h)).await?,
                Ok(Some(Message::Cancel(c))) if c.job_id == id => cancel.store(true, Ordering::Relaxed),
                Ok(Some(other)) => { cancel.store(true, Ordering::Relaxed); bail!("unexpected message during job {id}: {other:?}") }
                Ok(None) | Err(_) => {
                    // The coordinator went away: stop the job, keep the device.
                    cancel.store(true, Ordering::Relaxed);
                    let _ = (&mut run).await;
                    state.give_back.send(runner).await.ok();
                    bail!("coordinator left during job {id}");
                }
            },
        }
    };
    state.give_back.send(runner).await.ok();
    let reply = match outcome {
        Ok(Ok(report)) => done(id, &report),
        Ok(Err(EngineError::Cancelled)) => failed(id, FailureKind::Cancelled, "cancelled".into()),
        Ok(Err(e @ EngineError::Data(_))) => failed(id, FailureKind::InvalidDataset, e.to_string()),
        Ok(Err(e)) => failed(id, FailureKind::Engine, e.to_string()),
        Err(e) => failed(id, FailureKind::Engine, format!("job task: {e}")),
    };
    transport::send(send, &reply).await.map_err(Into::into)
}
