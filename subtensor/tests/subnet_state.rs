//! `get_neurons_lite` and `get_subnet_state` decoding against responses recorded on mainnet
//! (finney netuid 1, block 6 852 690, runtime spec 343) by the Python bittensor SDK's test suite:
//! `tests/fixtures/mainnet343/`, extracted from GitHub opentensor/bittensor
//! (`tests/helpers/integration_websocket_data.py`, MIT) by
//! `scripts/extract_subnet_state_vector.py`. The script decodes the same bytes with its own
//! SCALE reader and writes the figures and spot values to `expected.json`; the tests here decode
//! with the crate's functions and compare.

use parity_scale_codec::Decode;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use subtensor::client::{
    apply_subnet_stakes, decode_neurons_lite, decode_subnet_state, SubnetStake,
};
use subtensor::Neuron;
use subxt::metadata::Metadata;

const METADATA: &[u8] = include_bytes!("fixtures/mainnet343/metadata_v15.scale");
const NEURONS_LITE: &[u8] = include_bytes!("fixtures/mainnet343/get_neurons_lite_1.scale");
const SUBNET_STATE: &[u8] = include_bytes!("fixtures/mainnet343/get_subnet_state_1.scale");

/// Netuid 1 had its full 1024 uids at the recorded block.
const UIDS: usize = 1024;

fn expected() -> Json {
    serde_json::from_str(include_str!("fixtures/mainnet343/expected.json"))
        .expect("expected.json parses")
}

fn metadata() -> Metadata {
    Metadata::decode(&mut &METADATA[..]).expect("spec-343 V15 metadata decodes")
}

fn neurons() -> Vec<Neuron> {
    decode_neurons_lite(&metadata(), NEURONS_LITE).expect("get_neurons_lite decodes")
}

fn stakes() -> Vec<SubnetStake> {
    decode_subnet_state(&metadata(), SUBNET_STATE)
        .expect("get_subnet_state decodes")
        .expect("netuid 1 exists")
}

fn hex32(bytes: &[u8; 32]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn uid_list(value: &Json) -> Vec<usize> {
    value
        .as_array()
        .expect("a list of uids")
        .iter()
        .map(|u| u.as_u64().expect("a uid") as usize)
        .collect()
}

#[test]
fn fixtures_are_the_bytes_the_script_extracted() {
    let e = expected();
    assert_eq!(e["block"], 6_852_690);
    assert_eq!(e["spec_version"], 343);
    assert_eq!(e["netuid"], 1);
    for (name, bytes) in [
        ("metadata_v15.scale", METADATA),
        ("get_neurons_lite_1.scale", NEURONS_LITE),
        ("get_subnet_state_1.scale", SUBNET_STATE),
    ] {
        assert_eq!(
            e["sha256"][name].as_str().unwrap(),
            hex::encode(Sha256::digest(bytes)),
            "{name}"
        );
    }
}

#[test]
fn both_responses_decode_whole_and_agree_by_uid() {
    let neurons = neurons();
    let stakes = stakes();
    assert_eq!(neurons.len(), UIDS);
    assert_eq!(stakes.len(), UIDS);
    assert_eq!(expected()["uids"], UIDS);
    for (i, (n, s)) in neurons.iter().zip(&stakes).enumerate() {
        assert_eq!(n.uid as usize, i, "get_neurons_lite is in uid order");
        assert_eq!(n.hotkey.0, s.hotkey, "hotkey of uid {i}");
    }
    // The decoders take the whole response: one byte more is an error, not ignored.
    let mut longer = SUBNET_STATE.to_vec();
    longer.push(0);
    let err = decode_subnet_state(&metadata(), &longer).unwrap_err();
    assert!(err.contains("1 trailing byte"), "{err}");
    let mut longer = NEURONS_LITE.to_vec();
    longer.push(0);
    let err = decode_neurons_lite(&metadata(), &longer).unwrap_err();
    assert!(err.contains("1 trailing byte"), "{err}");
}

#[test]
fn apply_subnet_stakes_fills_every_uid() {
    let mut neurons = neurons();
    let lite: Vec<u64> = neurons.iter().map(|n| n.stake).collect();
    let stakes = stakes();
    apply_subnet_stakes(&mut neurons, &stakes);
    for (n, s) in neurons.iter().zip(&stakes) {
        assert_eq!(n.alpha_stake, s.alpha, "uid {}", n.uid);
        assert_eq!(n.tao_stake, Some(s.tao), "uid {}", n.uid);
        assert_eq!(n.total_stake, Some(s.total), "uid {}", n.uid);
        assert_eq!(
            n.stake, lite[n.uid as usize],
            "stake stays the NeuronInfoLite sum"
        );
    }
}

/// `NeuronInfoLite.stake` is the hotkey's own alpha (one entry per neuron here, keyed by its
/// coldkey). `get_subnet_state`'s `alpha_stake` is the alpha after parent/child delegation,
/// `tao_stake` the delegated root (TAO) stake, and `total_stake = alpha + tao × TaoWeight`.
#[test]
fn stakes_differ_from_neuron_info_lite_where_the_python_decoder_says() {
    let e = expected();
    let neurons = neurons();
    let stakes = stakes();
    let differ = |f: fn(&SubnetStake) -> u64| -> Vec<usize> {
        (0..UIDS)
            .filter(|&u| f(&stakes[u]) != neurons[u].stake)
            .collect()
    };
    let alpha_differs = differ(|s| s.alpha);
    let total_differs = differ(|s| s.total);
    let tao_nonzero: Vec<usize> = (0..UIDS).filter(|&u| stakes[u].tao != 0).collect();

    // The "21 of 1024" is total_stake; alpha_stake differs for 11.
    assert_eq!(alpha_differs.len(), 11);
    assert_eq!(total_differs.len(), 21);
    assert_eq!(
        alpha_differs,
        uid_list(&e["alpha_stake_differs_from_lite_stake"])
    );
    assert_eq!(
        total_differs,
        uid_list(&e["total_stake_differs_from_lite_stake"])
    );
    // total_stake differs exactly where the hotkey has TAO stake.
    assert_eq!(total_differs, tao_nonzero);
    assert_eq!(e["tao_stake_nonzero"], tao_nonzero.len());
    // Here every uid whose alpha differs also has TAO stake; one (uid 633) has less alpha
    // than its own, all but 12 of it handed on to child hotkeys.
    assert_eq!(e["alpha_stake_below_lite_stake"], serde_json::json!([633]));
    assert!(alpha_differs.iter().all(|u| tao_nonzero.contains(u)));

    let sum = |f: fn(&SubnetStake) -> u64| stakes.iter().map(|s| f(s) as u128).sum::<u128>();
    let lite_sum: u128 = neurons.iter().map(|n| n.stake as u128).sum();
    assert_eq!(e["sum_lite_stake"].as_u64().unwrap() as u128, lite_sum);
    assert_eq!(
        e["sum_alpha_stake"].as_u64().unwrap() as u128,
        sum(|s| s.alpha)
    );
    assert_eq!(e["sum_tao_stake"].as_u64().unwrap() as u128, sum(|s| s.tao));
    assert_eq!(
        e["sum_total_stake"].as_u64().unwrap() as u128,
        sum(|s| s.total)
    );
}

/// `total_stake = alpha_stake + ⌊tao_stake × TaoWeight⌋` at every uid, with `TaoWeight` the
/// chain's 0.18 as a 32-bit binary fraction (773094113 / 2^32: the runtime divides the stored
/// u64 by `u64::MAX` in `I96F32`).
#[test]
fn total_stake_is_alpha_plus_weighted_tao() {
    const TAO_WEIGHT_NUMERATOR: u128 = 773_094_113;
    for (uid, s) in stakes().iter().enumerate() {
        let weighted = (s.tao as u128 * TAO_WEIGHT_NUMERATOR) >> 32;
        assert_eq!(s.total as u128, s.alpha as u128 + weighted, "uid {uid}");
    }
}

#[test]
fn spot_values_match_the_independent_python_decoding() {
    let e = expected();
    let mut neurons = neurons();
    let stakes = stakes();
    apply_subnet_stakes(&mut neurons, &stakes);
    let top = (0..UIDS).max_by_key(|&u| stakes[u].total).unwrap();
    assert_eq!(top, 630);
    assert_eq!(e["largest_total_stake_uid"], top);
    let spots = e["spots"].as_array().unwrap();
    assert!(spots.len() >= 3);
    for spot in spots {
        let uid = spot["uid"].as_u64().unwrap() as usize;
        let n = &neurons[uid];
        let field = |name: &str| spot[name].as_u64().unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            spot["hotkey"].as_str().unwrap(),
            hex32(&n.hotkey.0),
            "uid {uid}"
        );
        assert_eq!(
            spot["coldkey"].as_str().unwrap(),
            hex32(&n.coldkey.0),
            "uid {uid}"
        );
        assert_eq!(n.stake, field("lite_stake"), "uid {uid}");
        assert_eq!(n.alpha_stake, field("alpha_stake"), "uid {uid}");
        assert_eq!(n.tao_stake, Some(field("tao_stake")), "uid {uid}");
        assert_eq!(n.total_stake, Some(field("total_stake")), "uid {uid}");
    }
    // The largest, as recorded (rao): own alpha 312 460.09 α, inherited 442 560.12 α,
    // root stake 1 125 629.64 τ, total 645 173.46.
    let n = &neurons[630];
    assert_eq!(n.stake, 312_460_092_414_791);
    assert_eq!(n.alpha_stake, 442_560_124_507_728);
    assert_eq!(n.tao_stake, Some(1_125_629_642_345_670));
    assert_eq!(n.total_stake, Some(645_173_460_056_565));
}
