//! The coordinator ⇄ worker wire protocol (`docs/wire.md`): versioned messages in length-delimited
//! bincode 2 frames, each message type with its own size cap, trailing bytes rejected.
//!
//! Frame = `u32` big-endian length of the rest ‖ `u8` message tag ‖ bincode payload. A length
//! over the cap of its tag (or over [`MAX_FRAME_BYTES`]) is refused before anything is
//! allocated; a payload that decodes without consuming every byte is refused.

use serde::{Deserialize, Serialize};

use crate::config::TrainingConfig;

/// The version both sides must speak; it is also in the QUIC ALPN.
pub const PROTOCOL_VERSION: u16 = 1;

/// The ALPN protocol id of this version.
pub const ALPN: &[u8] = b"murmuration/1";

/// The largest frame of any type: a job carrying a 64 MiB dataset plus its config.
pub const MAX_FRAME_BYTES: usize = 65 * 1024 * 1024;

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

/// A training job: the dataset bytes, the config and the eval set it must be scored on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// Unique per coordinator.
    pub job_id: u64,
    /// The miner's `data.jsonl`.
    pub dataset: Vec<u8>,
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

/// Why a job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The dataset broke a validation rule (the miner's fault).
    InvalidDataset,
    /// The engine failed (diverged, out of memory ...).
    Engine,
    /// Cancelled by the coordinator.
    Cancelled,
    /// Ran past its time limit.
    Timeout,
    /// The worker cannot run it (wrong model, eval set unknown ...).
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
        /// A human-readable reason.
        reason: String,
    },
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
    /// Worker → coordinator, first on a connection.
    Hello(Hello),
    /// Coordinator → worker.
    Job(JobRequest),
    /// Worker → coordinator.
    Progress(Progress),
    /// Worker → coordinator.
    Result(JobResult),
    /// Both ways.
    Heartbeat(Heartbeat),
    /// Coordinator → worker.
    Cancel(Cancel),
    /// Coordinator → worker, before jobs that need it.
    EvalSet(EvalSetData),
}

/// Why a frame was refused.
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
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    /// The payload is not a valid encoding of its type.
    #[error("malformed {kind} payload: {reason}")]
    Malformed {
        /// The message type.
        kind: &'static str,
        /// The decoder's complaint.
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

/// `(tag, name, cap on tag + payload bytes)` of every message type.
const TYPES: [(u8, &str, usize); 7] = [
    (1, "Hello", 64 * 1024),
    (2, "Job", MAX_FRAME_BYTES),
    (3, "Progress", 1024),
    (4, "Result", 64 * 1024),
    (5, "Heartbeat", 64),
    (6, "Cancel", 64),
    (7, "EvalSet", MAX_FRAME_BYTES),
];

fn kind_of(tag: u8) -> Option<(&'static str, usize)> {
    TYPES.iter().find(|t| t.0 == tag).map(|t| (t.1, t.2))
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_limit::<MAX_FRAME_BYTES>()
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

    /// The frame of this message: length, tag, payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let tag = self.tag();
        let (kind, cap) = kind_of(tag).unwrap_or(("?", 0));
        let payload = match self {
            Message::Hello(m) => bincode::serde::encode_to_vec(m, config()),
            Message::Job(m) => bincode::serde::encode_to_vec(m, config()),
            Message::Progress(m) => bincode::serde::encode_to_vec(m, config()),
            Message::Result(m) => bincode::serde::encode_to_vec(m, config()),
            Message::Heartbeat(m) => bincode::serde::encode_to_vec(m, config()),
            Message::Cancel(m) => bincode::serde::encode_to_vec(m, config()),
            Message::EvalSet(m) => bincode::serde::encode_to_vec(m, config()),
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

    /// Decodes the body of one frame (tag ‖ payload, without the length prefix).
    pub fn decode_body(body: &[u8]) -> Result<Message, WireError> {
        let (&tag, payload) = body.split_first().ok_or(WireError::Empty)?;
        let (kind, cap) = kind_of(tag).ok_or(WireError::UnknownTag(tag))?;
        if body.len() > cap {
            return Err(WireError::TooLarge {
                len: body.len(),
                cap,
                kind,
            });
        }
        fn decode<T: serde::de::DeserializeOwned>(
            payload: &[u8],
            kind: &'static str,
        ) -> Result<T, WireError> {
            let (value, used) = bincode::serde::decode_from_slice::<T, _>(payload, config())
                .map_err(|e| WireError::Malformed {
                    kind,
                    reason: e.to_string(),
                })?;
            if used != payload.len() {
                return Err(WireError::TrailingBytes {
                    kind,
                    extra: payload.len() - used,
                });
            }
            Ok(value)
        }
        Ok(match tag {
            1 => Message::Hello(decode(payload, kind)?),
            2 => Message::Job(decode(payload, kind)?),
            3 => Message::Progress(decode(payload, kind)?),
            4 => Message::Result(decode(payload, kind)?),
            5 => Message::Heartbeat(decode(payload, kind)?),
            6 => Message::Cancel(decode(payload, kind)?),
            _ => Message::EvalSet(decode(payload, kind)?),
        })
    }
}

/// Splits a byte stream into messages; feed it what the transport read.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the transport.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed, or an error (after which
    /// the connection should be closed). The declared length is checked against the caps as soon
    /// as the prefix and tag are in, before the body is buffered.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ]) as usize;
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
        if let Some(&tag) = self.buffer.get(4) {
            let (kind, cap) = kind_of(tag).ok_or(WireError::UnknownTag(tag))?;
            if len > cap {
                return Err(WireError::TooLarge { len, cap, kind });
            }
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        let message = Message::decode_body(&self.buffer[4..4 + len]);
        self.buffer.drain(..4 + len);
        message.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
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
            Message::Job(JobRequest {
                job_id: 7,
                dataset: b"{\"conversations\":[]}\n".to_vec(),
                config: TrainingConfig::default(),
                eval_set_hash: "e".repeat(64),
            }),
            Message::Progress(Progress {
                job_id: 7,
                step: 3,
                total_steps: 24,
                loss: 1.25,
            }),
            Message::Result(JobResult {
                job_id: 7,
                outcome: JobOutcomeWire::Done {
                    eval_loss: 0.5,
                    steps: 24,
                    train_rows: 100,
                    train_tokens: 12345,
                    eval_rows: 300,
                    eval_rows_skipped: 0,
                    seconds: 12.5,
                    peak_memory_bytes: 0,
                },
            }),
            Message::Result(JobResult {
                job_id: 8,
                outcome: JobOutcomeWire::Failed {
                    kind: FailureKind::Timeout,
                    reason: "past 3600 s".into(),
                },
            }),
            Message::Heartbeat(Heartbeat { nonce: u64::MAX }),
            Message::Cancel(Cancel { job_id: 9 }),
            Message::EvalSet(EvalSetData {
                hash: "e".repeat(64),
                data: b"{}\n".to_vec(),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_byte_stream_split_anywhere() {
        let stream: Vec<u8> = all()
            .iter()
            .flat_map(|m| m.encode().expect("encodes"))
            .collect();
        for chunk in [1, 3, 7, stream.len()] {
            let mut decoder = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                decoder.extend(piece);
                while let Some(m) = decoder.next_message().expect("valid stream") {
                    got.push(m);
                }
            }
            assert_eq!(got, all(), "chunk size {chunk}");
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_buffering() {
        let mut decoder = FrameDecoder::new();
        decoder.extend(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decoder.next_message(),
            Err(WireError::TooLarge {
                kind: "any frame",
                ..
            })
        ));
        // A heartbeat claiming 1 MiB is refused by its own cap as soon as the tag is in.
        let mut decoder = FrameDecoder::new();
        decoder.extend(&(1u32 << 20).to_be_bytes());
        decoder.extend(&[5]);
        assert!(matches!(
            decoder.next_message(),
            Err(WireError::TooLarge {
                kind: "Heartbeat",
                cap: 64,
                ..
            })
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
    fn garbage_trailing_bytes_and_unknown_tags_are_errors_not_panics() {
        let mut frame = Message::Cancel(Cancel { job_id: 9 })
            .encode()
            .expect("encodes");
        frame.push(0);
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            Message::decode_body(&frame[4..]),
            Err(WireError::TrailingBytes {
                kind: "Cancel",
                extra: 1
            })
        ));
        assert!(matches!(
            Message::decode_body(&[99, 1, 2]),
            Err(WireError::UnknownTag(99))
        ));
        assert!(matches!(Message::decode_body(&[]), Err(WireError::Empty)));
        // A job whose dataset length claims more bytes than the frame holds.
        let mut body = vec![2u8];
        body.extend_from_slice(&[7]); // job id
        body.extend_from_slice(&[252, 0xff, 0xff, 0xff, 0xff]); // varint u32: 4 GiB
        assert!(matches!(
            Message::decode_body(&body),
            Err(WireError::Malformed { kind: "Job", .. })
        ));
        // Random bytes never panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            let _ = Message::decode_body(&bytes);
            let mut d = FrameDecoder::new();
            d.extend(&bytes);
            let _ = d.next_message();
        }
    }
}
