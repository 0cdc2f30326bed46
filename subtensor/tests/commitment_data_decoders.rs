//! Property tests of the `Commitments.CommitmentOf` decoder (the pallet's `Data` codec): it
//! never panics on bytes from a chain node, and what the chain stores for a raw commitment
//! decodes back to it.
//!
//! 256 cases per property here; `scripts/fuzz_decoders.sh` runs them longer.

use parity_scale_codec::{Compact, Encode};
use proptest::prelude::*;
use subtensor::commitment_data::{
    decode_commitment_info, decode_registration, encode_commitment_info, encode_registration,
    Field, Registration, MAX_RAW_FIELD,
};

/// 256 cases, or `PROPTEST_CASES` when set.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode_registration(&bytes);
        if let Ok((_, used)) = decode_commitment_info(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn any_fields_after_a_valid_header_decode_or_fail_without_panicking(
        deposit in any::<u64>(),
        block in any::<u32>(),
        count in 0u64..5,
        fields in proptest::collection::vec(any::<u8>(), 0..700),
    ) {
        let mut bytes = deposit.encode();
        bytes.extend(block.encode());
        bytes.extend(Compact(count).encode());
        bytes.extend(&fields);
        if let Ok(r) = decode_registration(&bytes) {
            prop_assert_eq!((r.deposit, r.block, r.fields.len() as u64), (deposit, block, count));
        }
    }

    #[test]
    fn a_raw_commitment_round_trips(
        deposit in any::<u64>(),
        block in any::<u32>(),
        data in proptest::collection::vec(any::<u8>(), 0..=MAX_RAW_FIELD),
    ) {
        let bytes = encode_registration(deposit, block, &data).expect("fits one field");
        let r = decode_registration(&bytes).expect("decodes");
        prop_assert_eq!(&r, &Registration { deposit, block, fields: vec![Field::Raw(data.clone())] });
        prop_assert_eq!(r.raw_bytes(), Ok(data.clone()));
        let info = encode_commitment_info(&data).expect("fits");
        prop_assert_eq!(decode_commitment_info(&info), Ok((vec![Field::Raw(data)], info.len())));
    }

    #[test]
    fn too_long_raw_data_is_refused(data in proptest::collection::vec(any::<u8>(), MAX_RAW_FIELD + 1..400)) {
        prop_assert!(encode_commitment_info(&data).is_err());
    }
}
