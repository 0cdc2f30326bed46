//! Property tests of every decoder that reads bytes from outside: wire frames, commitment
//! strings and datasets. Nothing panics on any input; what is valid round-trips.
//!
//! 256 cases per property here, so the suite stays fast; `scripts/fuzz_decoders.sh` runs the
//! same properties for as long as asked with `PROPTEST_CASES` set.

use proptest::prelude::*;
use protocol::commitment::Commitment;
use protocol::config::TrainingConfig;
use protocol::dataset::{
    canonical_row, content_hash, parse_dataset, DatasetLimits, Message as Turn, Role, Row,
};
use protocol::wire::{
    Cancel, DeviceInfo, EvalSetData, FailureKind, FrameDecoder, Heartbeat, Hello, JobOutcomeWire,
    JobRequest, JobResult, Message, Progress, Sender, MAX_REASON_BYTES,
};

/// 256 cases, or `PROPTEST_CASES` when set.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect())
}

fn limits() -> impl Strategy<Value = DatasetLimits> {
    (any::<u64>(), any::<usize>(), any::<usize>(), any::<usize>()).prop_map(
        |(max_file_bytes, max_line_bytes, max_rows, max_json_depth)| DatasetLimits {
            max_file_bytes,
            max_line_bytes,
            max_rows,
            max_json_depth,
        },
    )
}

fn training() -> impl Strategy<Value = TrainingConfig> {
    (
        any::<[usize; 4]>(),
        any::<[f64; 5]>(),
        any::<[usize; 3]>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(u, f, v, seed, shuffle)| TrainingConfig {
            micro_batch: u[0],
            grad_accum: u[1],
            epochs: u[2],
            max_seq_len: u[3],
            lr: f[0],
            warmup_steps: v[0],
            weight_decay: f[1],
            max_grad_norm: f[2],
            lora_rank: v[1],
            lora_alpha: f[3],
            lora_dropout: f[4],
            seed,
            shuffle,
            max_rows: v[2],
        })
}

fn coordinator_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..256),
            text(70),
            limits(),
            training(),
            text(70)
        )
            .prop_map(
                |(job_id, dataset, dataset_hash, limits, config, eval_set_hash)| {
                    Message::Job(JobRequest {
                        job_id,
                        dataset,
                        dataset_hash,
                        limits,
                        config,
                        eval_set_hash,
                    })
                }
            ),
        any::<u64>().prop_map(|nonce| Message::Heartbeat(Heartbeat { nonce })),
        any::<u64>().prop_map(|job_id| Message::Cancel(Cancel { job_id })),
        (text(70), proptest::collection::vec(any::<u8>(), 0..256))
            .prop_map(|(hash, data)| Message::EvalSet(EvalSetData { hash, data })),
    ]
}

fn failure_kind() -> impl Strategy<Value = FailureKind> {
    prop_oneof![
        Just(FailureKind::MinerData),
        Just(FailureKind::Worker),
        Just(FailureKind::Cancelled),
        Just(FailureKind::Unavailable),
    ]
}

fn worker_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u16>(),
            text(40),
            proptest::collection::vec((text(20), any::<u64>()), 0..4),
            proptest::option::of(text(64))
        )
            .prop_map(|(protocol_version, worker_id, devices, model_id)| {
                Message::Hello(Hello {
                    protocol_version,
                    worker_id,
                    devices: devices
                        .into_iter()
                        .map(|(name, memory_bytes)| DeviceInfo { name, memory_bytes })
                        .collect(),
                    model_id,
                })
            }),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<f64>()).prop_map(
            |(job_id, step, total_steps, loss)| Message::Progress(Progress {
                job_id,
                step,
                total_steps,
                loss
            })
        ),
        (
            any::<u64>(),
            any::<(f64, u32, u32, u64, u32, u32, f64, u64)>()
        )
            .prop_map(|(job_id, d)| {
                Message::Result(JobResult {
                    job_id,
                    outcome: JobOutcomeWire::Done {
                        eval_loss: d.0,
                        steps: d.1,
                        train_rows: d.2,
                        train_tokens: d.3,
                        eval_rows: d.4,
                        eval_rows_skipped: d.5,
                        seconds: d.6,
                        peak_memory_bytes: d.7,
                    },
                })
            }),
        (any::<u64>(), failure_kind(), text(400)).prop_map(|(job_id, kind, reason)| {
            Message::Result(JobResult {
                job_id,
                outcome: JobOutcomeWire::failed(kind, &reason),
            })
        }),
        any::<u64>().prop_map(|nonce| Message::Heartbeat(Heartbeat { nonce })),
    ]
}

/// Decodes `bytes` from `from` until it needs more input or fails; never panics.
fn drain(bytes: &[u8], from: Sender) -> (Vec<Message>, bool) {
    let mut decoder = FrameDecoder::new(from);
    decoder.extend(bytes);
    let mut out = Vec::new();
    loop {
        match decoder.next_message() {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

fn encoded(messages: &[Message]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|m| m.encode().expect("a generated message fits its cap"))
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        for from in [Sender::Coordinator, Sender::Worker] {
            let _ = drain(&bytes, from);
            let _ = Message::decode_body(&bytes, from);
        }
    }

    #[test]
    fn a_valid_header_with_any_payload_decodes_to_its_own_encoding_or_fails(
        tag in 1u8..=7,
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut body = vec![tag];
        body.extend_from_slice(&payload);
        for from in [Sender::Coordinator, Sender::Worker] {
            if let Ok(message) = Message::decode_body(&body, from) {
                let frame = message.encode().expect("what decodes encodes");
                prop_assert_eq!(&frame[4..], &body[..]);
            }
        }
    }

    #[test]
    fn messages_round_trip_through_a_stream_cut_anywhere(
        to_worker in proptest::collection::vec(coordinator_message(), 1..6),
        to_coordinator in proptest::collection::vec(worker_message(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        for (from, messages) in [(Sender::Coordinator, to_worker), (Sender::Worker, to_coordinator)] {
            let stream = encoded(&messages);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut decoder = FrameDecoder::new(from);
            let mut got = Vec::new();
            let mut at = 0;
            for point in points.into_iter().chain([stream.len()]) {
                decoder.extend(&stream[at..point]);
                at = point;
                while let Some(m) = decoder.next_message().expect("a valid stream") {
                    got.push(m);
                }
            }
            // Compared as bytes: a NaN loss is not equal to itself.
            prop_assert_eq!(encoded(&got), stream);
            prop_assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn a_truncated_stream_waits_for_more_and_a_misdirected_one_fails(
        messages in proptest::collection::vec(worker_message(), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let stream = encoded(&messages);
        let cut = cut.index(stream.len());
        let (got, failed) = drain(&stream[..cut], Sender::Worker);
        prop_assert!(!failed);
        prop_assert!(got.len() < messages.len());
        // The coordinator never receives these types, heartbeats aside.
        let (got, failed) = drain(&stream, Sender::Coordinator);
        let heartbeats = messages.iter().take_while(|m| matches!(m, Message::Heartbeat(_))).count();
        prop_assert_eq!(got.len(), heartbeats);
        prop_assert_eq!(failed, heartbeats < messages.len());
    }

    #[test]
    fn failure_reasons_are_capped(kind in failure_kind(), reason in text(3000)) {
        let JobOutcomeWire::Failed { reason, .. } = JobOutcomeWire::failed(kind, &reason) else {
            unreachable!()
        };
        prop_assert!(reason.len() <= MAX_REASON_BYTES);
    }

    #[test]
    fn any_commitment_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(c) = Commitment::from_bytes(&bytes) {
            prop_assert_eq!(Commitment::from_bytes(c.to_string().as_bytes()), Ok(c));
        }
    }

    #[test]
    fn commitment_like_strings_parse_or_fail_without_panicking(s in "[A-Za-z0-9._/:{} -]{0,140}") {
        if let Ok(c) = s.parse::<Commitment>() {
            prop_assert_eq!(c.to_string().to_ascii_lowercase(), s.to_ascii_lowercase());
        }
    }

    #[test]
    fn valid_commitments_round_trip(
        namespace in "[A-Za-z0-9]([A-Za-z0-9_]{0,20}[A-Za-z0-9])?",
        name in "[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?",
        competition in "[A-Za-z0-9_-]{1,12}",
        revision in "[0-9a-fA-F]{40}",
    ) {
        prop_assume!(!name.contains(".."));
        let repo = format!("{namespace}/{name}");
        let c = Commitment::new(&repo, &competition, &revision).expect("valid parts");
        prop_assert_eq!(Commitment::from_bytes(c.to_string().as_bytes()), Ok(c.clone()));
        prop_assert_eq!(c.revision, revision.to_ascii_lowercase());
    }

    #[test]
    fn any_dataset_bytes_parse_or_fail_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        max_line_bytes in 0usize..512,
        max_rows in 0usize..8,
        max_json_depth in 0usize..8,
    ) {
        let limits = DatasetLimits { max_file_bytes: 1500, max_line_bytes, max_rows, max_json_depth };
        if let Ok(d) = parse_dataset(&bytes, &limits) {
            prop_assert!(!d.rows.is_empty() && d.rows.len() <= max_rows);
            prop_assert_eq!(parse_dataset(d.used_bytes(&bytes), &limits), Ok(d));
        }
    }

    #[test]
    fn json_like_lines_parse_or_fail_without_panicking(s in r#"[{}\[\]":,\\ a-z0-9\n\r\t]{0,400}"#) {
        let _ = parse_dataset(s.as_bytes(), &DatasetLimits::default());
    }

    #[test]
    fn valid_rows_parse_back_to_themselves_and_their_hash(
        rows in proptest::collection::vec(
            (proptest::option::of(text(30)), proptest::collection::vec(text(40), 1..6)),
            1..12,
        ),
        max_rows in 1usize..12,
        rotate in any::<prop::sample::Index>(),
    ) {
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|(system, contents)| Row {
                system,
                conversations: contents
                    .into_iter()
                    .enumerate()
                    .map(|(i, content)| Turn {
                        role: if i % 2 == 0 { Role::User } else { Role::Assistant },
                        content,
                    })
                    .collect(),
            })
            .collect();
        let file: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).expect("json") + "\n")
            .collect();
        let limits = DatasetLimits { max_rows, ..DatasetLimits::default() };
        let parsed = parse_dataset(file.as_bytes(), &limits).expect("valid rows");
        let used = rows.len().min(max_rows);
        prop_assert_eq!(&parsed.rows[..], &rows[..used]);
        let canonical: Vec<String> = rows[..used].iter().map(canonical_row).collect();
        prop_assert_eq!(&parsed.content_hash, &content_hash(&canonical));
        // Order does not hide a copy.
        let mut turned = canonical.clone();
        turned.rotate_left(rotate.index(used));
        prop_assert_eq!(content_hash(&turned), content_hash(&canonical));
        // The bytes a remote worker gets parse to the same dataset with the same limits.
        prop_assert_eq!(parse_dataset(parsed.used_bytes(file.as_bytes()), &limits), Ok(parsed));
    }
}
