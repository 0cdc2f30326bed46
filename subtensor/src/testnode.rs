//! A small in-memory subtensor for tests: it answers the legacy JSON-RPC methods that subxt's
//! [`LegacyBackend`](subxt::backend::LegacyBackend) uses, through subxt's own mock RPC client
//! (`subxt_rpcs::client::MockRpcClient`), so the online client runs its real code paths
//! (metadata download, storage keys, runtime-API calls, signing, submission, event decoding)
//! without a network.
//!
//! Its runtime is the recorded localnet of the Python bittensor SDK (metadata V15, spec 461,
//! `tests/fixtures/metadata_v15.scale`). The node keeps the few pallet items a validator and a
//! miner touch, with subtensor's rules for them (`pallets/subtensor/src/subnets/weights.rs`,
//! `pallets/commitments/src/lib.rs`): registration, rate limits, the version key, hash
//! commit-reveal with `SubnetEpochIndex`, the commitment space limit. Each accepted extrinsic
//! makes one block; signatures and nonces are checked as a real node does, so a wrong signing
//! payload fails here too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parity_scale_codec::{Compact, Decode, Encode};
use serde_json::{json, Value as Json};
use sp_crypto_hashing::{blake2_128, blake2_256, twox_128, twox_64};
use subxt::metadata::Metadata;
use subxt::rpcs::client::{MockRpcClient, RpcClient};
use subxt_rpcs::{Error as RpcError, UserError};

use crate::commitment_data::{decode_commitment_info, encode_registration, Field};
use crate::weights::commit_hash;

/// The runtime's raw V15 metadata (Python bittensor 11.3.0 golden fixture, spec 461).
pub const METADATA_V15: &[u8] = include_bytes!("../tests/fixtures/metadata_v15.scale");
/// The recorded localnet's genesis hash.
pub const GENESIS_HASH: &str = "1dc00e76a13fc48b9c932e076622c5920295afaad4fd805c284a5cf3222ce452";
/// The recorded runtime's spec version.
pub const SPEC_VERSION: u32 = 461;
/// The runtime's `MaxSpace` for commitments per epoch, in bytes.
pub const MAX_SPACE: u64 = 3100;

/// Hyperparameters of a test subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetConfig {
    /// Blocks per epoch.
    pub tempo: u16,
    /// `WeightsSetRateLimit`.
    pub weights_rate_limit: u64,
    /// `WeightsVersionKey`.
    pub weights_version_key: u64,
    /// `CommitRevealWeightsEnabled`.
    pub commit_reveal: bool,
    /// `RevealPeriodEpochs`.
    pub reveal_period: u64,
}

impl Default for SubnetConfig {
    fn default() -> Self {
        SubnetConfig {
            tempo: 10,
            weights_rate_limit: 5,
            weights_version_key: 0,
            commit_reveal: false,
            reveal_period: 1,
        }
    }
}

#[derive(Debug, Clone)]
struct NeuronState {
    hotkey: [u8; 32],
    coldkey: [u8; 32],
    stake: u64,
    /// TAO staked on the hotkey on the root subnet (rao), for `get_subnet_state`.
    tao_stake: u64,
    validator_permit: bool,
    last_update: u64,
}

/// The chain's default `TaoWeight` (0.18) as a fraction: `total_stake = alpha + tao * 18/100`.
const TAO_WEIGHT_PERCENT: u64 = 18;

/// One uid of `SubnetState` as the test node fills it in (the rest are zero).
#[derive(Debug, Clone)]
pub struct StateEntry {
    /// Hotkey.
    pub hotkey: [u8; 32],
    /// Coldkey.
    pub coldkey: [u8; 32],
    /// Validator permit.
    pub validator_permit: bool,
    /// Block of the last weight update.
    pub last_update: u64,
    /// `alpha_stake`.
    pub alpha_stake: u64,
    /// `tao_stake`.
    pub tao_stake: u64,
    /// `total_stake`.
    pub total_stake: u64,
}

/// The SCALE encoding of `Option<SubnetState<AccountId32>>` (spec 461 field order, subtensor's
/// `rpc_info/show_subnet.rs`; checked by decoding it with the recorded metadata's type in this
/// crate's tests).
pub fn encode_subnet_state(netuid: u16, entries: &[StateEntry]) -> Vec<u8> {
    let n = Compact(entries.len() as u32);
    let mut out = vec![1u8];
    Compact(netuid).encode_to(&mut out);
    n.encode_to(&mut out);
    entries.iter().for_each(|e| out.extend(e.hotkey));
    n.encode_to(&mut out);
    entries.iter().for_each(|e| out.extend(e.coldkey));
    n.encode_to(&mut out);
    entries.iter().for_each(|_| true.encode_to(&mut out)); // active
    n.encode_to(&mut out);
    entries
        .iter()
        .for_each(|e| e.validator_permit.encode_to(&mut out));
    let compacts = |out: &mut Vec<u8>, f: &dyn Fn(&StateEntry) -> u64| {
        n.encode_to(out);
        entries.iter().for_each(|e| Compact(f(e)).encode_to(out));
    };
    compacts(&mut out, &|_| 65535); // pruning_score
    compacts(&mut out, &|e| e.last_update);
    for _ in 0..7 {
        // emission, dividends, incentives, consensus, trust, rank, block_at_registration
        compacts(&mut out, &|_| 0);
    }
    compacts(&mut out, &|e| e.alpha_stake);
    compacts(&mut out, &|e| e.tao_stake);
    compacts(&mut out, &|e| e.total_stake);
    n.encode_to(&mut out); // emission_history: one empty history per uid
    entries
        .iter()
        .for_each(|_| Compact(0u32).encode_to(&mut out));
    out
}

/// One `WeightCommits` entry: (hash, commit epoch, commit block, unused).
type WeightCommitEntry = ([u8; 32], u64, u64, u64);

#[derive(Debug, Clone)]
struct Subnet {
    config: SubnetConfig,
    neurons: Vec<NeuronState>,
    weights: BTreeMap<u16, Vec<(u16, u16)>>,
    weight_commits: BTreeMap<[u8; 32], Vec<WeightCommitEntry>>,
    commitments: BTreeMap<[u8; 32], (u32, Vec<u8>)>,
    used_space: BTreeMap<[u8; 32], (u64, u64)>,
}

impl Subnet {
    fn uid_of(&self, hotkey: &[u8; 32]) -> Option<u16> {
        self.neurons
            .iter()
            .position(|n| &n.hotkey == hotkey)
            .map(|i| i as u16)
    }

    /// `SubnetEpochIndex`: how many epochs have fired by `block`.
    fn epoch_index(&self, block: u64) -> u64 {
        block / (self.config.tempo as u64 + 1)
    }
}

/// Chain state at one block.
#[derive(Debug, Clone, Default)]
struct State {
    subnets: BTreeMap<u16, Subnet>,
    nonces: BTreeMap<[u8; 32], u32>,
}

#[derive(Debug, Clone)]
struct Block {
    hash: [u8; 32],
    header: Json,
    extrinsics: Vec<Vec<u8>>,
    events: Vec<u8>,
    state: State,
}

struct Node {
    metadata: Metadata,
    genesis: [u8; 32],
    blocks: Vec<Block>,
    state: State,
    hang: bool,
    calls: Vec<String>,
}

/// Handle on a running test node; clones share it.
#[derive(Clone)]
pub struct TestNode {
    inner: Arc<Mutex<Node>>,
}

impl Default for TestNode {
    fn default() -> Self {
        TestNode::new()
    }
}

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn user_error(code: i32, message: &str, data: Option<&str>) -> RpcError {
    RpcError::User(UserError {
        code,
        message: message.to_string(),
        data: data.map(|d| {
            serde_json::value::RawValue::from_string(Json::String(d.into()).to_string())
                .expect("a JSON string")
        }),
    })
}

fn invalid_params(what: &str) -> RpcError {
    user_error(-32602, &format!("invalid params: {what}"), None)
}

fn parse_hex(value: &Json) -> Option<Vec<u8>> {
    let text = value.as_str()?;
    hex::decode(text.strip_prefix("0x").unwrap_or(text)).ok()
}

fn storage_prefix(pallet: &str, item: &str) -> Vec<u8> {
    let mut key = twox_128(pallet.as_bytes()).to_vec();
    key.extend(twox_128(item.as_bytes()));
    key
}

fn twox64_concat(bytes: &[u8]) -> Vec<u8> {
    let mut out = twox_64(bytes).to_vec();
    out.extend_from_slice(bytes);
    out
}

fn blake2_128_concat(bytes: &[u8]) -> Vec<u8> {
    let mut out = blake2_128(bytes).to_vec();
    out.extend_from_slice(bytes);
    out
}

/// The fields of one `NeuronInfoLite` the test node fills in (the rest are zero).
#[derive(Debug, Clone)]
pub struct NeuronLite<'a> {
    /// Hotkey.
    pub hotkey: [u8; 32],
    /// Coldkey.
    pub coldkey: [u8; 32],
    /// Uid.
    pub uid: u16,
    /// Subnet.
    pub netuid: u16,
    /// Stakers and their alpha.
    pub stake: &'a [([u8; 32], u64)],
    /// Block of the last weight update.
    pub last_update: u64,
    /// Validator permit.
    pub validator_permit: bool,
    /// Pruning score.
    pub pruning_score: u16,
}

/// The SCALE encoding of one `NeuronInfoLite<AccountId32>` (spec 461 field order; checked
/// against the recorded `get_neurons_lite` answer in this crate's tests).
pub fn encode_neuron_lite(n: &NeuronLite<'_>) -> Vec<u8> {
    let NeuronLite {
        hotkey,
        coldkey,
        uid,
        netuid,
        stake,
        last_update,
        validator_permit,
        pruning_score,
    } = n;
    let mut out = Vec::new();
    out.extend(hotkey);
    out.extend(coldkey);
    Compact(*uid).encode_to(&mut out);
    Compact(*netuid).encode_to(&mut out);
    true.encode_to(&mut out); // active
    out.extend([0u8; 8 + 4 + 16 + 2 + 4]); // axon_info: block, version, ip, port, ip_type, protocol, placeholders
    out.extend([0u8; 8 + 4 + 16 + 2 + 1]); // prometheus_info: block, version, ip, port, ip_type
    Compact(stake.len() as u32).encode_to(&mut out);
    for (account, amount) in stake.iter() {
        out.extend(account);
        Compact(*amount).encode_to(&mut out);
    }
    for _ in 0..7 {
        // rank, emission, incentive, consensus, trust, validator_trust, dividends
        Compact(0u64).encode_to(&mut out);
    }
    Compact(*last_update).encode_to(&mut out);
    validator_permit.encode_to(&mut out);
    Compact(*pruning_score).encode_to(&mut out);
    out
}

/// The SCALE encoding of `Option<SubnetHyperparams>` (spec 461 field order; checked against the
/// recorded `get_subnet_hyperparams` answer in this crate's tests). Fields the node does not
/// model carry the recorded localnet's values.
pub fn encode_hyperparams(config: &SubnetConfig) -> Vec<u8> {
    let c = |v: u64| Compact(v).encode();
    let mut out = vec![1u8];
    for v in [10u64, 32767, 4096, 0, 65535, config.tempo as u64] {
        out.extend(c(v)); // rho, kappa, immunity_period, min_allowed_weights, max_weights_limit, tempo
    }
    for v in [
        10_000_000u64,
        4_611_686_018_427_387_903,
        config.weights_version_key,
        config.weights_rate_limit,
        100,
        1388,
    ] {
        out.extend(c(v)); // min/max_difficulty, weights_version, weights_rate_limit, adjustment_interval, activity_cutoff
    }
    out.push(1); // registration_allowed
    for v in [
        2u64,
        500_000,
        100_000_000_000,
        900_000,
        1,
        50,
        64,
        0,
        10_000_000,
    ] {
        out.extend(c(v)); // target_regs_per_interval .. difficulty
    }
    out.extend(c(config.reveal_period));
    out.push(config.commit_reveal as u8);
    out.extend(c(58982));
    out.extend(c(45875));
    out.push(0); // liquid_alpha_enabled
    out
}

/// A decoded signed v4 extrinsic: signer, nonce and call bytes.
struct SignedExtrinsic {
    signer: [u8; 32],
    nonce: u32,
    call: Vec<u8>,
}

impl Node {
    fn head(&self) -> &Block {
        self.blocks.last().expect("genesis exists")
    }

    fn block(&self, hash: Option<&Json>) -> Result<&Block, RpcError> {
        match hash.filter(|h| !h.is_null()) {
            None => Ok(self.head()),
            Some(h) => {
                let wanted = parse_hex(h).ok_or_else(|| invalid_params("block hash"))?;
                self.blocks
                    .iter()
                    .find(|b| b.hash[..] == wanted[..])
                    .ok_or_else(|| user_error(4003, "Client error: UnknownBlock", None))
            }
        }
    }

    /// Appends a block holding `extrinsics` with `events`, sealing the current state.
    fn seal(&mut self, extrinsics: Vec<Vec<u8>>, events: Vec<u8>) -> [u8; 32] {
        let parent = self.head().hash;
        let number = self.blocks.len() as u64;
        let mut extrinsics_root = [0u8; 32];
        extrinsics_root.copy_from_slice(&blake2_256(&extrinsics.encode()));
        let state_root = blake2_256(&number.encode());
        let mut encoded = parent.to_vec();
        Compact(number as u32).encode_to(&mut encoded);
        encoded.extend(state_root);
        encoded.extend(extrinsics_root);
        encoded.push(0); // empty digest
        let hash = blake2_256(&encoded);
        let header = json!({
            "parentHash": hex0x(&parent),
            "number": format!("0x{number:x}"),
            "stateRoot": hex0x(&state_root),
            "extrinsicsRoot": hex0x(&extrinsics_root),
            "digest": {"logs": []},
        });
        self.blocks.push(Block {
            hash,
            header,
            extrinsics,
            events,
            state: self.state.clone(),
        });
        hash
    }

    fn storage_map(&self, block: &Block) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut map = BTreeMap::new();
        map.insert(storage_prefix("System", "Events"), block.events.clone());
        map.insert(
            storage_prefix("System", "Number"),
            (self.number_of(block) as u32).encode(),
        );
        for (netuid, subnet) in &block.state.subnets {
            let n = netuid.encode();
            let mut key = storage_prefix("SubtensorModule", "SubnetEpochIndex");
            key.extend(&n);
            map.insert(key, subnet.epoch_index(self.number_of(block)).encode());
            let c = &subnet.config;
            let plain: [(&str, Vec<u8>); 11] = [
                ("SubnetworkN", (subnet.neurons.len() as u16).encode()),
                ("Tempo", c.tempo.encode()),
                ("WeightsSetRateLimit", c.weights_rate_limit.encode()),
                ("WeightsVersionKey", c.weights_version_key.encode()),
                ("CommitRevealWeightsEnabled", c.commit_reveal.encode()),
                ("MaxWeightsLimit", u16::MAX.encode()),
                ("MinAllowedWeights", 0u16.encode()),
                (
                    "ValidatorPermit",
                    subnet
                        .neurons
                        .iter()
                        .map(|n| n.validator_permit)
                        .collect::<Vec<_>>()
                        .encode(),
                ),
                (
                    "LastUpdate",
                    subnet
                        .neurons
                        .iter()
                        .map(|n| n.last_update)
                        .collect::<Vec<_>>()
                        .encode(),
                ),
                ("Active", vec![true; subnet.neurons.len()].encode()),
                ("NetworksAdded", true.encode()),
            ];
            for (item, value) in plain {
                let mut key = storage_prefix("SubtensorModule", item);
                key.extend(&n);
                map.insert(key, value);
            }
            let mut key = storage_prefix("SubtensorModule", "RevealPeriodEpochs");
            key.extend(twox64_concat(&n));
            map.insert(key, c.reveal_period.encode());
            for (uid, neuron) in subnet.neurons.iter().enumerate() {
                let mut key = storage_prefix("SubtensorModule", "Owner");
                key.extend(blake2_128_concat(&neuron.hotkey));
                map.insert(key, neuron.coldkey.to_vec());
                let mut key = storage_prefix("SubtensorModule", "TotalHotkeyAlpha");
                key.extend(blake2_128_concat(&neuron.hotkey));
                key.extend(&n);
                map.insert(key, neuron.stake.encode());
                let mut key = storage_prefix("SubtensorModule", "Uids");
                key.extend(&n);
                key.extend(blake2_128_concat(&neuron.hotkey));
                map.insert(key, (uid as u16).encode());
                let mut key = storage_prefix("SubtensorModule", "Keys");
                key.extend(&n);
                key.extend((uid as u16).encode());
                map.insert(key, neuron.hotkey.to_vec());
            }
            for (uid, weights) in &subnet.weights {
                let mut key = storage_prefix("SubtensorModule", "Weights");
                key.extend(&n);
                key.extend(uid.encode());
                map.insert(key, weights.encode());
            }
            for (hotkey, commits) in &subnet.weight_commits {
                if commits.is_empty() {
                    continue;
                }
                let mut key = storage_prefix("SubtensorModule", "WeightCommits");
                key.extend(twox64_concat(&n));
                key.extend(twox64_concat(hotkey));
                map.insert(key, commits.encode());
            }
            for (hotkey, (at, data)) in &subnet.commitments {
                let mut key = storage_prefix("Commitments", "CommitmentOf");
                key.extend(&n);
                key.extend(twox64_concat(hotkey));
                map.insert(
                    key,
                    encode_registration(0, *at, data).expect("stored commitments fit"),
                );
            }
        }
        map
    }

    fn number_of(&self, block: &Block) -> u64 {
        self.blocks
            .iter()
            .position(|b| b.hash == block.hash)
            .unwrap_or(0) as u64
    }

    fn handle(&mut self, method: &str, params: Vec<Json>) -> Result<Json, RpcError> {
        match (method, params.first().and_then(|p| p.as_str())) {
            ("state_call", Some(name)) => self.calls.push(format!("state_call:{name}")),
            _ => self.calls.push(method.to_string()),
        }
        let param = |i: usize| params.get(i);
        match method {
            "chain_getBlockHash" => {
                let number = match param(0) {
                    None | Some(Json::Null) => self.blocks.len() as u64 - 1,
                    Some(Json::Number(n)) => n.as_u64().ok_or_else(|| invalid_params("number"))?,
                    Some(Json::String(s)) => u64::from_str_radix(s.trim_start_matches("0x"), 16)
                        .map_err(|_| invalid_params("number"))?,
                    _ => return Err(invalid_params("block number")),
                };
                Ok(self
                    .blocks
                    .get(number as usize)
                    .map(|b| json!(hex0x(&b.hash)))
                    .unwrap_or(Json::Null))
            }
            "chain_getFinalizedHead" => Ok(json!(hex0x(&self.head().hash))),
            "chain_getHeader" => Ok(self.block(param(0))?.header.clone()),
            "chain_getBlock" => {
                let block = self.block(param(0))?;
                let extrinsics: Vec<String> = block.extrinsics.iter().map(|e| hex0x(e)).collect();
                Ok(json!({
                    "block": {"header": block.header, "extrinsics": extrinsics},
                    "justifications": null,
                }))
            }
            "state_getRuntimeVersion" => Ok(json!({
                "specName": "node-subtensor",
                "implName": "node-subtensor",
                "authoringVersion": 1,
                "specVersion": SPEC_VERSION,
                "implVersion": 1,
                "apis": [],
                "transactionVersion": 1,
                "systemVersion": 1,
                "stateVersion": 1,
            })),
            "system_chain" => Ok(json!("Murmuration test subtensor")),
            "rpc_methods" => Ok(json!({"version": 1, "methods": []})),
            "system_accountNextIndex" => {
                let account: subxt::utils::AccountId32 = param(0)
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .parse()
                    .map_err(|_| invalid_params("account"))?;
                Ok(json!(self
                    .state
                    .nonces
                    .get(&account.0)
                    .copied()
                    .unwrap_or(0)))
            }
            "state_call" => {
                let name = param(0)
                    .and_then(|p| p.as_str())
                    .ok_or_else(|| invalid_params("method"))?
                    .to_string();
                let args = param(1).and_then(parse_hex).unwrap_or_default();
                let block = self.block(param(2))?.clone();
                let out = self.runtime_call(&name, &args, &block)?;
                Ok(json!(hex0x(&out)))
            }
            "state_getStorage" => {
                let key = param(0)
                    .and_then(parse_hex)
                    .ok_or_else(|| invalid_params("key"))?;
                let block = self.block(param(1))?;
                Ok(self
                    .storage_map(block)
                    .get(&key)
                    .map(|v| json!(hex0x(v)))
                    .unwrap_or(Json::Null))
            }
            "state_getKeysPaged" => {
                let prefix = param(0).and_then(parse_hex).unwrap_or_default();
                let count = param(1).and_then(|c| c.as_u64()).unwrap_or(1000) as usize;
                let start = param(2).and_then(parse_hex);
                let block = self.block(param(3))?;
                let keys: Vec<String> = self
                    .storage_map(block)
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .filter(|k| start.as_ref().is_none_or(|s| *k > s))
                    .take(count)
                    .map(|k| hex0x(k))
                    .collect();
                Ok(json!(keys))
            }
            "state_queryStorageAt" => {
                let keys: Vec<Vec<u8>> = param(0)
                    .and_then(|k| k.as_array())
                    .ok_or_else(|| invalid_params("keys"))?
                    .iter()
                    .map(|k| parse_hex(k).ok_or_else(|| invalid_params("key")))
                    .collect::<Result<_, _>>()?;
                let block = self.block(param(1))?;
                let map = self.storage_map(block);
                let changes: Vec<Json> = keys
                    .iter()
                    .map(|k| json!([hex0x(k), map.get(k).map(|v| hex0x(v))]))
                    .collect();
                Ok(json!([{"block": hex0x(&block.hash), "changes": changes}]))
            }
            other => Err(user_error(
                -32601,
                &format!("Method not found: {other} (not served by the test node)"),
                None,
            )),
        }
    }

    fn runtime_call(&self, name: &str, args: &[u8], block: &Block) -> Result<Vec<u8>, RpcError> {
        let netuid = || u16::decode(&mut &args[..]).map_err(|_| invalid_params("netuid"));
        match name {
            "Core_version" => {
                let apis: Vec<([u8; 8], u32)> = Vec::new();
                Ok((
                    "node-subtensor".to_string(),
                    "node-subtensor".to_string(),
                    1u32,
                    SPEC_VERSION,
                    1u32,
                    apis,
                    1u32,
                    1u8,
                )
                    .encode())
            }
            "Metadata_metadata_versions" => Ok(vec![14u32, 15].encode()),
            "Metadata_metadata_at_version" => {
                let version = u32::decode(&mut &args[..]).map_err(|_| invalid_params("version"))?;
                if version == 15 {
                    let mut out = vec![1u8];
                    Compact(METADATA_V15.len() as u32).encode_to(&mut out);
                    out.extend(METADATA_V15);
                    Ok(out)
                } else {
                    Ok(vec![0u8])
                }
            }
            "AccountNonceApi_account_nonce" => {
                let account =
                    <[u8; 32]>::decode(&mut &args[..]).map_err(|_| invalid_params("account"))?;
                Ok(self
                    .state
                    .nonces
                    .get(&account)
                    .copied()
                    .unwrap_or(0)
                    .encode())
            }
            "SubnetInfoRuntimeApi_get_subnet_hyperparams" => {
                Ok(match block.state.subnets.get(&netuid()?) {
                    Some(subnet) => encode_hyperparams(&subnet.config),
                    None => vec![0u8],
                })
            }
            "SubnetInfoRuntimeApi_get_subnet_state" => {
                let netuid = netuid()?;
                let Some(subnet) = block.state.subnets.get(&netuid) else {
                    return Ok(vec![0u8]);
                };
                let entries: Vec<StateEntry> = subnet
                    .neurons
                    .iter()
                    .map(|n| StateEntry {
                        hotkey: n.hotkey,
                        coldkey: n.coldkey,
                        validator_permit: n.validator_permit,
                        last_update: n.last_update,
                        alpha_stake: n.stake,
                        tao_stake: n.tao_stake,
                        total_stake: n.stake + n.tao_stake * TAO_WEIGHT_PERCENT / 100,
                    })
                    .collect();
                Ok(encode_subnet_state(netuid, &entries))
            }
            "NeuronInfoRuntimeApi_get_neurons_lite" => {
                let netuid = netuid()?;
                let Some(subnet) = block.state.subnets.get(&netuid) else {
                    return Ok(Vec::<u8>::new().encode());
                };
                let mut out = Compact(subnet.neurons.len() as u32).encode();
                for (uid, n) in subnet.neurons.iter().enumerate() {
                    out.extend(encode_neuron_lite(&NeuronLite {
                        hotkey: n.hotkey,
                        coldkey: n.coldkey,
                        uid: uid as u16,
                        netuid,
                        stake: &[(n.coldkey, n.stake)],
                        last_update: n.last_update,
                        validator_permit: n.validator_permit,
                        pruning_score: 65535,
                    }));
                }
                Ok(out)
            }
            other => Err(user_error(
                -32000,
                &format!("Client error: Execution failed: runtime call {other} not served"),
                None,
            )),
        }
    }

    /// Parses and checks a signed v4 extrinsic as a node's transaction pool would.
    fn check_extrinsic(&self, bytes: &[u8]) -> Result<SignedExtrinsic, RpcError> {
        let invalid = |why: &str| user_error(1010, "Invalid Transaction", Some(why));
        let mut input = bytes;
        let len = Compact::<u32>::decode(&mut input).map_err(|_| invalid("bad length"))?;
        if len.0 as usize != input.len() {
            return Err(invalid("length prefix does not match"));
        }
        let body = input;
        let (&version, rest) = body.split_first().ok_or_else(|| invalid("empty"))?;
        if version != 0x84 {
            return Err(invalid("not a signed v4 extrinsic"));
        }
        let mut input = rest;
        let address_kind = u8::decode(&mut input).map_err(|_| invalid("address"))?;
        let signer = <[u8; 32]>::decode(&mut input).map_err(|_| invalid("address"))?;
        let signature_kind = u8::decode(&mut input).map_err(|_| invalid("signature"))?;
        let signature = <[u8; 64]>::decode(&mut input).map_err(|_| invalid("signature"))?;
        if address_kind != 0 || signature_kind != 1 {
            return Err(invalid(
                "only MultiAddress::Id with an sr25519 signature is served",
            ));
        }
        let extra_start = input;
        let era_first = u8::decode(&mut input).map_err(|_| invalid("era"))?;
        let birth_hash = if era_first == 0 {
            self.genesis
        } else {
            let era_second = u8::decode(&mut input).map_err(|_| invalid("era"))?;
            let encoded = u16::from_le_bytes([era_first, era_second]);
            let period = 2u64 << (encoded % (1 << 4));
            let quantize = (period >> 12).max(1);
            let phase = (encoded as u64 >> 4) * quantize;
            let current = self.blocks.len() as u64 - 1;
            let birth = (current.max(phase) - phase) / period * period + phase;
            self.blocks
                .get(birth as usize)
                .ok_or_else(|| invalid("era birth block unknown"))?
                .hash
        };
        let nonce = Compact::<u32>::decode(&mut input)
            .map_err(|_| invalid("nonce"))?
            .0;
        let _tip = Compact::<u128>::decode(&mut input).map_err(|_| invalid("tip"))?;
        let metadata_hash_mode = u8::decode(&mut input).map_err(|_| invalid("mode"))?;
        if metadata_hash_mode != 0 {
            return Err(invalid("CheckMetadataHash mode must be 0"));
        }
        let extra = &extra_start[..extra_start.len() - input.len()];
        let call = input.to_vec();
        let mut payload = call.clone();
        payload.extend(extra);
        payload.extend(SPEC_VERSION.encode());
        payload.extend(1u32.encode());
        payload.extend(self.genesis);
        payload.extend(birth_hash);
        payload.push(0); // no metadata hash
        if payload.len() > 256 {
            payload = blake2_256(&payload).to_vec();
        }
        let ok = subxt_signer::sr25519::verify(
            &subxt_signer::sr25519::Signature(signature),
            &payload,
            &subxt_signer::sr25519::PublicKey(signer),
        );
        if !ok {
            return Err(invalid("Transaction has a bad signature"));
        }
        let expected = self.state.nonces.get(&signer).copied().unwrap_or(0);
        if nonce < expected {
            return Err(invalid("Transaction is outdated"));
        }
        if nonce > expected {
            return Err(invalid("Transaction will be valid in the future"));
        }
        Ok(SignedExtrinsic {
            signer,
            nonce,
            call,
        })
    }

    /// Index of a pallet error in the metadata: (pallet index, error index).
    fn error_index(&self, pallet: &str, error: &str) -> (u8, u8) {
        let p = self
            .metadata
            .pallet_by_name(pallet)
            .expect("pallet in metadata");
        let e = p
            .error_variants()
            .and_then(|vs| vs.iter().find(|v| v.name == error))
            .unwrap_or_else(|| panic!("{pallet}::{error} in metadata"));
        (p.error_index(), e.index)
    }

    /// Applies a call; `Err((pallet, error))` is a dispatch error.
    fn dispatch(
        &mut self,
        signer: [u8; 32],
        call: &[u8],
    ) -> Result<(), (&'static str, &'static str)> {
        const SUBTENSOR: &str = "SubtensorModule";
        let block = self.blocks.len() as u64; // the block being built
        let (pallet, index) = (call[0], call[1]);
        let mut args = &call[2..];
        let bad = (SUBTENSOR, "InvalidUid");
        match (pallet, index) {
            // SubtensorModule.set_weights
            (7, 0) => {
                let (netuid, dests, weights, version_key) =
                    <(u16, Vec<u16>, Vec<u16>, u64)>::decode(&mut args).map_err(|_| bad)?;
                let subnet = self
                    .state
                    .subnets
                    .get_mut(&netuid)
                    .ok_or((SUBTENSOR, "MechanismDoesNotExist"))?;
                if subnet.config.commit_reveal {
                    return Err((SUBTENSOR, "CommitRevealEnabled"));
                }
                let uid = subnet
                    .uid_of(&signer)
                    .ok_or((SUBTENSOR, "HotKeyNotRegisteredInSubNet"))?;
                apply_weights(subnet, uid, &dests, &weights, version_key, block, true)
            }
            // SubtensorModule.commit_weights
            (7, 96) => {
                let (netuid, hash) = <(u16, [u8; 32])>::decode(&mut args).map_err(|_| bad)?;
                let subnet = self
                    .state
                    .subnets
                    .get_mut(&netuid)
                    .ok_or((SUBTENSOR, "MechanismDoesNotExist"))?;
                if !subnet.config.commit_reveal {
                    return Err((SUBTENSOR, "CommitRevealDisabled"));
                }
                let uid = subnet
                    .uid_of(&signer)
                    .ok_or((SUBTENSOR, "HotKeyNotRegisteredInSubNet"))?;
                let last = subnet.neurons[uid as usize].last_update;
                if last != 0 && block - last < subnet.config.weights_rate_limit {
                    return Err((SUBTENSOR, "CommittingWeightsTooFast"));
                }
                let epoch = subnet.epoch_index(block);
                let reveal_period = subnet.config.reveal_period;
                let commits = subnet.weight_commits.entry(signer).or_default();
                commits.retain(|c| epoch <= c.1 + reveal_period);
                if commits.len() >= 10 {
                    return Err((SUBTENSOR, "TooManyUnrevealedCommits"));
                }
                commits.push((hash, epoch, block, 0));
                subnet.neurons[uid as usize].last_update = block;
                Ok(())
            }
            // SubtensorModule.reveal_weights
            (7, 97) => {
                let (netuid, uids, values, salt, version_key) =
                    <(u16, Vec<u16>, Vec<u16>, Vec<u16>, u64)>::decode(&mut args)
                        .map_err(|_| bad)?;
                let subnet = self
                    .state
                    .subnets
                    .get_mut(&netuid)
                    .ok_or((SUBTENSOR, "MechanismDoesNotExist"))?;
                if !subnet.config.commit_reveal {
                    return Err((SUBTENSOR, "CommitRevealDisabled"));
                }
                let epoch = subnet.epoch_index(block);
                let reveal_period = subnet.config.reveal_period;
                let hash = commit_hash(&signer, netuid, &uids, &values, &salt, version_key);
                let commits = subnet
                    .weight_commits
                    .get_mut(&signer)
                    .filter(|c| !c.is_empty())
                    .ok_or((SUBTENSOR, "NoWeightsCommitFound"))?;
                let expired: Vec<[u8; 32]> = commits
                    .iter()
                    .filter(|c| epoch > c.1 + reveal_period)
                    .map(|c| c.0)
                    .collect();
                commits.retain(|c| epoch <= c.1 + reveal_period);
                let Some(position) = commits.iter().position(|c| c.0 == hash) else {
                    return Err(if expired.contains(&hash) {
                        (SUBTENSOR, "ExpiredWeightCommit")
                    } else if commits.is_empty() {
                        (SUBTENSOR, "NoWeightsCommitFound")
                    } else {
                        (SUBTENSOR, "InvalidRevealCommitHashNotMatch")
                    });
                };
                if epoch != commits[position].1 + reveal_period {
                    return Err((SUBTENSOR, "RevealTooEarly"));
                }
                commits.drain(..=position);
                let uid = subnet
                    .uid_of(&signer)
                    .ok_or((SUBTENSOR, "HotKeyNotRegisteredInSubNet"))?;
                apply_weights(subnet, uid, &uids, &values, version_key, block, false)
            }
            // Commitments.set_commitment
            (18, 0) => {
                let netuid =
                    u16::decode(&mut args).map_err(|_| ("Commitments", "TooManyFields"))?;
                let (fields, _) =
                    decode_commitment_info(args).map_err(|_| ("Commitments", "TooManyFields"))?;
                let subnet = self
                    .state
                    .subnets
                    .get_mut(&netuid)
                    .ok_or(("Commitments", "AccountNotAllowedCommit"))?;
                if subnet.uid_of(&signer).is_none() {
                    return Err(("Commitments", "AccountNotAllowedCommit"));
                }
                let mut data = Vec::new();
                for field in &fields {
                    match field {
                        Field::Raw(bytes) => data.extend(bytes),
                        _ => return Err(("Commitments", "TooManyFields")),
                    }
                }
                let epoch = subnet.epoch_index(block);
                let cost = (data.len() as u64 + 1).max(100);
                let used = subnet.used_space.entry(signer).or_insert((epoch, 0));
                if used.0 != epoch {
                    *used = (epoch, 0);
                }
                if used.1 + cost > MAX_SPACE {
                    return Err(("Commitments", "SpaceLimitExceeded"));
                }
                used.1 += cost;
                subnet.commitments.insert(signer, (block as u32, data));
                Ok(())
            }
            _ => Err(("System", "CallFiltered")),
        }
    }

    /// Accepts a submitted extrinsic: checks it, applies it in a new block and returns the
    /// status updates of `author_submitAndWatchExtrinsic`.
    fn submit(&mut self, bytes: Vec<u8>) -> Result<Vec<Json>, RpcError> {
        let ext = self.check_extrinsic(&bytes)?;
        *self.state.nonces.entry(ext.signer).or_insert(0) = ext.nonce + 1;
        let before = self.state.clone();
        let outcome = if ext.call.len() < 2 {
            Err(("System", "CallFiltered"))
        } else {
            self.dispatch(ext.signer, &ext.call)
        };
        let system = self
            .metadata
            .pallet_by_name("System")
            .expect("System pallet")
            .event_index();
        let mut record = vec![0u8]; // Phase::ApplyExtrinsic
        record.extend(0u32.encode());
        record.push(system);
        match outcome {
            Ok(()) => record.push(0), // ExtrinsicSuccess
            Err((pallet, error)) => {
                let nonces = self.state.nonces.clone();
                self.state = before;
                self.state.nonces = nonces;
                let (p, e) = self.error_index(pallet, error);
                record.push(1); // ExtrinsicFailed
                record.extend([3, p, e, 0, 0, 0]); // DispatchError::Module
            }
        }
        Compact(1_000_000u64).encode_to(&mut record); // weight.ref_time
        Compact(1_000u64).encode_to(&mut record); // weight.proof_size
        record.extend([0, 1]); // DispatchClass::Normal, Pays::No
        record.push(0); // no topics
        let mut events = Compact(1u32).encode();
        events.extend(record);
        let hash = self.seal(vec![bytes], events);
        Ok(vec![
            json!("ready"),
            json!({"inBlock": hex0x(&hash)}),
            json!({"finalized": hex0x(&hash)}),
        ])
    }
}

/// `do_set_weights` checks and effect: version key, rate limit (only outside commit-reveal),
/// lengths, uids; the stored row is normalised to sum 65535 as `normalize_weights` does.
fn apply_weights(
    subnet: &mut Subnet,
    uid: u16,
    dests: &[u16],
    weights: &[u16],
    version_key: u64,
    block: u64,
    check_rate_limit: bool,
) -> Result<(), (&'static str, &'static str)> {
    const SUBTENSOR: &str = "SubtensorModule";
    if dests.len() != weights.len() {
        return Err((SUBTENSOR, "WeightVecNotEqualSize"));
    }
    let required = subnet.config.weights_version_key;
    if required != 0 && version_key < required {
        return Err((SUBTENSOR, "IncorrectWeightVersionKey"));
    }
    let last = subnet.neurons[uid as usize].last_update;
    if check_rate_limit && last != 0 && block - last < subnet.config.weights_rate_limit {
        return Err((SUBTENSOR, "SettingWeightsTooFast"));
    }
    if dests.iter().any(|d| *d as usize >= subnet.neurons.len()) {
        return Err((SUBTENSOR, "UidVecContainInvalidOne"));
    }
    let mut seen = std::collections::BTreeSet::new();
    if !dests.iter().all(|d| seen.insert(*d)) {
        return Err((SUBTENSOR, "DuplicateUids"));
    }
    if !subnet.neurons[uid as usize].validator_permit && dests.iter().any(|d| *d != uid) {
        return Err((SUBTENSOR, "NeuronNoValidatorPermit"));
    }
    let sum: u64 = weights.iter().map(|w| *w as u64).sum();
    let row = dests
        .iter()
        .zip(weights)
        .map(|(d, w)| {
            let normalised = (*w as u64 * u16::MAX as u64).checked_div(sum).unwrap_or(0) as u16;
            (*d, normalised)
        })
        .collect();
    subnet.weights.insert(uid, row);
    subnet.neurons[uid as usize].last_update = block;
    Ok(())
}

fn params_of(raw: Option<Box<serde_json::value::RawValue>>) -> Vec<Json> {
    raw.and_then(|r| serde_json::from_str::<Json>(r.get()).ok())
        .map(|v| match v {
            Json::Array(items) => items,
            Json::Null => Vec::new(),
            other => vec![other],
        })
        .unwrap_or_default()
}

impl TestNode {
    /// A node at block 0 with no subnets.
    pub fn new() -> TestNode {
        let metadata = Metadata::decode(&mut &METADATA_V15[..]).expect("recorded metadata decodes");
        let mut genesis = [0u8; 32];
        genesis.copy_from_slice(&hex::decode(GENESIS_HASH).expect("hex"));
        let genesis_block = Block {
            hash: genesis,
            header: json!({
                "parentHash": hex0x(&[0u8; 32]),
                "number": "0x0",
                "stateRoot": hex0x(&[0u8; 32]),
                "extrinsicsRoot": hex0x(&[0u8; 32]),
                "digest": {"logs": []},
            }),
            extrinsics: Vec::new(),
            events: Vec::<u8>::new().encode(),
            state: State::default(),
        };
        TestNode {
            inner: Arc::new(Mutex::new(Node {
                metadata,
                genesis,
                blocks: vec![genesis_block],
                state: State::default(),
                hang: false,
                calls: Vec::new(),
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Node) -> T) -> T {
        let mut node = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut node)
    }

    /// Adds a subnet (sealed into a new block).
    pub fn add_subnet(&self, netuid: u16, config: SubnetConfig) {
        self.with(|n| {
            n.state.subnets.insert(
                netuid,
                Subnet {
                    config,
                    neurons: Vec::new(),
                    weights: BTreeMap::new(),
                    weight_commits: BTreeMap::new(),
                    commitments: BTreeMap::new(),
                    used_space: BTreeMap::new(),
                },
            );
            n.seal(Vec::new(), Vec::<u8>::new().encode());
        })
    }

    /// Changes a subnet's hyperparameters (as its owner would with sudo calls).
    pub fn configure(&self, netuid: u16, config: SubnetConfig) {
        self.with(|n| {
            if let Some(s) = n.state.subnets.get_mut(&netuid) {
                s.config = config;
            }
            n.seal(Vec::new(), Vec::<u8>::new().encode());
        })
    }

    /// Registers a hotkey on a subnet; returns its uid.
    pub fn register(
        &self,
        netuid: u16,
        hotkey: [u8; 32],
        coldkey: [u8; 32],
        stake: u64,
        validator_permit: bool,
    ) -> u16 {
        self.with(|n| {
            let subnet = n.state.subnets.get_mut(&netuid).expect("subnet exists");
            subnet.neurons.push(NeuronState {
                hotkey,
                coldkey,
                stake,
                tao_stake: 0,
                validator_permit,
                last_update: 0,
            });
            let uid = subnet.neurons.len() as u16 - 1;
            n.seal(Vec::new(), Vec::<u8>::new().encode());
            uid
        })
    }

    /// Sets the TAO staked on `uid`'s hotkey on the root subnet (what makes `total_stake` differ
    /// from `alpha_stake` in `get_subnet_state`).
    pub fn set_tao_stake(&self, netuid: u16, uid: u16, rao: u64) {
        self.with(|n| {
            if let Some(neuron) = n
                .state
                .subnets
                .get_mut(&netuid)
                .and_then(|s| s.neurons.get_mut(uid as usize))
            {
                neuron.tao_stake = rao;
            }
            n.seal(Vec::new(), Vec::<u8>::new().encode());
        })
    }

    /// Stores a commitment directly (as if its owner had set it at the current block).
    pub fn put_commitment(&self, netuid: u16, hotkey: [u8; 32], data: &[u8]) {
        self.with(|n| {
            let at = n.blocks.len() as u32;
            if let Some(s) = n.state.subnets.get_mut(&netuid) {
                s.commitments.insert(hotkey, (at, data.to_vec()));
            }
            n.seal(Vec::new(), Vec::<u8>::new().encode());
        })
    }

    /// Produces `count` empty blocks.
    pub fn advance(&self, count: u64) {
        self.with(|n| {
            for _ in 0..count {
                n.seal(Vec::new(), Vec::<u8>::new().encode());
            }
        })
    }

    /// The head block number.
    pub fn block_number(&self) -> u64 {
        self.with(|n| n.blocks.len() as u64 - 1)
    }

    /// The subnet's epoch index at the head.
    pub fn epoch_index(&self, netuid: u16) -> u64 {
        self.with(|n| {
            let head = n.blocks.len() as u64 - 1;
            n.state
                .subnets
                .get(&netuid)
                .map(|s| s.epoch_index(head))
                .unwrap_or(0)
        })
    }

    /// Advances to the first block of the given epoch index.
    pub fn advance_to_epoch(&self, netuid: u16, epoch: u64) {
        while self.epoch_index(netuid) < epoch {
            self.advance(1);
        }
    }

    /// The weights row `uid` has set on `netuid`.
    pub fn weights_of(&self, netuid: u16, uid: u16) -> Option<Vec<(u16, u16)>> {
        self.with(|n| n.state.subnets.get(&netuid)?.weights.get(&uid).cloned())
    }

    /// The commits waiting for a reveal from `hotkey` (hash, epoch, block).
    pub fn pending_commits(&self, netuid: u16, hotkey: &[u8; 32]) -> Vec<([u8; 32], u64, u64)> {
        self.with(|n| {
            n.state
                .subnets
                .get(&netuid)
                .and_then(|s| s.weight_commits.get(hotkey))
                .map(|c| c.iter().map(|(h, e, b, _)| (*h, *e, *b)).collect())
                .unwrap_or_default()
        })
    }

    /// Makes every request hang (a node that accepts the connection and never answers).
    pub fn set_hang(&self, hang: bool) {
        self.with(|n| n.hang = hang)
    }

    /// The RPC methods called so far, in order (`state_call:<runtime call>` for runtime calls).
    pub fn calls(&self) -> Vec<String> {
        self.with(|n| n.calls.clone())
    }

    /// Answers one JSON-RPC method call (what both fronts share).
    fn call(&self, method: &str, params: Vec<Json>) -> Result<Json, RpcError> {
        self.with(|n| n.handle(method, params))
    }

    /// Serves this node over a real WebSocket on 127.0.0.1 (JSON-RPC, the legacy methods and
    /// `author_submitAndWatchExtrinsic`), for tests that run the binaries against it. The
    /// server stops when the returned handle is dropped or stopped.
    pub async fn serve_ws(
        &self,
    ) -> std::io::Result<(std::net::SocketAddr, jsonrpsee::server::ServerHandle)> {
        self.serve_ws_on("127.0.0.1:0".parse().expect("an address"))
            .await
    }

    /// [`TestNode::serve_ws`] on a given address (to restart a node where it was).
    pub async fn serve_ws_on(
        &self,
        at: std::net::SocketAddr,
    ) -> std::io::Result<(std::net::SocketAddr, jsonrpsee::server::ServerHandle)> {
        use jsonrpsee::server::{RpcModule, Server};
        use jsonrpsee::types::ErrorObjectOwned;

        fn to_error(e: RpcError) -> ErrorObjectOwned {
            match e {
                RpcError::User(u) => ErrorObjectOwned::owned(u.code, u.message, u.data),
                other => ErrorObjectOwned::owned(-32000, other.to_string(), None::<()>),
            }
        }
        const METHODS: [&str; 12] = [
            "chain_getBlockHash",
            "chain_getFinalizedHead",
            "chain_getHeader",
            "chain_getBlock",
            "state_getRuntimeVersion",
            "system_chain",
            "system_accountNextIndex",
            "state_call",
            "state_getStorage",
            "state_getKeysPaged",
            "state_queryStorageAt",
            "rpc_methods",
        ];
        let server = Server::builder().build(at).await?;
        let addr = server.local_addr()?;
        let mut module = RpcModule::new(self.clone());
        for method in METHODS {
            module
                .register_method(method, move |params, node: &TestNode, _| {
                    let params: Vec<Json> = params.parse().unwrap_or_default();
                    node.call(method, params).map_err(to_error)
                })
                .map_err(std::io::Error::other)?;
        }
        module
            .register_subscription(
                "author_submitAndWatchExtrinsic",
                "author_extrinsicUpdate",
                "author_unwatchExtrinsic",
                |params, pending, node, _| async move {
                    let params: Vec<Json> = params.parse().unwrap_or_default();
                    let result = params
                        .first()
                        .and_then(parse_hex)
                        .ok_or_else(|| invalid_params("extrinsic"))
                        .and_then(|bytes| node.with(|n| n.submit(bytes)));
                    match result {
                        Ok(statuses) => {
                            let Ok(sink) = pending.accept().await else {
                                return;
                            };
                            for status in statuses {
                                let Ok(raw) = serde_json::value::to_raw_value(&status) else {
                                    return;
                                };
                                if sink.send(raw).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => pending.reject(to_error(e)).await,
                    }
                },
            )
            .map_err(std::io::Error::other)?;
        Ok((addr, server.start(module)))
    }

    /// An RPC client connected to this node through subxt's `MockRpcClient`.
    pub fn rpc_client(&self) -> RpcClient {
        let methods = self.clone();
        let subscriptions = self.clone();
        let mock = MockRpcClient::builder()
            .method_fallback(move |method: String, params| {
                let (hang, result) =
                    methods.with(|n| (n.hang, n.handle(&method, params_of(params))));
                async move {
                    if hang {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    result
                }
            })
            .subscription_fallback(move |method: String, params, _unsub| {
                let (hang, result) = subscriptions.with(|n| {
                    n.calls.push(method.clone());
                    let result = match method.as_str() {
                        "author_submitAndWatchExtrinsic" => params_of(params)
                            .first()
                            .and_then(parse_hex)
                            .ok_or_else(|| invalid_params("extrinsic"))
                            .and_then(|bytes| n.submit(bytes)),
                        other => Err(user_error(
                            -32601,
                            &format!("Subscription not served by the test node: {other}"),
                            None,
                        )),
                    };
                    (n.hang, result)
                });
                async move {
                    if hang {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    result
                }
            })
            .build();
        RpcClient::new(mock)
    }
}
