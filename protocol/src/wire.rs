//! The coordinator ⇄ worker wire protocol (`docs/wire.md` and the README's "Threat model
//! and limits"): versioned messages in length-delimited bincode 2 frames. Each message type has a
//! sender (a worker never sends a `Job`, a coordinator never sends a `Result`) and a size cap;
//! decoding is bounded by the frame's own size, and trailing bytes are refused.
//!
//! Frame = `u32` big-endian length of the rest ‖ `u8` message tag ‖ bincode payload. A length
//! over the cap of its tag, or a tag the peer may not send, is refused as soon as the prefix and
//! tag are in, before anything is buffered. Errors name the message type and the size, never the
//! contents.

use serde::{Deserialize, Serialize};

use crate::config::TrainingConfig;
use crate::dataset::DatasetLimits;

/// The version both sides must speak; it is also in the QUIC ALPN.
pub const PROTOCOL_VERSION: u16 = 2;

/// The ALPN protocol id of this version.
pub const ALPN: &[u8] = b"murmuration/2";

/// The largest frame of any type: a job carrying the largest dataset plus 64 KiB for the rest
/// of the job (ids, hashes, limits, training config): 65 MiB.
pub const MAX_FRAME_BYTES: usize = MAX_JOB_DATASET_BYTES as usize + 64 * 1024;

pub use crate::dataset::MAX_JOB_DATASET_BYTES;

/// The longest failure reason a worker sends (longer ones are cut at a character boundary).
pub const MAX_REASON_BYTES: usize = 1024;

/// Eval sets a worker keeps (by hash, the most recently used), and so the most distinct eval sets
/// one validator config may use (`[eval] set` and the competitions' own): a proxy sends a set once
/// per connection and relies on the worker still having it.
pub const MAX_EVAL_SETS: usize = 8;

/// Which side of a connection sent a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The validator's coordinator (the QUIC client).
    Coordinator,
    /// A `worker serve` process (the QUIC server).
    Worker,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Sender::Coordinator => "coordinator",
            Sender::Worker => "worker",
        }
    }
}

/// One accelerator (or the CPU) of a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu`, `cuda:0`, ...
    pub name: String,
    /// Device memory in bytes (0 when unknown).
    pub memory_bytes: u64,
}

/// The worker's greeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The worker's name from its config.
    pub worker_id: String,
    /// Its devices.
    pub devices: Vec<DeviceInfo>,
    /// SHA-256 of the model it has loaded, if any.
    pub model_id: Option<String>,
}

/// A training job: the miner's dataset exactly as the validator read it, the limits it was read
/// with, the training config and the eval set it must be scored on.
///
/// The worker parses `dataset` with `limits` and must get the rows whose content hash is
/// `dataset_hash`: the same rows the validator checked, so a dataset that passes in the
/// validator passes on every worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// Unique per coordinator.
    pub job_id: u64,
    /// The miner's `data.jsonl` bytes, through the last row used.
    pub dataset: Vec<u8>,
    /// The dataset content hash of those rows (see `protocol::dataset::content_hash`).
    pub dataset_hash: String,
    /// The validator's `[dataset]` limits.
    pub limits: DatasetLimits,
    /// How to train.
    pub config: TrainingConfig,
    /// SHA-256 of the eval set the loss must be measured on.
    pub eval_set_hash: String,
}

/// The evaluation set jobs are scored on; workers cache it (tokenised) by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSetData {
    /// SHA-256 of its canonical rows (the dataset content hash).
    pub hash: String,
    /// The eval `data.jsonl`.
    pub data: Vec<u8>,
}

/// Progress of a job after an optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The job.
    pub job_id: u64,
    /// Steps done.
    pub step: u32,
    /// Steps in all.
    pub total_steps: u32,
    /// That step's loss.
    pub loss: f64,
}

/// Why a job failed, and so who it is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The miner's data: a row the tokenizer cannot encode, or training on it diverged. The
    /// only kind that is recorded against the miner.
    MinerData,
    /// The worker failed: its device, engine, files, or a panic. The job runs elsewhere.
    Worker,
    /// Cancelled by the coordinator.
    Cancelled,
    /// The worker cannot run it (unknown eval set, a config or dataset it cannot accept, no
    /// device left). The job runs elsewhere.
    Unavailable,
}

/// The end of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobOutcomeWire {
    /// Trained and evaluated.
    Done {
        /// The eval loss.
        eval_loss: f64,
        /// Optimizer steps.
        steps: u32,
        /// Training rows used.
        train_rows: u32,
        /// Training tokens (one epoch).
        train_tokens: u64,
        /// Eval rows that counted.
        eval_rows: u32,
        /// Eval rows skipped.
        eval_rows_skipped: u32,
        /// Wall time.
        seconds: f64,
        /// Peak device memory (0 when unknown).
        peak_memory_bytes: u64,
    },
    /// Did not produce a loss.
    Failed {
        /// The kind of failure.
        kind: FailureKind,
        /// A human-readable reason, at most [`MAX_REASON_BYTES`].
        reason: String,
    },
}

impl JobOutcomeWire {
    /// A failure with `reason` cut to [`MAX_REASON_BYTES`].
    pub fn failed(kind: FailureKind, reason: &str) -> Self {
        JobOutcomeWire::Failed {
            kind,
            reason: bounded(reason, MAX_REASON_BYTES),
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A job's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job.
    pub job_id: u64,
    /// How it ended.
    pub outcome: JobOutcomeWire,
}

/// Liveness probe and its echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Echoed back unchanged.
    pub nonce: u64,
}

/// Stop a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// The job.
    pub job_id: u64,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Worker → coordinator, first on a stream.
    Hello(Hello),
    /// Coordinator → worker.
    Job(JobRequest),
    /// Worker → coordinator.
    Progress(Progress),
    /// Worker → coordinator.
    Result(JobResult),
    /// Both ways: the coordinator's probe and the worker's echo.
    Heartbeat(Heartbeat),
    /// Coordinator → worker.
    Cancel(Cancel),
    /// Coordinator → worker, before jobs that need it.
    EvalSet(EvalSetData),
}

/// Why a frame was refused. No variant carries the frame's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix is over the cap of the frame's type (or of any frame).
    #[error("frame of {len} bytes exceeds the cap of {cap} bytes for {kind}")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The cap.
        cap: usize,
        /// The message type, or "any frame".
        kind: &'static str,
    },
    /// The tag names no message type.
    #[error("unknown message tag {tag} (frame of {len} bytes)")]
    UnknownTag {
        /// The tag.
        tag: u8,
        /// Declared length.
        len: usize,
    },
    /// A message type this peer never sends (a `Job` from a worker, a `Result` from a
    /// coordinator).
    #[error("a {kind} frame ({len} bytes) from a {from}, which never sends one")]
    WrongSender {
        /// The message type.
        kind: &'static str,
        /// Declared length.
        len: usize,
        /// Who sent it.
        from: &'static str,
    },
    /// The payload is not a valid encoding of its type.
    #[error("malformed {kind} payload ({len} bytes): {reason}")]
    Malformed {
        /// The message type.
        kind: &'static str,
        /// Payload length.
        len: usize,
        /// What is wrong, without the contents.
        reason: String,
    },
    /// Bytes were left after the payload.
    #[error("{extra} trailing byte(s) after a {kind} payload")]
    TrailingBytes {
        /// The message type.
        kind: &'static str,
        /// How many.
        extra: usize,
    },
    /// A frame of zero length (no tag).
    #[error("empty frame")]
    Empty,
    /// The message could not be encoded.
    #[error("cannot encode {kind}: {reason}")]
    Encode {
        /// The message type.
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

/// One message type: its tag, name, who may send it and the cap on tag + payload bytes.
struct Kind {
    tag: u8,
    name: &'static str,
    from_coordinator: bool,
    from_worker: bool,
    cap: usize,
}

/// Every message type. The small caps are the largest valid encodings with room to spare: a
/// heartbeat or cancel is at most 10 bytes, progress 28, a result with a full reason about 1.1 KiB.
const KINDS: [Kind; 7] = [
    Kind {
        tag: 1,
        name: "Hello",
        from_coordinator: false,
        from_worker: true,
        cap: 16 * 1024,
    },
    Kind {
        tag: 2,
        name: "Job",
        from_coordinator: true,
        from_worker: false,
        cap: MAX_FRAME_BYTES,
    },
    Kind {
        tag: 3,
        name: "Progress",
        from_coordinator: false,
        from_worker: true,
        cap: 64,
    },
    Kind {
        tag: 4,
        name: "Result",
        from_coordinator: false,
        from_worker: true,
        cap: 2 * 1024,
    },
    Kind {
        tag: 5,
        name: "Heartbeat",
        from_coordinator: true,
        from_worker: true,
        cap: 16,
    },
    Kind {
        tag: 6,
        name: "Cancel",
        from_coordinator: true,
        from_worker: false,
        cap: 16,
    },
    Kind {
        tag: 7,
        name: "EvalSet",
        from_coordinator: true,
        from_worker: false,
        cap: MAX_FRAME_BYTES,
    },
];

fn kind_of(tag: u8) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.tag == tag)
}

impl Kind {
    fn sent_by(&self, from: Sender) -> bool {
        match from {
            Sender::Coordinator => self.from_coordinator,
            Sender::Worker => self.from_worker,
        }
    }
}

/// The encoding: bincode 2, big-endian, variable-length integers, at most `LIMIT` bytes read or
/// claimed (a length prefix claims its bytes before they are allocated).
fn config<const LIMIT: usize>() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_limit::<LIMIT>()
}

/// Decodes `payload` with a limit of the smallest power of two ≥ 8 × its length (at least 64
/// bytes). bincode counts what it decodes at its in-memory size (a one-byte varint `u64` counts
/// 8) and makes a length prefix claim its bytes before allocating them, so a valid payload always
/// fits while a length inside it can never make the decoder allocate more than 16 × the frame's
/// size. (serde's own pre-allocation of a list is at most 1 MiB.)
fn decode_bounded<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    kind: &'static str,
) -> Result<(T, usize), WireError> {
    fn with<T: serde::de::DeserializeOwned, const LIMIT: usize>(
        payload: &[u8],
    ) -> Result<(T, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice::<T, _>(payload, config::<LIMIT>())
    }
    let bits = payload
        .len()
        .saturating_mul(8)
        .max(64)
        .next_power_of_two()
        .trailing_zeros();
    macro_rules! by_bits {
        ($($b:literal)*) => {
            match bits {
                $($b => with::<T, { 1usize << $b }>(payload),)*
                _ => with::<T, { 1usize << 30 }>(payload),
            }
        };
    }
    by_bits!(6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29).map_err(|e| {
        WireError::Malformed {
            kind,
            len: payload.len(),
            reason: describe(&e),
        }
    })
}

/// What is wrong with a payload, in words that never quote it.
fn describe(e: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as D;
    match e {
        D::UnexpectedEnd { additional } => format!("ends {additional} byte(s) early"),
        D::LimitExceeded => "a length claims more bytes than the frame holds".into(),
        D::InvalidIntegerType { .. } => "invalid integer encoding".into(),
        D::NonZeroTypeIsZero { .. } => "zero in a non-zero field".into(),
        D::UnexpectedVariant {
            type_name, found, ..
        } => format!("unknown {type_name} variant {found}"),
        D::Utf8 { .. } => "a string is not valid UTF-8".into(),
        D::InvalidCharEncoding(_) => "invalid character encoding".into(),
        D::InvalidBooleanValue(v) => format!("invalid boolean {v}"),
        D::OutsideUsizeRange(n) => format!("length {n} is out of range"),
        _ => "invalid value".into(),
    }
}

impl Message {
    fn tag(&self) -> u8 {
        match self {
            Message::Hello(_) => 1,
            Message::Job(_) => 2,
            Message::Progress(_) => 3,
            Message::Result(_) => 4,
            Message::Heartbeat(_) => 5,
            Message::Cancel(_) => 6,
            Message::EvalSet(_) => 7,
        }
    }

    /// The message type's name, for logs and errors (never the contents).
    pub fn kind(&self) -> &'static str {
        kind_of(self.tag()).map_or("?", |k| k.name)
    }

    /// The frame of this message: length, tag, payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let tag = self.tag();
        let (kind, cap) = kind_of(tag).map_or(("?", 0), |k| (k.name, k.cap));
        let config = config::<MAX_FRAME_BYTES>();
        let payload = match self {
            Message::Hello(m) => bincode::serde::encode_to_vec(m, config),
            Message::Job(m) => bincode::serde::encode_to_vec(m, config),
            Message::Progress(m) => bincode::serde::encode_to_vec(m, config),
            Message::Result(m) => bincode::serde::encode_to_vec(m, config),
            Message::Heartbeat(m) => bincode::serde::encode_to_vec(m, config),
            Message::Cancel(m) => bincode::serde::encode_to_vec(m, config),
            Message::EvalSet(m) => bincode::serde::encode_to_vec(m, config),
        }
        .map_err(|e| WireError::Encode {
            kind,
            reason: e.to_string(),
        })?;
        let len = payload.len() + 1;
        if len > cap {
            return Err(WireError::TooLarge { len, cap, kind });
        }
        let mut frame = Vec::with_capacity(4 + len);
        frame.extend_from_slice(&(len as u32).to_be_bytes());
        frame.push(tag);
        frame.extend_from_slice(&payload);
        Ok(frame)
    }

    /// Decodes the body of one frame (tag ‖ payload, without the length prefix) sent by `from`.
    pub fn decode_body(body: &[u8], from: Sender) -> Result<Message, WireError> {
        let (&tag, payload) = body.split_first().ok_or(WireError::Empty)?;
        let kind = check_header(tag, body.len(), from)?;
        fn decode<T: serde::de::DeserializeOwned>(
            payload: &[u8],
            kind: &'static str,
        ) -> Result<T, WireError> {
            let (value, used) = decode_bounded::<T>(payload, kind)?;
            if used != payload.len() {
                return Err(WireError::TrailingBytes {
                    kind,
                    extra: payload.len() - used,
                });
            }
            Ok(value)
        }
        let name = kind.name;
        Ok(match tag {
            1 => Message::Hello(decode(payload, name)?),
            2 => Message::Job(decode(payload, name)?),
            3 => Message::Progress(decode(payload, name)?),
            4 => Message::Result(decode(payload, name)?),
            5 => Message::Heartbeat(decode(payload, name)?),
            6 => Message::Cancel(decode(payload, name)?),
            _ => Message::EvalSet(decode(payload, name)?),
        })
    }
}

/// The type of a frame whose tag and length (tag + payload) are known, if `from` may send it at
/// that size.
fn check_header(tag: u8, len: usize, from: Sender) -> Result<&'static Kind, WireError> {
    let kind = kind_of(tag).ok_or(WireError::UnknownTag { tag, len })?;
    if !kind.sent_by(from) {
        return Err(WireError::WrongSender {
            kind: kind.name,
            len,
            from: from.name(),
        });
    }
    if len > kind.cap {
        return Err(WireError::TooLarge {
            len,
            cap: kind.cap,
            kind: kind.name,
        });
    }
    Ok(kind)
}

/// Splits a byte stream from one peer into messages; feed it what the transport read.
///
/// Consumed bytes are dropped by moving a start offset, and the buffer is compacted only when
/// the consumed part is at least as large as what is left, so each byte is copied O(1) times
/// however small the frames are.
#[derive(Debug)]
pub struct FrameDecoder {
    from: Sender,
    buffer: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// A decoder for frames sent by `from`; other senders' message types are refused.
    pub fn new(from: Sender) -> Self {
        Self {
            from,
            buffer: Vec::new(),
            start: 0,
        }
    }

    /// Appends bytes read from the transport.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start >= 4096 && self.start >= self.buffer.len() - self.start {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The next complete message, `Ok(None)` when more bytes are needed, or an error (after which
    /// the connection should be closed). The declared length is checked against the caps and the
    /// tag against the sender as soon as the prefix and tag are in, before the body is buffered.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let pending = &self.buffer[self.start..];
        let Some(prefix) = pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len == 0 {
            return Err(WireError::Empty);
        }
        if len > MAX_FRAME_BYTES {
            return Err(WireError::TooLarge {
                len,
                cap: MAX_FRAME_BYTES,
                kind: "any frame",
            });
        }
        let Some(&tag) = pending.get(4) else {
            return Ok(None);
        };
        check_header(tag, len, self.from)?;
        if pending.len() < 4 + len {
            // The frame is within its cap: make room for it once instead of growing by doubling.
            self.buffer.reserve(4 + len - pending.len());
            return Ok(None);
        }
        let body = &pending[4..4 + len];
        let message = Message::decode_body(body, self.from);
        self.start += 4 + len;
        message.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_coordinator() -> Vec<Message> {
        vec![
            Message::Job(JobRequest {
                job_id: 7,
                dataset: b"{\"conversations\":[]}\n".to_vec(),
                dataset_hash: "d".repeat(64),
                limits: DatasetLimits::default(),
                config: TrainingConfig::default(),
                eval_set_hash: "e".repeat(64),
            }),
            Message::Heartbeat(Heartbeat { nonce: u64::MAX }),
            Message::Cancel(Cancel { job_id: 9 }),
            Message::EvalSet(EvalSetData {
                hash: "e".repeat(64),
                data: b"{}\n".to_vec(),
            }),
        ]
    }

    fn from_worker() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                worker_id: "gpu-01".into(),
                devices: vec![DeviceInfo {
                    name: "cuda:0".into(),
                    memory_bytes: 80 << 30,
                }],
                model_id: Some("ab".repeat(32)),
            }),
            Message::Progress(Progress {
                job_id: u64::MAX,
                step: u32::MAX,
                total_steps: u32::MAX,
                loss: 1.25,
            }),
            Message::Result(JobResult {
                job_id: u64::MAX,
                outcome: JobOutcomeWire::Done {
                    eval_loss: 0.5,
                    steps: u32::MAX,
                    train_rows: u32::MAX,
                    train_tokens: u64::MAX,
                    eval_rows: u32::MAX,
                    eval_rows_skipped: u32::MAX,
                    seconds: 12.5,
                    peak_memory_bytes: u64::MAX,
                },
            }),
            Message::Result(JobResult {
                job_id: u64::MAX,
                outcome: JobOutcomeWire::failed(FailureKind::MinerData, &"é".repeat(5000)),
            }),
            Message::Heartbeat(Heartbeat { nonce: u64::MAX }),
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_byte_stream_split_anywhere() {
        for (from, messages) in [
            (Sender::Coordinator, from_coordinator()),
            (Sender::Worker, from_worker()),
        ] {
            let stream: Vec<u8> = messages
                .iter()
                .flat_map(|m| m.encode().expect("encodes"))
                .collect();
            for chunk in [1, 3, 7, stream.len()] {
                let mut decoder = FrameDecoder::new(from);
                let mut got = Vec::new();
                for piece in stream.chunks(chunk) {
                    decoder.extend(piece);
                    while let Some(m) = decoder.next_message().expect("valid stream") {
                        got.push(m);
                    }
                }
                assert_eq!(got, messages, "chunk size {chunk}");
                assert_eq!(decoder.buffered(), 0);
            }
        }
    }

    #[test]
    fn the_largest_valid_small_messages_fit_their_caps() {
        // Every field at its widest encoding: the caps leave no valid message out.
        for m in from_worker().iter().chain(&from_coordinator()) {
            m.encode().expect("fits its cap");
        }
    }

    #[test]
    fn a_type_the_peer_never_sends_is_refused_at_its_tag_naming_type_and_size() {
        // A worker sending a 60 MiB "EvalSet": refused with 5 bytes in, before any buffering.
        let mut decoder = FrameDecoder::new(Sender::Worker);
        decoder.extend(&(60u32 << 20).to_be_bytes());
        decoder.extend(&[7]);
        let e = decoder.next_message().expect_err("wrong sender");
        assert_eq!(
            e,
            WireError::WrongSender {
                kind: "EvalSet",
                len: 60 << 20,
                from: "worker"
            }
        );
        assert_eq!(
            e.to_string(),
            "a EvalSet frame (62914560 bytes) from a worker, which never sends one"
        );
        // And a coordinator sending a Result.
        let frame = from_worker()[2].encode().expect("encodes");
        let mut decoder = FrameDecoder::new(Sender::Coordinator);
        decoder.extend(&frame);
        assert!(matches!(
            decoder.next_message(),
            Err(WireError::WrongSender {
                kind: "Result",
                from: "coordinator",
                ..
            })
        ));
    }

    #[test]
    fn oversized_lengths_are_refused_before_buffering() {
        let mut decoder = FrameDecoder::new(Sender::Worker);
        decoder.extend(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decoder.next_message(),
            Err(WireError::TooLarge {
                kind: "any frame",
                ..
            })
        ));
        // A heartbeat claiming 1 MiB is refused by its own cap as soon as the tag is in.
        let mut decoder = FrameDecoder::new(Sender::Coordinator);
        decoder.extend(&(1u32 << 20).to_be_bytes());
        decoder.extend(&[5]);
        assert!(matches!(
            decoder.next_message(),
            Err(WireError::TooLarge {
                kind: "Heartbeat",
                cap: 16,
                ..
            })
        ));
        // A result the size of a job.
        let mut decoder = FrameDecoder::new(Sender::Worker);
        decoder.extend(&(64u32 << 20).to_be_bytes());
        decoder.extend(&[4]);
        assert!(matches!(
            decoder.next_message(),
            Err(WireError::TooLarge { kind: "Result", .. })
        ));
        // Encoding refuses what decoding would refuse.
        let big = Message::Hello(Hello {
            protocol_version: 1,
            worker_id: "x".repeat(100_000),
            devices: vec![],
            model_id: None,
        });
        assert!(matches!(
            big.encode(),
            Err(WireError::TooLarge { kind: "Hello", .. })
        ));
    }

    #[test]
    fn a_length_inside_a_payload_cannot_claim_more_than_the_frame() {
        // A 20-byte Hello whose worker_id claims 60 MiB: refused by the decode limit.
        let mut body = vec![1u8, 2]; // tag, protocol version 2
        body.push(252); // varint u32 follows
        body.extend_from_slice(&(60u32 << 20).to_be_bytes());
        body.extend_from_slice(b"0123456789abc");
        let e = Message::decode_body(&body, Sender::Worker).expect_err("refused");
        assert!(
            matches!(&e, WireError::Malformed { kind: "Hello", reason, .. } if reason.contains("claims more bytes")),
            "{e}"
        );
    }

    #[test]
    fn errors_never_quote_the_payload() {
        // A Result whose reason is not UTF-8 and a Hello with trailing bytes: the messages say
        // what and how big, not what was inside.
        let mut frame = Message::Result(JobResult {
            job_id: 1,
            outcome: JobOutcomeWire::failed(FailureKind::Worker, "SECRET-SECRET"),
        })
        .encode()
        .expect("encodes");
        let at = frame.len() - 1;
        frame[at] = 0xff;
        let e = Message::decode_body(&frame[4..], Sender::Worker).expect_err("bad utf-8");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(e.to_string().contains("Result"), "{e}");
        let mut body = Message::Hello(Hello {
            protocol_version: 2,
            worker_id: "SECRET".into(),
            devices: vec![],
            model_id: None,
        })
        .encode()
        .expect("encodes")[4..]
            .to_vec();
        body.extend_from_slice(b"SECRET");
        let e = Message::decode_body(&body, Sender::Worker).expect_err("trailing");
        assert_eq!(e.to_string(), "6 trailing byte(s) after a Hello payload");
    }

    #[test]
    fn garbage_trailing_bytes_and_unknown_tags_are_errors_not_panics() {
        let mut frame = Message::Cancel(Cancel { job_id: 9 })
            .encode()
            .expect("encodes");
        frame.push(0);
        assert!(matches!(
            Message::decode_body(&frame[4..], Sender::Coordinator),
            Err(WireError::TrailingBytes {
                kind: "Cancel",
                extra: 1
            })
        ));
        assert!(matches!(
            Message::decode_body(&[99, 1, 2], Sender::Worker),
            Err(WireError::UnknownTag { tag: 99, len: 3 })
        ));
        assert!(matches!(
            Message::decode_body(&[], Sender::Worker),
            Err(WireError::Empty)
        ));
        // A job whose dataset length claims more bytes than the frame holds.
        let mut body = vec![2u8];
        body.extend_from_slice(&[7]); // job id
        body.extend_from_slice(&[252, 0xff, 0xff, 0xff, 0xff]); // varint u32: 4 GiB
        assert!(matches!(
            Message::decode_body(&body, Sender::Coordinator),
            Err(WireError::Malformed { kind: "Job", .. })
        ));
    }

    #[test]
    fn many_small_frames_ahead_of_a_large_one_are_decoded_in_linear_time() {
        // 20,000 heartbeats followed by the first 16 MiB of a job: the old decoder moved the
        // 16 MiB tail once per heartbeat (320 GB of copying); this one never moves it.
        let heartbeat = Message::Heartbeat(Heartbeat { nonce: 1 })
            .encode()
            .expect("encodes");
        let mut stream = Vec::new();
        for _ in 0..20_000 {
            stream.extend_from_slice(&heartbeat);
        }
        let job_len = 40u32 << 20;
        stream.extend_from_slice(&job_len.to_be_bytes());
        stream.push(2);
        stream.resize(stream.len() + (16 << 20), 0);
        let started = std::time::Instant::now();
        let mut decoder = FrameDecoder::new(Sender::Coordinator);
        decoder.extend(&stream);
        let mut count = 0;
        while let Some(m) = decoder.next_message().expect("valid") {
            assert_eq!(m, Message::Heartbeat(Heartbeat { nonce: 1 }));
            count += 1;
        }
        assert_eq!(count, 20_000);
        assert_eq!(decoder.buffered(), 5 + (16 << 20));
        let took = started.elapsed();
        // About 20 ms here, and 3.8 s with a drain per frame.
        assert!(
            took < std::time::Duration::from_millis(500),
            "took {took:?}"
        );
    }

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded(&"é".repeat(100), 11);
        assert!(cut.len() <= 11 && cut.ends_with('…'), "{cut}");
        match JobOutcomeWire::failed(FailureKind::Worker, &"x".repeat(5000)) {
            JobOutcomeWire::Failed { reason, .. } => assert!(reason.len() <= MAX_REASON_BYTES),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_job_with_the_largest_allowed_dataset_fits_its_frame() {
        let job = Message::Job(JobRequest {
            job_id: u64::MAX,
            dataset: vec![b'x'; MAX_JOB_DATASET_BYTES as usize],
            dataset_hash: "f".repeat(64),
            limits: DatasetLimits {
                max_file_bytes: u64::MAX,
                max_line_bytes: usize::MAX,
                max_rows: usize::MAX,
                max_json_depth: usize::MAX,
            },
            config: TrainingConfig::default(),
            eval_set_hash: "e".repeat(64),
        });
        let frame = job.encode().expect("fits its frame");
        assert!(frame.len() - 4 <= MAX_FRAME_BYTES, "{}", frame.len());
        assert!(DatasetLimits::default().max_file_bytes <= MAX_JOB_DATASET_BYTES);
    }
}
