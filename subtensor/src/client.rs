//! The online client: one connection to a subtensor node through subxt 0.51's dynamic API
//! (metadata comes from the node; no generated code), on subxt's legacy RPC backend, which every
//! subtensor node serves and which the offline tests drive through subxt's mock RPC client.
//!
//! Every request runs under the client's timeout and fails with an [`Error`] naming the storage
//! item, runtime API or call. The WebSocket connection reconnects with exponential backoff
//! (subxt-rpcs' reconnecting client); the legacy backend retries requests cut by a reconnect.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scale_decode::DecodeAsType;
use subxt::backend::LegacyBackend;
use subxt::client::{ClientAtBlock, OnlineClientAtBlockImpl};
use subxt::config::SubstrateConfig;
use subxt::dynamic::{self, Value};
use subxt::error::{DispatchError, TransactionEventsError};
use subxt::rpcs::client::reconnecting_rpc_client::RpcClient as Reconnecting;
use subxt::rpcs::RpcClient;
use subxt::tx::{Signer as TxSigner, TransactionStatus};
use subxt::OnlineClient;

use crate::account::AccountId;
use crate::chain::{Metagraph, Neuron, SubnetParams};
use crate::commitment_data::{decode_registration, encode_commitment_info};
use crate::error::{explain_rejection, Error};
use crate::network::Network;

/// The subxt client type this crate uses.
pub type Api = OnlineClient<SubstrateConfig>;
type AtBlock = ClientAtBlock<SubstrateConfig, OnlineClientAtBlockImpl<SubstrateConfig>>;

/// One `Commitments.CommitmentOf` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCommitment {
    /// The committing hotkey.
    pub hotkey: [u8; 32],
    /// The block it was set at.
    pub block: u64,
    /// Its raw bytes, or why there are none (another `Data` variant, undecodable value).
    pub data: Result<Vec<u8>, String>,
}

/// One entry of `SubtensorModule.WeightCommits`: a hash commit waiting for its reveal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightCommit {
    /// The commit hash.
    pub hash: [u8; 32],
    /// The epoch index it was tagged with.
    pub epoch: u64,
    /// The block it was included in.
    pub block: u64,
}

#[derive(DecodeAsType)]
struct RawNeuron {
    hotkey: [u8; 32],
    coldkey: [u8; 32],
    uid: u16,
    active: bool,
    stake: Vec<([u8; 32], u64)>,
    last_update: u64,
    validator_permit: bool,
}

#[derive(DecodeAsType)]
struct RawHyperparams {
    tempo: u64,
    weights_version: u64,
    weights_rate_limit: u64,
    commit_reveal_period: u64,
    commit_reveal_weights_enabled: bool,
    max_weights_limit: u64,
    min_allowed_weights: u64,
}

/// The sum of a neuron's stake entries, saturating at `u64::MAX`.
fn saturating_total(stake: &[([u8; 32], u64)]) -> u64 {
    stake
        .iter()
        .fold(0u64, |total, (_, s)| total.saturating_add(*s))
}

impl From<RawNeuron> for Neuron {
    fn from(n: RawNeuron) -> Self {
        Neuron {
            uid: n.uid,
            hotkey: AccountId(n.hotkey),
            coldkey: AccountId(n.coldkey),
            // Saturating: the chain's numbers are not ours to trust, and `sum` panics on
            // overflow in a debug build.
            stake: saturating_total(&n.stake),
            alpha_stake: saturating_total(&n.stake),
            tao_stake: None,
            total_stake: None,
            validator_permit: n.validator_permit,
            last_update: n.last_update,
            active: n.active,
        }
    }
}

impl From<RawHyperparams> for SubnetParams {
    fn from(h: RawHyperparams) -> Self {
        SubnetParams {
            tempo: h.tempo,
            weights_rate_limit: h.weights_rate_limit,
            weights_version_key: h.weights_version,
            commit_reveal_enabled: h.commit_reveal_weights_enabled,
            reveal_period: h.commit_reveal_period,
            max_weights_limit: h.max_weights_limit,
            min_allowed_weights: h.min_allowed_weights,
        }
    }
}

/// Decodes `get_neurons_lite` output bytes with the metadata's type for it.
pub fn decode_neurons_lite(
    metadata: &subxt::metadata::Metadata,
    bytes: &[u8],
) -> Result<Vec<Neuron>, String> {
    let ty = metadata
        .runtime_api_trait_by_name("NeuronInfoRuntimeApi")
        .and_then(|t| t.method_by_name("get_neurons_lite"))
        .ok_or("the runtime has no NeuronInfoRuntimeApi.get_neurons_lite")?
        .output_ty();
    let mut input = bytes;
    let raw = Vec::<RawNeuron>::decode_as_type(&mut input, ty, metadata.types())
        .map_err(|e| e.to_string())?;
    if !input.is_empty() {
        return Err(format!("{} trailing byte(s)", input.len()));
    }
    Ok(raw.into_iter().map(Neuron::from).collect())
}

/// Decodes `get_subnet_hyperparams` output bytes (`Option<SubnetHyperparams>`).
pub fn decode_hyperparams(
    metadata: &subxt::metadata::Metadata,
    bytes: &[u8],
) -> Result<Option<SubnetParams>, String> {
    let ty = metadata
        .runtime_api_trait_by_name("SubnetInfoRuntimeApi")
        .and_then(|t| t.method_by_name("get_subnet_hyperparams"))
        .ok_or("the runtime has no SubnetInfoRuntimeApi.get_subnet_hyperparams")?
        .output_ty();
    let mut input = bytes;
    let raw = Option::<RawHyperparams>::decode_as_type(&mut input, ty, metadata.types())
        .map_err(|e| e.to_string())?;
    if !input.is_empty() {
        return Err(format!("{} trailing byte(s)", input.len()));
    }
    Ok(raw.map(SubnetParams::from))
}

/// The stake vectors of `SubnetInfoRuntimeApi.get_subnet_state`, indexed by uid (the other
/// fields of `SubnetState` are skipped by name).
#[derive(DecodeAsType)]
struct RawSubnetState {
    hotkeys: Vec<[u8; 32]>,
    alpha_stake: Vec<u64>,
    tao_stake: Vec<u64>,
    total_stake: Vec<u64>,
}

/// The stakes of one uid as `get_subnet_state` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetStake {
    /// The hotkey at that uid.
    pub hotkey: [u8; 32],
    /// `alpha_stake`.
    pub alpha: u64,
    /// `tao_stake`.
    pub tao: u64,
    /// `total_stake`.
    pub total: u64,
}

/// Decodes `get_subnet_state` output bytes (`Option<SubnetState>`) into the stakes by uid.
/// `Ok(None)`: the subnet does not exist.
pub fn decode_subnet_state(
    metadata: &subxt::metadata::Metadata,
    bytes: &[u8],
) -> Result<Option<Vec<SubnetStake>>, String> {
    let ty = metadata
        .runtime_api_trait_by_name("SubnetInfoRuntimeApi")
        .and_then(|t| t.method_by_name("get_subnet_state"))
        .ok_or("the runtime has no SubnetInfoRuntimeApi.get_subnet_state")?
        .output_ty();
    let mut input = bytes;
    let raw = Option::<RawSubnetState>::decode_as_type(&mut input, ty, metadata.types())
        .map_err(|e| e.to_string())?;
    if !input.is_empty() {
        return Err(format!("{} trailing byte(s)", input.len()));
    }
    let Some(raw) = raw else { return Ok(None) };
    let n = raw.hotkeys.len();
    if raw.alpha_stake.len() != n || raw.tao_stake.len() != n || raw.total_stake.len() != n {
        return Err(format!(
            "{n} hotkeys but {} alpha_stake, {} tao_stake and {} total_stake entries",
            raw.alpha_stake.len(),
            raw.tao_stake.len(),
            raw.total_stake.len()
        ));
    }
    Ok(Some(
        (0..n)
            .map(|i| SubnetStake {
                hotkey: raw.hotkeys[i],
                alpha: raw.alpha_stake[i],
                tao: raw.tao_stake[i],
                total: raw.total_stake[i],
            })
            .collect(),
    ))
}

/// Writes the stakes of `get_subnet_state` into `neurons` (by uid, checked against the
/// hotkey); a neuron without a matching entry keeps the `NeuronInfoLite` fallback.
pub fn apply_subnet_stakes(neurons: &mut [Neuron], stakes: &[SubnetStake]) {
    for n in neurons.iter_mut() {
        match stakes.get(n.uid as usize) {
            Some(s) if s.hotkey == n.hotkey.0 => {
                n.alpha_stake = s.alpha;
                n.tao_stake = Some(s.tao);
                n.total_stake = Some(s.total);
            }
            _ => tracing::warn!(
                uid = n.uid,
                "SubnetInfoRuntimeApi.get_subnet_state: no entry for this uid and hotkey"
            ),
        }
    }
}

/// Where the metagraph is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetagraphSource {
    /// The runtime APIs (`get_neurons_lite`, `get_subnet_hyperparams`) when the runtime has
    /// them, storage otherwise.
    #[default]
    Auto,
    /// Storage items only (`SubnetworkN`, `Keys`, `Owner`, `TotalHotkeyAlpha`, ...).
    Storage,
}

/// A connection to one subtensor node.
#[derive(Clone)]
pub struct Subtensor {
    api: Api,
    endpoint: String,
    timeout: Duration,
    source: MetagraphSource,
}

impl std::fmt::Debug for Subtensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subtensor")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Subtensor {
    /// Connects to `network`: one attempt within `min(timeout, 10 s)` that fails with
    /// [`Error::Connect`] naming the cause (refused, DNS, TLS, timeout; see [`crate::connect`]).
    /// Once connected, drops of the WebSocket are reconnected with exponential backoff for as
    /// long as the client lives; requests meanwhile fail with [`Error::Timeout`].
    pub async fn connect(network: &Network, timeout: Duration) -> Result<Subtensor, Error> {
        let connect_error = |reason: String| Error::Connect {
            endpoint: network.to_string(),
            reason,
        };
        let first = timeout.min(crate::connect::CONNECT_TIMEOUT);
        crate::connect::reach(&network.url, first)
            .await
            .map_err(connect_error)?;
        let policy = crate::connect::ReconnectPolicy::new();
        let building = Reconnecting::builder()
            .retry_policy(policy.clone())
            .connection_timeout(first)
            .request_timeout(timeout)
            .build(network.url.clone());
        let rpc = match tokio::time::timeout(first, building).await {
            Err(_) => {
                return Err(connect_error(format!(
                    "timeout: no WebSocket handshake within {} s",
                    first.as_secs()
                )))
            }
            Ok(Err(e)) => {
                return Err(connect_error(crate::connect::handshake_cause(
                    network.is_secure(),
                    &e.to_string(),
                )))
            }
            Ok(Ok(rpc)) => rpc,
        };
        policy.set_connected();
        Subtensor::from_rpc(RpcClient::new(rpc), &network.to_string(), timeout).await
    }

    /// A client over an existing RPC client (a mock node in tests). Fetches the genesis hash.
    pub async fn from_rpc(
        rpc: RpcClient,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<Subtensor, Error> {
        let backend = LegacyBackend::builder().build(rpc);
        let api = match tokio::time::timeout(timeout, Api::from_backend(Arc::new(backend))).await {
            Err(_) => {
                return Err(Error::Connect {
                    endpoint: endpoint.to_string(),
                    reason: format!("no genesis hash within {} s", timeout.as_secs()),
                })
            }
            Ok(Err(e)) => {
                return Err(Error::Connect {
                    endpoint: endpoint.to_string(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(api)) => api,
        };
        Ok(Subtensor {
            api,
            endpoint: endpoint.to_string(),
            timeout,
            source: MetagraphSource::Auto,
        })
    }

    /// The same client, reading the metagraph from `source`.
    pub fn with_metagraph_source(mut self, source: MetagraphSource) -> Self {
        self.source = source;
        self
    }

    /// Whether the metagraph comes from the runtime APIs at `at`.
    fn uses_runtime_apis(&self, at: &AtBlock) -> bool {
        let has = |api: &str, method: &str| {
            at.metadata_ref()
                .runtime_api_trait_by_name(api)
                .and_then(|t| t.method_by_name(method))
                .is_some()
        };
        self.source == MetagraphSource::Auto
            && has("NeuronInfoRuntimeApi", "get_neurons_lite")
            && has("SubnetInfoRuntimeApi", "get_subnet_hyperparams")
    }

    /// A storage value at `at`, its default when absent (`ValueQuery`).
    async fn storage_value<K, V>(&self, at: &AtBlock, item: &str, key: K) -> Result<V, Error>
    where
        K: frame_decode::storage::IntoEncodableValues
            + frame_decode::storage::IntoDecodableValues
            + Send,
        V: DecodeAsType,
    {
        let name = format!("SubtensorModule.{item}");
        let addr = dynamic::storage::<K, V>("SubtensorModule", item.to_string());
        let value = self.within(&name, at.storage().fetch(addr, key)).await?;
        value.decode().map_err(|e| Error::Decode {
            item: name,
            reason: e.to_string(),
        })
    }

    /// Hyperparameters from storage; [`Error::UnknownNetuid`] unless `NetworksAdded(netuid)`.
    async fn params_from_storage(&self, at: &AtBlock, netuid: u16) -> Result<SubnetParams, Error> {
        let added: bool = self.storage_value(at, "NetworksAdded", (netuid,)).await?;
        if !added {
            return Err(Error::UnknownNetuid {
                item: "SubtensorModule.NetworksAdded".into(),
                netuid,
            });
        }
        let tempo: u16 = self.storage_value(at, "Tempo", (netuid,)).await?;
        let max_weights_limit: u16 = self.storage_value(at, "MaxWeightsLimit", (netuid,)).await?;
        let min_allowed_weights: u16 = self
            .storage_value(at, "MinAllowedWeights", (netuid,))
            .await?;
        Ok(SubnetParams {
            tempo: tempo as u64,
            weights_rate_limit: self
                .storage_value(at, "WeightsSetRateLimit", (netuid,))
                .await?,
            weights_version_key: self
                .storage_value(at, "WeightsVersionKey", (netuid,))
                .await?,
            commit_reveal_enabled: self
                .storage_value(at, "CommitRevealWeightsEnabled", (netuid,))
                .await?,
            reveal_period: self
                .storage_value(at, "RevealPeriodEpochs", (netuid,))
                .await?,
            max_weights_limit: max_weights_limit as u64,
            min_allowed_weights: min_allowed_weights as u64,
        })
    }

    /// Neurons from storage: `SubnetworkN`, then per uid `Keys`, `Owner` and
    /// `TotalHotkeyAlpha`, with the `ValidatorPermit`, `LastUpdate` and `Active` vectors.
    async fn neurons_from_storage(&self, at: &AtBlock, netuid: u16) -> Result<Vec<Neuron>, Error> {
        let n: u16 = self.storage_value(at, "SubnetworkN", (netuid,)).await?;
        let permits: Vec<bool> = self.storage_value(at, "ValidatorPermit", (netuid,)).await?;
        let last_update: Vec<u64> = self.storage_value(at, "LastUpdate", (netuid,)).await?;
        let active: Vec<bool> = self.storage_value(at, "Active", (netuid,)).await?;
        let mut neurons = Vec::with_capacity(n as usize);
        for uid in 0..n {
            let hotkey: [u8; 32] = self.storage_value(at, "Keys", (netuid, uid)).await?;
            let coldkey: [u8; 32] = self.storage_value(at, "Owner", (hotkey,)).await?;
            let stake: u64 = self
                .storage_value(at, "TotalHotkeyAlpha", (hotkey, netuid))
                .await?;
            let i = uid as usize;
            neurons.push(Neuron {
                uid,
                hotkey: AccountId(hotkey),
                coldkey: AccountId(coldkey),
                stake,
                alpha_stake: stake,
                tao_stake: None,
                total_stake: None,
                validator_permit: permits.get(i).copied().unwrap_or(false),
                last_update: last_update.get(i).copied().unwrap_or(0),
                active: active.get(i).copied().unwrap_or(false),
            });
        }
        Ok(neurons)
    }

    /// The endpoint this client talks to, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `fut` under the timeout; failures become [`Error::Rpc`] naming `item`.
    async fn within<T, E: std::fmt::Display>(
        &self,
        item: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(Error::Timeout {
                item: item.to_string(),
                seconds: self.timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(Error::Rpc {
                item: item.to_string(),
                reason: e.to_string(),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// A view of the latest finalized block.
    async fn at(&self) -> Result<AtBlock, Error> {
        self.within("chain_getFinalizedHead", self.api.at_current_block())
            .await
    }

    /// The latest finalized block number.
    pub async fn current_block(&self) -> Result<u64, Error> {
        Ok(self.at().await?.block_number())
    }

    /// The subnet's hyperparameters; [`Error::UnknownNetuid`] when it does not exist.
    pub async fn subnet_params(&self, netuid: u16) -> Result<SubnetParams, Error> {
        let at = self.at().await?;
        self.params_at(&at, netuid).await
    }

    /// Calls runtime API `api.method(netuid)` at `at`; returns the raw answer.
    async fn runtime_call(
        &self,
        at: &AtBlock,
        api: &str,
        method: &str,
        netuid: u16,
    ) -> Result<Vec<u8>, Error> {
        let item = format!("{api}.{method}");
        let call = dynamic::runtime_api_call::<_, Value>(api, method, (netuid,));
        let args = at
            .runtime_apis()
            .encode_args(&call)
            .map_err(|e| Error::Metadata {
                item: item.clone(),
                reason: e.to_string(),
            })?;
        let name = format!("{api}_{method}");
        self.within(&item, at.runtime_apis().call_raw(&name, Some(&args)))
            .await
    }

    async fn params_at(&self, at: &AtBlock, netuid: u16) -> Result<SubnetParams, Error> {
        if !self.uses_runtime_apis(at) {
            return self.params_from_storage(at, netuid).await;
        }
        let item = "SubnetInfoRuntimeApi.get_subnet_hyperparams";
        let bytes = self
            .runtime_call(at, "SubnetInfoRuntimeApi", "get_subnet_hyperparams", netuid)
            .await?;
        decode_hyperparams(at.metadata_ref(), &bytes)
            .map_err(|reason| Error::Decode {
                item: item.into(),
                reason,
            })?
            .ok_or(Error::UnknownNetuid {
                item: item.into(),
                netuid,
            })
    }

    /// Neurons and hyperparameters of `netuid` at the latest finalized block (runtime APIs where
    /// the node has them, storage otherwise; see [`MetagraphSource`]).
    pub async fn metagraph(&self, netuid: u16) -> Result<Metagraph, Error> {
        let at = self.at().await?;
        let params = self.params_at(&at, netuid).await?;
        let mut neurons = if self.uses_runtime_apis(&at) {
            let item = "NeuronInfoRuntimeApi.get_neurons_lite";
            let bytes = self
                .runtime_call(&at, "NeuronInfoRuntimeApi", "get_neurons_lite", netuid)
                .await?;
            decode_neurons_lite(at.metadata_ref(), &bytes).map_err(|reason| Error::Decode {
                item: item.into(),
                reason,
            })?
        } else {
            self.neurons_from_storage(&at, netuid).await?
        };
        neurons.sort_by_key(|n| n.uid);
        if self.source == MetagraphSource::Auto
            && has_runtime_api(&at, "SubnetInfoRuntimeApi", "get_subnet_state")
        {
            let item = "SubnetInfoRuntimeApi.get_subnet_state";
            let bytes = self
                .runtime_call(&at, "SubnetInfoRuntimeApi", "get_subnet_state", netuid)
                .await?;
            let stakes =
                decode_subnet_state(at.metadata_ref(), &bytes).map_err(|reason| Error::Decode {
                    item: item.into(),
                    reason,
                })?;
            if let Some(stakes) = stakes {
                apply_subnet_stakes(&mut neurons, &stakes);
            }
        }
        let epoch_index = self.epoch_index_at(&at, netuid).await?;
        Ok(Metagraph {
            netuid,
            block: at.block_number(),
            params,
            epoch_index,
            neurons,
        })
    }

    /// `SubtensorModule.SubnetEpochIndex(netuid)`, or `None` when the runtime has no such item
    /// (runtimes before the stateful epoch counter).
    pub async fn epoch_index(&self, netuid: u16) -> Result<Option<u64>, Error> {
        let at = self.at().await?;
        self.epoch_index_at(&at, netuid).await
    }

    async fn epoch_index_at(&self, at: &AtBlock, netuid: u16) -> Result<Option<u64>, Error> {
        if !has_storage(at, "SubtensorModule", "SubnetEpochIndex") {
            return Ok(None);
        }
        let addr = dynamic::storage::<(u16,), u64>("SubtensorModule", "SubnetEpochIndex");
        let value = self
            .within(
                "SubtensorModule.SubnetEpochIndex",
                at.storage().fetch(addr, (netuid,)),
            )
            .await?;
        value.decode().map(Some).map_err(|e| Error::Decode {
            item: "SubtensorModule.SubnetEpochIndex".into(),
            reason: e.to_string(),
        })
    }

    /// The uid of `hotkey` on `netuid` (`SubtensorModule.Uids`), `None` when not registered.
    pub async fn uid_of(&self, netuid: u16, hotkey: &[u8; 32]) -> Result<Option<u16>, Error> {
        let at = self.at().await?;
        let addr = dynamic::storage::<(u16, [u8; 32]), u16>("SubtensorModule", "Uids");
        let value = self
            .within(
                "SubtensorModule.Uids",
                at.storage().try_fetch(addr, (netuid, *hotkey)),
            )
            .await?;
        value
            .map(|v| v.decode())
            .transpose()
            .map_err(|e| Error::Decode {
                item: "SubtensorModule.Uids".into(),
                reason: e.to_string(),
            })
    }

    /// Every `Commitments.CommitmentOf` entry of `netuid`.
    pub async fn commitments(&self, netuid: u16) -> Result<Vec<ChainCommitment>, Error> {
        let item = "Commitments.CommitmentOf";
        let at = self.at().await?;
        let addr = dynamic::storage::<(u16, [u8; 32]), Value>("Commitments", "CommitmentOf");
        let mut entries = self
            .within(item, at.storage().iter(addr, (netuid,)))
            .await?;
        let mut out = Vec::new();
        loop {
            let next = self
                .within(item, async { Ok::<_, Error>(entries.next().await) })
                .await?;
            let Some(entry) = next else { break };
            let entry = entry.map_err(|e| Error::Rpc {
                item: item.into(),
                reason: e.to_string(),
            })?;
            let key = entry.key_bytes();
            if key.len() < 32 {
                return Err(Error::Decode {
                    item: item.into(),
                    reason: format!("a storage key of {} bytes", key.len()),
                });
            }
            let hotkey: [u8; 32] = key[key.len() - 32..].try_into().expect("32 bytes");
            match decode_registration(entry.value().bytes()) {
                Ok(reg) => out.push(ChainCommitment {
                    hotkey,
                    block: reg.block as u64,
                    data: reg.raw_bytes(),
                }),
                Err(e) => out.push(ChainCommitment {
                    hotkey,
                    block: 0,
                    data: Err(e.to_string()),
                }),
            }
        }
        Ok(out)
    }

    /// `SubtensorModule.WeightCommits(netuid_index, hotkey)`: the hotkey's unrevealed commits.
    pub async fn weight_commits(
        &self,
        netuid: u16,
        hotkey: &[u8; 32],
    ) -> Result<Vec<WeightCommit>, Error> {
        let item = "SubtensorModule.WeightCommits";
        let at = self.at().await?;
        let addr = dynamic::storage::<(u16, [u8; 32]), Vec<([u8; 32], u64, u64, u64)>>(
            "SubtensorModule",
            "WeightCommits",
        );
        let value = self
            .within(item, at.storage().try_fetch(addr, (netuid, *hotkey)))
            .await?;
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        let commits = value.decode().map_err(|e| Error::Decode {
            item: item.into(),
            reason: e.to_string(),
        })?;
        Ok(commits
            .into_iter()
            .map(|(hash, epoch, block, _)| WeightCommit { hash, epoch, block })
            .collect())
    }

    /// `SubtensorModule.Weights(netuid, uid)`: the weights `uid` has set, as (dest, weight).
    pub async fn weights(&self, netuid: u16, uid: u16) -> Result<Vec<(u16, u16)>, Error> {
        let item = "SubtensorModule.Weights";
        let at = self.at().await?;
        let addr = dynamic::storage::<(u16, u16), Vec<(u16, u16)>>("SubtensorModule", "Weights");
        let value = self
            .within(item, at.storage().fetch(addr, (netuid, uid)))
            .await?;
        value.decode().map_err(|e| Error::Decode {
            item: item.into(),
            reason: e.to_string(),
        })
    }

    /// `SubtensorModule.LastUpdate(netuid)[uid]`: the block of `uid`'s last weight update
    /// (0: never, or no such uid).
    pub async fn last_update(&self, netuid: u16, uid: u16) -> Result<u64, Error> {
        let at = self.at().await?;
        let blocks: Vec<u64> = self.storage_value(&at, "LastUpdate", (netuid,)).await?;
        Ok(blocks.get(uid as usize).copied().unwrap_or(0))
    }

    /// Checks that `signer`'s hotkey is registered on `netuid`; names the call otherwise.
    async fn require_registered<S: TxSigner<SubstrateConfig> + Sync>(
        &self,
        call: &str,
        netuid: u16,
        signer: &S,
    ) -> Result<u16, Error> {
        let hotkey = signer.account_id().0;
        self.uid_of(netuid, &hotkey)
            .await?
            .ok_or_else(|| Error::NotRegistered {
                item: call.to_string(),
                hotkey: AccountId(hotkey).to_ss58(),
                netuid,
            })
    }

    /// `Commitments.set_commitment(netuid, {fields: [Raw(data)]})` signed by the hotkey; waits
    /// for inclusion and returns the block.
    pub async fn set_commitment<S: TxSigner<SubstrateConfig> + Sync>(
        &self,
        signer: &S,
        netuid: u16,
        data: &[u8],
    ) -> Result<u64, Error> {
        let call = "Commitments.set_commitment";
        encode_commitment_info(data).map_err(|reason| Error::Invalid {
            call: call.into(),
            reason,
        })?;
        self.params_at(&self.at().await?, netuid).await?;
        self.require_registered(call, netuid, signer).await?;
        let info = Value::named_composite([(
            "fields",
            Value::unnamed_composite([Value::unnamed_variant(
                format!("Raw{}", data.len()),
                [Value::from_bytes(data)],
            )]),
        )]);
        let payload = dynamic::tx("Commitments", "set_commitment", (netuid, info));
        self.submit(call, &payload, signer).await
    }

    /// `SubtensorModule.set_weights`; returns the inclusion block.
    pub async fn set_weights<S: TxSigner<SubstrateConfig> + Sync>(
        &self,
        signer: &S,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<u64, Error> {
        let call = "SubtensorModule.set_weights";
        check_lengths(call, uids, weights)?;
        self.require_registered(call, netuid, signer).await?;
        let payload = dynamic::tx(
            "SubtensorModule",
            "set_weights",
            (netuid, uids.to_vec(), weights.to_vec(), version_key),
        );
        self.submit(call, &payload, signer).await
    }

    /// `SubtensorModule.commit_weights(netuid, hash)`; returns the inclusion block.
    pub async fn commit_weights<S: TxSigner<SubstrateConfig> + Sync>(
        &self,
        signer: &S,
        netuid: u16,
        hash: [u8; 32],
    ) -> Result<u64, Error> {
        let call = "SubtensorModule.commit_weights";
        self.require_hash_commits(call, netuid).await?;
        self.require_registered(call, netuid, signer).await?;
        let payload = dynamic::tx("SubtensorModule", "commit_weights", (netuid, hash));
        self.submit(call, &payload, signer).await
    }

    /// `SubtensorModule.reveal_weights`; returns the inclusion block.
    pub async fn reveal_weights<S: TxSigner<SubstrateConfig> + Sync>(
        &self,
        signer: &S,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        salt: &[u16],
        version_key: u64,
    ) -> Result<u64, Error> {
        let call = "SubtensorModule.reveal_weights";
        check_lengths(call, uids, values)?;
        self.require_hash_commits(call, netuid).await?;
        let payload = dynamic::tx(
            "SubtensorModule",
            "reveal_weights",
            (
                netuid,
                uids.to_vec(),
                values.to_vec(),
                salt.to_vec(),
                version_key,
            ),
        );
        self.submit(call, &payload, signer).await
    }

    /// Fails with [`Error::TimelockRequired`] when the runtime has no hash commit-reveal calls.
    async fn require_hash_commits(&self, call: &str, netuid: u16) -> Result<(), Error> {
        let at = self.at().await?;
        let has = |name: &str| {
            at.metadata_ref()
                .pallet_by_name("SubtensorModule")
                .and_then(|p| p.call_variant_by_name(name))
                .is_some()
        };
        if has("commit_weights") && has("reveal_weights") {
            Ok(())
        } else {
            Err(Error::TimelockRequired {
                call: call.into(),
                netuid,
            })
        }
    }

    /// Signs, submits and waits until the extrinsic is in a block, then checks its events.
    async fn submit<C: subxt::tx::Payload, S: TxSigner<SubstrateConfig> + Sync>(
        &self,
        call: &str,
        payload: &C,
        signer: &S,
    ) -> Result<u64, Error> {
        let work = async {
            let at = self.at().await?;
            at.tx().validate(payload).map_err(|e| Error::Metadata {
                item: call.into(),
                reason: e.to_string(),
            })?;
            let mut progress = at
                .tx()
                .sign_and_submit_then_watch_default(payload, signer)
                .await
                .map_err(|e| Error::Rejected {
                    call: call.into(),
                    reason: explain_rejection(&e.to_string()),
                })?;
            tracing::debug!(call, "submitted");
            while let Some(status) = progress.next().await {
                let status = status.map_err(|e| Error::Rpc {
                    item: call.into(),
                    reason: e.to_string(),
                })?;
                let in_block = match status {
                    TransactionStatus::InBestBlock(b) | TransactionStatus::InFinalizedBlock(b) => b,
                    TransactionStatus::Error { message }
                    | TransactionStatus::Invalid { message }
                    | TransactionStatus::Dropped { message } => {
                        return Err(Error::Rejected {
                            call: call.into(),
                            reason: explain_rejection(&message),
                        })
                    }
                    _ => continue,
                };
                return match in_block.wait_for_success().await {
                    Ok(_) => {
                        let block = in_block.at().await.map_err(|e| Error::Rpc {
                            item: call.into(),
                            reason: e.to_string(),
                        })?;
                        Ok(block.block_number())
                    }
                    Err(TransactionEventsError::ExtrinsicFailed(DispatchError::Module(m))) => {
                        let (pallet, error) = match m.details() {
                            Ok(d) => (d.pallet.name().to_string(), d.variant.name.clone()),
                            Err(_) => ("unknown".into(), format!("{:?}", m.bytes())),
                        };
                        Err(Error::Dispatch {
                            call: call.into(),
                            pallet,
                            error,
                        })
                    }
                    Err(e) => Err(Error::Rejected {
                        call: call.into(),
                        reason: e.to_string(),
                    }),
                };
            }
            Err(Error::Rejected {
                call: call.into(),
                reason: "the node closed the transaction status stream".into(),
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Err(Error::Timeout {
                item: call.into(),
                seconds: self.timeout.as_secs(),
            }),
            Ok(result) => result,
        }
    }
}

fn check_lengths(call: &str, uids: &[u16], values: &[u16]) -> Result<(), Error> {
    if uids.len() != values.len() {
        return Err(Error::Invalid {
            call: call.into(),
            reason: format!("{} uids but {} weights", uids.len(), values.len()),
        });
    }
    Ok(())
}

fn has_runtime_api(at: &AtBlock, api: &str, method: &str) -> bool {
    at.metadata_ref()
        .runtime_api_trait_by_name(api)
        .and_then(|t| t.method_by_name(method))
        .is_some()
}

fn has_storage(at: &AtBlock, pallet: &str, item: &str) -> bool {
    at.metadata_ref()
        .pallet_by_name(pallet)
        .and_then(|p| p.storage())
        .and_then(|s| s.entry_by_name(item))
        .is_some()
}

#[cfg(test)]
mod stake_tests {
    use super::*;

    #[test]
    fn stakes_that_overflow_saturate() {
        let raw = RawNeuron {
            hotkey: [1; 32],
            coldkey: [2; 32],
            uid: 3,
            active: true,
            stake: vec![([4; 32], u64::MAX), ([5; 32], 7)],
            last_update: 0,
            validator_permit: false,
        };
        let neuron = Neuron::from(raw);
        assert_eq!(neuron.stake, u64::MAX);
        assert_eq!(neuron.alpha_stake, u64::MAX);
    }
}
