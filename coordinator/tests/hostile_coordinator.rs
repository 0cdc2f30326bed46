//! A hostile coordinator against a real `worker serve` process (simulated devices, so no model
//! loads): frames a worker never receives, frames over their type's cap, lengths that claim more
//! than the frame holds, more streams than the protocol needs, and a job that waits for a busy
//! device while heartbeats keep coming. The worker closes the offending connection with a reason
//! that names the message type and size and quotes nothing, and goes on serving.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{start_worker, Processes};
use protocol::config::TrainingConfig;
use protocol::dataset::{parse_dataset, DatasetLimits};
use protocol::transport::{self, Identity, Timeouts, SERVER_NAME, WORKER_MAX_STREAMS};
use protocol::wire::{
    Cancel, EvalSetData, FailureKind, FrameDecoder, Heartbeat, Hello, JobOutcomeWire, JobRequest,
    JobResult, Message, Progress, Sender, ALPN,
};

/// A coordinator identity, a `worker serve` pinned to it, and a QUIC client to that worker.
struct Setup {
    _dir: tempfile::TempDir,
    _worker: Processes,
    worker_pid: u32,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    address: std::net::SocketAddr,
}

fn setup(us_per_token: u64) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = Identity::generate("coordinator").expect("identity");
    let (child, address, fingerprint) = start_worker(
        &dir.path().join("w"),
        "w",
        &coordinator.fingerprint(),
        "",
        &format!("simulate_us_per_token = {us_per_token}\n"),
    );
    let timeouts = Timeouts {
        keep_alive: Duration::from_millis(500),
        idle: Duration::from_secs(5),
    };
    let config =
        transport::client_config(&coordinator, &fingerprint, timeouts, ALPN).expect("config");
    Setup {
        _dir: dir,
        worker_pid: child.id(),
        _worker: Processes(vec![child]),
        endpoint: transport::client_endpoint().expect("endpoint"),
        config,
        address: address.parse().expect("address"),
    }
}

impl Setup {
    async fn connect(&self) -> quinn::Connection {
        self.endpoint
            .connect_with(self.config.clone(), self.address, SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake")
    }

    /// A stream past the worker's Hello and the echo of the opening heartbeat.
    async fn stream(
        &self,
        conn: &quinn::Connection,
    ) -> (quinn::SendStream, quinn::RecvStream, FrameDecoder) {
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        transport::send(&mut send, &Message::Heartbeat(Heartbeat { nonce: 0 }))
            .await
            .expect("open");
        let mut decoder = FrameDecoder::new(Sender::Worker);
        let hello = transport::receive(&mut recv, &mut decoder)
            .await
            .expect("hello");
        assert!(matches!(hello, Some(Message::Hello(_))), "{hello:?}");
        let echo = transport::receive(&mut recv, &mut decoder)
            .await
            .expect("echo");
        assert_eq!(echo, Some(Message::Heartbeat(Heartbeat { nonce: 0 })));
        (send, recv, decoder)
    }

    /// Sends `bytes` on a fresh stream and returns the reason the worker closed the connection
    /// with.
    async fn close_reason_after(&self, bytes: &[u8]) -> String {
        let conn = self.connect().await;
        let (mut send, _recv, _) = self.stream(&conn).await;
        send.write_all(bytes).await.expect("write");
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .unwrap_or_else(|_| panic!("the worker kept the connection after {:.20?}", bytes));
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                String::from_utf8_lossy(&close.reason).into_owned()
            }
            other => panic!("closed for another reason: {other}"),
        }
    }

    /// The worker still serves: a fresh connection gets its Hello.
    async fn still_serving(&self) {
        let conn = self.connect().await;
        let _ = self.stream(&conn).await;
    }
}

/// Rows of a dataset whose canonical form is about `bytes` bytes in all, and their hash.
fn dataset(rows: usize, words: usize) -> (Vec<u8>, String) {
    let text: String = (0..rows)
        .map(|i| {
            format!(
                r#"{{"conversations":[{{"role":"user","content":"question {i}"}},{{"role":"assistant","content":"{}"}}]}}"#,
                "word ".repeat(words)
            ) + "\n"
        })
        .collect();
    let hash = parse_dataset(text.as_bytes(), &DatasetLimits::default())
        .expect("valid")
        .content_hash;
    (text.into_bytes(), hash)
}

fn job(job_id: u64, data: &(Vec<u8>, String), eval_hash: &str) -> Message {
    Message::Job(JobRequest {
        job_id,
        dataset: data.0.clone(),
        dataset_hash: data.1.clone(),
        limits: DatasetLimits::default(),
        config: TrainingConfig::default(),
        eval_set_hash: eval_hash.to_string(),
    })
}

fn frame(message: &Message) -> Vec<u8> {
    message.encode().expect("encodes")
}

#[tokio::test]
async fn frames_a_worker_never_receives_close_the_connection_naming_type_and_size() {
    let s = setup(1);
    let result = frame(&Message::Result(JobResult {
        job_id: 1,
        outcome: JobOutcomeWire::failed(FailureKind::Worker, "SECRET"),
    }));
    let hello = frame(&Message::Hello(Hello {
        protocol_version: 2,
        worker_id: "SECRET".repeat(1000),
        devices: vec![],
        model_id: None,
    }));
    let progress = frame(&Message::Progress(Progress {
        job_id: 1,
        step: 1,
        total_steps: 2,
        loss: 0.5,
    }));
    for (bytes, kind) in [(result, "Result"), (hello, "Hello"), (progress, "Progress")] {
        let reason = s.close_reason_after(&bytes).await;
        let size = format!("({} bytes)", bytes.len() - 4);
        assert!(
            reason.contains(kind)
                && reason.contains(&size)
                && reason.contains("from a coordinator"),
            "{reason}"
        );
        assert!(!reason.contains("SECRET"), "{reason}");
    }
    s.still_serving().await;
}

#[tokio::test]
async fn frames_over_their_types_cap_are_refused_at_the_prefix() {
    let s = setup(1);
    // Only the length and the tag are sent: the worker must not wait for the body.
    for (len, tag, kind) in [
        (1024u32, 6u8, "Cancel"),
        (100, 5, "Heartbeat"),
        (70 << 20, 2, "any frame"),
    ] {
        let mut header = len.to_be_bytes().to_vec();
        header.push(tag);
        let reason = s.close_reason_after(&header).await;
        assert!(
            reason.contains("exceeds the cap") && reason.contains(kind),
            "{reason}"
        );
    }
    s.still_serving().await;
}

#[tokio::test]
async fn a_length_inside_a_small_frame_cannot_claim_more_than_the_frame() {
    let s = setup(1);
    // A 20-byte Job whose dataset hash claims 60 MiB.
    let mut body = vec![2u8, 7, 0, 252];
    body.extend_from_slice(&(60u32 << 20).to_be_bytes());
    body.extend_from_slice(b"0123456789ab");
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    let reason = s.close_reason_after(&bytes).await;
    assert!(
        reason.contains("malformed Job payload") && reason.contains("claims more bytes"),
        "{reason}"
    );
    s.still_serving().await;
}

#[tokio::test]
async fn a_coordinator_gets_only_the_streams_the_protocol_needs() {
    let s = setup(1);
    let conn = s.connect().await;
    let mut streams = Vec::new();
    for _ in 0..WORKER_MAX_STREAMS {
        streams.push(s.stream(&conn).await);
    }
    let more = tokio::time::timeout(Duration::from_secs(1), conn.open_bi()).await;
    assert!(
        more.is_err(),
        "a coordinator opened stream {}",
        WORKER_MAX_STREAMS + 1
    );
    assert!(conn.max_datagram_size().is_none(), "datagrams are accepted");
    // Finishing one gives its place to a new one.
    let (mut send, mut recv, _) = streams.remove(0);
    send.finish().expect("finish");
    while recv.read_chunk(1024, true).await.ok().flatten().is_some() {}
    drop((send, recv));
    tokio::time::timeout(Duration::from_secs(5), s.stream(&conn))
        .await
        .expect("a stream once one ended");
}

#[tokio::test]
async fn a_job_waiting_for_the_device_still_answers_heartbeats_and_cancel() {
    // One simulated device at 20 ms per token: a job of ~500 tokens holds it for ~10 s.
    let s = setup(20_000);
    let conn = s.connect().await;
    let eval = dataset(3, 3);
    let long = dataset(10, 200);
    let (mut send1, mut recv1, mut dec1) = s.stream(&conn).await;
    transport::send(
        &mut send1,
        &Message::EvalSet(EvalSetData {
            hash: eval.1.clone(),
            data: eval.0.clone(),
        }),
    )
    .await
    .expect("eval set");
    transport::send(&mut send1, &job(1, &long, &eval.1))
        .await
        .expect("job 1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Job 2 waits for the only device; the stream must stay alive.
    let (mut send2, mut recv2, mut dec2) = s.stream(&conn).await;
    transport::send(&mut send2, &job(2, &long, &eval.1))
        .await
        .expect("job 2");
    for nonce in 1..=5u64 {
        transport::send(&mut send2, &Message::Heartbeat(Heartbeat { nonce }))
            .await
            .expect("heartbeat");
        let started = Instant::now();
        let echo = tokio::time::timeout(
            Duration::from_secs(2),
            transport::receive(&mut recv2, &mut dec2),
        )
        .await
        .expect("the waiting job's stream answers heartbeats")
        .expect("frame");
        assert_eq!(echo, Some(Message::Heartbeat(Heartbeat { nonce })));
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Cancelled before it got the device: the worker's matter, not the miner's.
    transport::send(&mut send2, &Message::Cancel(Cancel { job_id: 2 }))
        .await
        .expect("cancel");
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        transport::receive(&mut recv2, &mut dec2),
    )
    .await
    .expect("an answer to the cancel")
    .expect("frame");
    assert!(
        matches!(
            answer,
            Some(Message::Result(JobResult {
                job_id: 2,
                outcome: JobOutcomeWire::Failed {
                    kind: FailureKind::Unavailable,
                    ..
                }
            }))
        ),
        "{answer:?}"
    );
    // Job 1 still runs and can be cancelled.
    transport::send(&mut send1, &Message::Cancel(Cancel { job_id: 1 }))
        .await
        .expect("cancel");
    loop {
        match transport::receive(&mut recv1, &mut dec1)
            .await
            .expect("frame")
        {
            Some(Message::Result(r)) => {
                assert!(
                    matches!(
                        r.outcome,
                        JobOutcomeWire::Failed {
                            kind: FailureKind::Cancelled,
                            ..
                        }
                    ),
                    "{r:?}"
                );
                break;
            }
            Some(Message::Heartbeat(_)) | Some(Message::Progress(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

#[tokio::test]
async fn a_flood_of_tiny_frames_is_answered_in_order() {
    let s = setup(1);
    let conn = s.connect().await;
    let (mut send, mut recv, mut decoder) = s.stream(&conn).await;
    const FRAMES: u64 = 20_000;
    let flood: Vec<u8> = (1..=FRAMES)
        .flat_map(|nonce| frame(&Message::Heartbeat(Heartbeat { nonce })))
        .collect();
    let cpu_before = cpu_seconds(s.worker_pid);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        send.write_all(&flood).await.expect("flood");
        send
    });
    for nonce in 1..=FRAMES {
        let echo = tokio::time::timeout(
            Duration::from_secs(30),
            transport::receive(&mut recv, &mut decoder),
        )
        .await
        .expect("echoes keep coming")
        .expect("frame");
        assert_eq!(echo, Some(Message::Heartbeat(Heartbeat { nonce })));
    }
    let _ = writer.await;
    let cpu = cpu_seconds(s.worker_pid) - cpu_before;
    eprintln!(
        "{FRAMES} heartbeats echoed in {:.2} s, worker CPU {:.2} s ({:.1} µs per frame)",
        started.elapsed().as_secs_f64(),
        cpu,
        cpu * 1e6 / FRAMES as f64
    );
    s.still_serving().await;
}
