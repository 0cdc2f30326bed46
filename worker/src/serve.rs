//! `worker serve`: a worker process for the QUIC cluster. It loads the model once per device,
//! accepts only the pinned coordinator, and on each stream the coordinator opens it greets with
//! `Hello`, takes `EvalSet` and `Job` messages, streams `Progress`, answers `Heartbeat` (also
//! while it parses an eval set or a dataset and while a job waits for a free device), obeys
//! `Cancel` and ends with `Result`. Models stay loaded across coordinator reconnects; eval sets
//! are cached by hash. A malformed, oversized or misdirected frame closes that connection, nothing
//! else; errors name the message type and size.
//!
//! A job's dataset is parsed with the validator's own limits and must hash to what the validator
//! checked. Failures are classified by [`JobFailure`], the rule the in-process path uses too; a
//! device whose thread panicked is restarted in the background, or taken out of service when it
//! cannot be.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use protocol::config::{ClusterConfig, Paths};
use protocol::dataset::{parse_dataset, DatasetLimits};
use protocol::transport::{self, Identity, Timeouts};
use protocol::wire::{
    bounded, DeviceInfo, FailureKind, FrameDecoder, Hello, JobOutcomeWire, JobRequest, JobResult,
    Message, Progress, Sender, PROTOCOL_VERSION,
};

use crate::recent::Recent;
use crate::runner::{DeviceRunner, EvalRows, JobFailure};

use crate::JobReport;

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
    devices: Devices,
    /// The eval sets coordinators sent, by hash, the most recently used kept.
    eval_sets: Mutex<Recent<String, EvalRows>>,
}

/// The node's devices: a pool of free runners, and how many are in service (free or busy).
struct Devices {
    free: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<DeviceRunner>>,
    give_back: tokio::sync::mpsc::Sender<DeviceRunner>,
    in_service: Arc<AtomicUsize>,
}

impl Devices {
    fn new(runners: Vec<DeviceRunner>) -> Self {
        let (give_back, free) = tokio::sync::mpsc::channel(runners.len().max(1));
        let in_service = Arc::new(AtomicUsize::new(runners.len()));
        for runner in runners {
            // The channel has room for every runner.
            let _ = give_back.try_send(runner);
        }
        Self {
            free: tokio::sync::Mutex::new(free),
            give_back,
            in_service,
        }
    }

    /// The next free device, or `None` once no device is in service.
    async fn take(&self) -> Option<DeviceRunner> {
        loop {
            if self.in_service.load(Ordering::Acquire) == 0 {
                return None;
            }
            let mut free = self.free.lock().await;
            // Look again now and then: the last device may be taken out while we wait.
            if let Ok(runner) = tokio::time::timeout(Duration::from_millis(500), free.recv()).await
            {
                return runner;
            }
        }
    }

    /// Returns a device after a job. One whose thread died (a panic) is replaced by a freshly
    /// started one in the background; if that fails, the device is taken out of service.
    fn release(&self, runner: DeviceRunner) {
        if runner.is_alive() {
            let _ = self.give_back.try_send(runner);
            return;
        }
        let (give_back, in_service) = (self.give_back.clone(), self.in_service.clone());
        let name = runner.name.clone();
        tracing::warn!(device = %name, "restarting a device whose thread stopped");
        tokio::task::spawn_blocking(move || match runner.restart() {
            Ok(fresh) => {
                tracing::info!(device = %name, "device restarted");
                let _ = give_back.try_send(fresh);
            }
            Err(e) => {
                in_service.fetch_sub(1, Ordering::AcqRel);
                tracing::error!(device = %name, error = %e, "device restart failed; taken out of service");
            }
        });
    }
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
    let mut runners = Vec::new();
    for name in &node.devices {
        let runner = if node.simulate_us_per_token > 0 {
            DeviceRunner::simulated(node.simulate_us_per_token)
        } else {
            let dir = model_dir(&config, config_path)?;
            let device = name.parse()?;
            tokio::task::spawn_blocking(move || DeviceRunner::start(device, &dir)).await??
        };
        runners.push((name.clone(), runner));
    }
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
    accept(endpoint, Arc::new(Node::new(node.id.clone(), runners))).await;
    Ok(())
}

impl Node {
    fn new(worker_id: String, runners: Vec<(String, DeviceRunner)>) -> Self {
        let model_id = runners.last().map(|(_, r)| r.model_id.clone());
        let devices = runners
            .iter()
            .map(|(name, _)| DeviceInfo {
                name: name.clone(),
                memory_bytes: 0,
            })
            .collect();
        Node {
            hello: Hello {
                protocol_version: PROTOCOL_VERSION,
                worker_id,
                devices,
                model_id,
            },
            devices: Devices::new(runners.into_iter().map(|(_, r)| r).collect()),
            eval_sets: Mutex::new(Recent::new(protocol::wire::MAX_EVAL_SETS)),
        }
    }
}

/// Serves connections until the endpoint closes.
async fn accept(endpoint: quinn::Endpoint, state: Arc<Node>) {
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
                        let reason = bounded(&format!("{e:#}"), 512);
                        tracing::warn!(peer = %connection.remote_address(), error = %reason, "closing the connection");
                        connection.close(quinn::VarInt::from_u32(1), reason.as_bytes());
                    }
                });
            }
        });
    }
}

fn failed(job_id: u64, kind: FailureKind, reason: &str) -> Message {
    Message::Result(JobResult {
        job_id,
        outcome: JobOutcomeWire::failed(kind, reason),
    })
}

fn done(job_id: u64, r: &JobReport) -> Message {
    let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Message::Result(JobResult {
        job_id,
        outcome: JobOutcomeWire::Done {
            eval_loss: r.eval_loss,
            steps: narrow(r.steps),
            train_rows: narrow(r.train_rows),
            train_tokens: r.train_tokens as u64,
            eval_rows: narrow(r.eval_rows),
            eval_rows_skipped: narrow(r.eval_rows_skipped),
            seconds: r.seconds,
            peak_memory_bytes: 0,
        },
    })
}

/// The limits eval sets are read with: the coordinator is pinned and checked the set itself, the
/// frame cap bounds its size, and the hash must match.
fn eval_set_limits() -> DatasetLimits {
    DatasetLimits {
        max_rows: usize::MAX,
        max_file_bytes: u64::MAX,
        max_line_bytes: usize::MAX,
        ..DatasetLimits::default()
    }
}

/// The coordinator's messages on one stream: first those that arrived while blocking work ran
/// (see [`answering_heartbeats`]), in order, then the stream itself.
struct Inbox {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    /// Messages read while blocking work ran, not yet handled.
    early: VecDeque<Message>,
    /// The coordinator finished the stream.
    ended: bool,
}

impl Inbox {
    fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(Sender::Coordinator),
            early: VecDeque::new(),
            ended: false,
        }
    }

    /// The next message; `Ok(None)` once the coordinator finished the stream. Cancel-safe in
    /// `select!` (see [`transport::receive`]).
    async fn next(&mut self) -> Result<Option<Message>, transport::TransportError> {
        if let Some(message) = self.early.pop_front() {
            return Ok(Some(message));
        }
        if self.ended {
            return Ok(None);
        }
        let message = transport::receive(&mut self.recv, &mut self.decoder).await?;
        self.ended = message.is_none();
        Ok(message)
    }
}

/// Runs `work` (parsing a file of up to 64 MiB) on a blocking thread and answers the
/// coordinator's heartbeats meanwhile, so that a large file does not read as a dead worker.
/// Other messages that arrive are kept in `inbox`, in order, for the caller to handle next.
async fn answering_heartbeats<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    send: &mut quinn::SendStream,
    inbox: &mut Inbox,
) -> Result<T> {
    let work = tokio::task::spawn_blocking(work);
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done.context("a parsing task failed"),
            message = transport::receive(&mut inbox.recv, &mut inbox.decoder), if !inbox.ended => match message? {
                Some(Message::Heartbeat(h)) => transport::send(send, &Message::Heartbeat(h)).await?,
                Some(other) => inbox.early.push_back(other),
                None => inbox.ended = true,
            },
        }
    }
}

/// Serves one stream: greeting, then messages until the coordinator finishes it.
async fn handle_stream(
    state: &Node,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> Result<()> {
    transport::send(&mut send, &Message::Hello(state.hello.clone())).await?;
    let mut inbox = Inbox::new(recv);
    while let Some(message) = inbox.next().await? {
        match message {
            Message::Heartbeat(h) => transport::send(&mut send, &Message::Heartbeat(h)).await?,
            Message::EvalSet(set) => {
                let data = set.data;
                let dataset = answering_heartbeats(
                    move || parse_dataset(&data, &eval_set_limits()),
                    &mut send,
                    &mut inbox,
                )
                .await?
                .map_err(|e| anyhow::anyhow!("eval set: {e}"))?;
                if dataset.content_hash != set.hash {
                    bail!(
                        "eval set: content hash {} does not match the announced {}",
                        dataset.content_hash,
                        bounded(&set.hash, 64)
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
            Message::Job(job) => run_job(state, job, &mut send, &mut inbox).await?,
            Message::Cancel(_) => {} // nothing is running on this stream
            other => bail!("unexpected {} frame from the coordinator", other.kind()),
        }
    }
    let _ = send.finish();
    Ok(())
}

/// The eval rows a job names, or why this worker cannot run it (never the miner's fault).
fn job_eval(state: &Node, job: &JobRequest) -> Result<EvalRows, String> {
    let eval = state
        .eval_sets
        .lock()
        .ok()
        .and_then(|mut s| s.get(&job.eval_set_hash).cloned())
        .ok_or_else(|| format!("unknown eval set {}", bounded(&job.eval_set_hash, 64)))?;
    job.config
        .validate()
        .map_err(|e| format!("the job's training config: {e}"))?;
    Ok(eval)
}

/// The rows of a job's dataset, or why this worker cannot run it (never the miner's fault: the
/// validator read the same bytes with the same limits).
fn job_rows(
    dataset: &[u8],
    limits: &DatasetLimits,
    expected_hash: &str,
) -> Result<Vec<protocol::dataset::Row>, String> {
    let dataset = parse_dataset(dataset, limits).map_err(|e| {
        format!("the dataset does not validate here as it did for the validator: {e}")
    })?;
    if dataset.content_hash != expected_hash {
        return Err(format!(
            "the dataset's content hash {} is not the validator's {}",
            dataset.content_hash,
            bounded(expected_hash, 64)
        ));
    }
    Ok(dataset.rows)
}

/// Runs one job on a free device, streaming progress and answering heartbeats and cancel, also
/// while it waits for the device.
async fn run_job(
    state: &Node,
    mut job: JobRequest,
    send: &mut quinn::SendStream,
    inbox: &mut Inbox,
) -> Result<()> {
    let id = job.job_id;
    let found = match job_eval(state, &job) {
        Ok(eval) => {
            let (dataset, limits) = (std::mem::take(&mut job.dataset), job.limits.clone());
            let hash = std::mem::take(&mut job.dataset_hash);
            let parse = move || job_rows(&dataset, &limits, &hash);
            answering_heartbeats(parse, send, inbox)
                .await?
                .map(|rows| (eval, rows))
        }
        Err(reason) => Err(reason),
    };
    let (eval, rows) = match found {
        Ok(found) => found,
        Err(reason) => {
            let reply = failed(id, FailureKind::Unavailable, &reason);
            return transport::send(send, &reply).await.map_err(Into::into);
        }
    };
    // Wait for a device, still answering the coordinator.
    let runner = {
        let take = state.devices.take();
        tokio::pin!(take);
        loop {
            tokio::select! {
                runner = &mut take => break runner,
                message = inbox.next() => match message? {
                    Some(Message::Heartbeat(h)) => transport::send(send, &Message::Heartbeat(h)).await?,
                    Some(Message::Cancel(c)) if c.job_id == id => {
                        // The job never ran: its time went to waiting, which is not the miner's.
                        let reply = failed(id, FailureKind::Unavailable, "cancelled while waiting for a free device");
                        return transport::send(send, &reply).await.map_err(Into::into);
                    }
                    Some(other) => bail!("unexpected {} frame while job {id} waits for a device", other.kind()),
                    None => bail!("coordinator left while job {id} waited for a device"),
                },
            }
        }
    };
    let Some(runner) = runner else {
        let reply = failed(
            id,
            FailureKind::Unavailable,
            "no device is in service on this worker",
        );
        return transport::send(send, &reply).await.map_err(Into::into);
    };
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
                let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                let progress = Message::Progress(Progress { job_id: id, step: narrow(p.step), total_steps: narrow(p.total_steps), loss: p.loss });
                if let Err(e) = transport::send(send, &progress).await {
                    cancel.store(true, Ordering::Relaxed);
                    let _ = (&mut run).await;
                    state.devices.release(runner);
                    return Err(e.into());
                }
            }
            message = inbox.next() => {
                let problem = match message {
                    Ok(Some(Message::Heartbeat(h))) => match transport::send(send, &Message::Heartbeat(h)).await {
                        Ok(()) => None,
                        Err(e) => Some(format!("{e}")),
                    },
                    Ok(Some(Message::Cancel(c))) if c.job_id == id => {
                        cancel.store(true, Ordering::Relaxed);
                        None
                    }
                    Ok(Some(other)) => Some(format!("unexpected {} frame during job {id}", other.kind())),
                    Ok(None) => Some(format!("coordinator left during job {id}")),
                    Err(e) => Some(format!("{e} (during job {id})")),
                };
                if let Some(problem) = problem {
                    // Stop the job, keep the device.
                    cancel.store(true, Ordering::Relaxed);
                    let _ = (&mut run).await;
                    state.devices.release(runner);
                    bail!(problem);
                }
            }
        }
    };
    state.devices.release(runner);
    let reply = match outcome {
        Ok(Ok(report)) => done(id, &report),
        Ok(Err(JobFailure::MinerData(reason))) => failed(id, FailureKind::MinerData, &reason),
        Ok(Err(JobFailure::Cancelled)) => failed(id, FailureKind::Cancelled, "cancelled"),
        Ok(Err(JobFailure::Worker(reason))) => failed(id, FailureKind::Worker, &reason),
        Err(e) => failed(
            id,
            FailureKind::Worker,
            &format!("the job task failed: {e}"),
        ),
    };
    transport::send(send, &reply).await.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::config::TrainingConfig;
    use protocol::transport::SERVER_NAME;
    use protocol::wire::{EvalSetData, ALPN};

    const ROW: &str = r#"{"conversations":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#;

    fn timeouts() -> Timeouts {
        Timeouts {
            keep_alive: Duration::from_millis(500),
            idle: Duration::from_secs(5),
        }
    }

    /// A worker endpoint on 127.0.0.1 that accepts only the coordinator identity it returns.
    fn listening() -> (quinn::Endpoint, Identity, Identity) {
        let coordinator = Identity::generate("c").expect("identity");
        let worker = Identity::generate("w").expect("identity");
        let endpoint = transport::server_endpoint(
            &worker,
            "127.0.0.1:0".parse().expect("addr"),
            vec![coordinator.fingerprint()],
            timeouts(),
        )
        .expect("server");
        (endpoint, coordinator, worker)
    }

    /// The coordinator's connection to `worker` at `addr` (with its endpoint, which must outlive
    /// it).
    async fn dial(
        coordinator: &Identity,
        worker: &Identity,
        addr: SocketAddr,
    ) -> (quinn::Endpoint, quinn::Connection) {
        let client = transport::client_endpoint().expect("client");
        let config = transport::client_config(coordinator, &worker.fingerprint(), timeouts(), ALPN)
            .expect("config");
        let conn = client
            .connect_with(config, addr, SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake");
        (client, conn)
    }

    /// A node with `runners` listening on 127.0.0.1, and a coordinator stream to it past the
    /// Hello (with the client endpoint and connection, which must outlive it).
    async fn connect(
        runners: Vec<DeviceRunner>,
    ) -> (
        (quinn::Endpoint, quinn::Connection),
        quinn::SendStream,
        quinn::RecvStream,
        FrameDecoder,
    ) {
        let (endpoint, coordinator, worker) = listening();
        let addr = endpoint.local_addr().expect("addr");
        let runners = runners
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("dev{i}"), r))
            .collect();
        tokio::spawn(accept(endpoint, Arc::new(Node::new("w".into(), runners))));
        let (client, conn) = dial(&coordinator, &worker, addr).await;
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        let mut decoder = FrameDecoder::new(Sender::Worker);
        transport::send(
            &mut send,
            &Message::Heartbeat(protocol::wire::Heartbeat { nonce: 0 }),
        )
        .await
        .expect("open");
        let hello = transport::receive(&mut recv, &mut decoder)
            .await
            .expect("hello");
        assert!(matches!(hello, Some(Message::Hello(_))), "{hello:?}");
        let echo = transport::receive(&mut recv, &mut decoder)
            .await
            .expect("echo");
        assert!(matches!(echo, Some(Message::Heartbeat(_))), "{echo:?}");
        ((client, conn), send, recv, decoder)
    }

    fn dataset(rows: usize) -> (Vec<u8>, String) {
        let text: String = (0..rows).map(|_| format!("{ROW}\n")).collect();
        let parsed = parse_dataset(text.as_bytes(), &DatasetLimits::default()).expect("valid");
        (text.into_bytes(), parsed.content_hash)
    }

    fn job(job_id: u64, eval_hash: &str) -> Message {
        let (dataset, dataset_hash) = dataset(4);
        Message::Job(JobRequest {
            job_id,
            dataset,
            dataset_hash,
            limits: DatasetLimits::default(),
            config: TrainingConfig::default(),
            eval_set_hash: eval_hash.into(),
        })
    }

    async fn result(recv: &mut quinn::RecvStream, decoder: &mut FrameDecoder) -> JobResult {
        loop {
            match transport::receive(recv, decoder).await.expect("frame") {
                Some(Message::Result(r)) => return r,
                Some(Message::Progress(_)) | Some(Message::Heartbeat(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Sends a heartbeat and returns the next frame, which must come within 10 s.
    async fn echo(
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
        decoder: &mut FrameDecoder,
        nonce: u64,
    ) -> Option<Message> {
        let heartbeat = Message::Heartbeat(protocol::wire::Heartbeat { nonce });
        transport::send(send, &heartbeat).await.expect("heartbeat");
        tokio::time::timeout(Duration::from_secs(10), transport::receive(recv, decoder))
            .await
            .expect("a heartbeat answered while the parse runs")
            .expect("frame")
    }

    /// Parsing a large file runs off the stream's task: the worker answers heartbeats meanwhile
    /// and keeps what else arrives, in order. (Multi-threaded, so that a worker that blocked
    /// would fail the timeout instead of hanging the test.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heartbeats_are_answered_while_a_file_is_parsed() {
        use protocol::wire::{Cancel, Heartbeat};
        let (endpoint, coordinator, worker) = listening();
        let addr = endpoint.local_addr().expect("addr");
        // The "parse" ends only when the test says so.
        let (finish_parse, parse_waits) = std::sync::mpsc::channel::<()>();
        let (server_done, server_finished) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let incoming = endpoint.accept().await.expect("incoming");
            let conn = incoming.await.expect("connection");
            let (mut send, recv) = conn.accept_bi().await.expect("stream");
            let mut inbox = Inbox::new(recv);
            let parsed =
                answering_heartbeats(move || parse_waits.recv().is_ok(), &mut send, &mut inbox)
                    .await
                    .expect("the work ends");
            let early: Vec<Message> = inbox.early.drain(..).collect();
            let _ = server_finished.await;
            (parsed, early, inbox.ended)
        });
        let (_client, conn) = dial(&coordinator, &worker, addr).await;
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        let mut decoder = FrameDecoder::new(Sender::Worker);
        assert_eq!(
            echo(&mut send, &mut recv, &mut decoder, 7).await,
            Some(Message::Heartbeat(Heartbeat { nonce: 7 }))
        );
        let cancel = Message::Cancel(Cancel { job_id: 3 });
        transport::send(&mut send, &cancel).await.expect("cancel");
        // Answered after the cancel was read: the cancel is kept by now.
        assert_eq!(
            echo(&mut send, &mut recv, &mut decoder, 8).await,
            Some(Message::Heartbeat(Heartbeat { nonce: 8 }))
        );
        finish_parse.send(()).expect("the parse waits");
        let _ = server_done.send(());
        let (parsed, early, ended) = server.await.expect("server");
        assert!(parsed, "the work's own result comes back");
        assert_eq!(early, vec![cancel]);
        assert!(!ended);
    }

    #[tokio::test]
    async fn a_device_panic_is_a_worker_failure_and_the_device_comes_back() {
        let (_conn, mut send, mut recv, mut decoder) =
            connect(vec![DeviceRunner::faulty(vec![1])]).await;
        let (eval, eval_hash) = dataset(3);
        transport::send(
            &mut send,
            &Message::EvalSet(EvalSetData {
                hash: eval_hash.clone(),
                data: eval,
            }),
        )
        .await
        .expect("eval set");
        transport::send(&mut send, &job(1, &eval_hash))
            .await
            .expect("job");
        let first = result(&mut recv, &mut decoder).await;
        match first.outcome {
            JobOutcomeWire::Failed {
                kind: FailureKind::Worker,
                reason,
            } => assert!(reason.contains("panicked"), "{reason}"),
            other => panic!("expected a worker failure, got {other:?}"),
        }
        // The dead device was not put back: a fresh one runs the next job.
        transport::send(&mut send, &job(2, &eval_hash))
            .await
            .expect("job");
        let second = result(&mut recv, &mut decoder).await;
        assert!(
            matches!(second.outcome, JobOutcomeWire::Done { .. }),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn a_dataset_that_does_not_hash_as_announced_is_not_charged_to_the_miner() {
        let (_conn, mut send, mut recv, mut decoder) =
            connect(vec![DeviceRunner::simulated(1)]).await;
        let (eval, eval_hash) = dataset(3);
        transport::send(
            &mut send,
            &Message::EvalSet(EvalSetData {
                hash: eval_hash.clone(),
                data: eval,
            }),
        )
        .await
        .expect("eval set");
        let Message::Job(mut request) = job(1, &eval_hash) else {
            unreachable!()
        };
        request.dataset_hash = "0".repeat(64);
        transport::send(&mut send, &Message::Job(request))
            .await
            .expect("job");
        let r = result(&mut recv, &mut decoder).await;
        assert!(
            matches!(
                r.outcome,
                JobOutcomeWire::Failed {
                    kind: FailureKind::Unavailable,
                    ..
                }
            ),
            "{r:?}"
        );
    }
}
