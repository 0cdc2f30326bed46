//! The online client's flows against the in-memory test node, through subxt's mock RPC client:
//! metagraph sync, commitments, plain weights with the rate limit and version key, hash
//! commit-reveal, the commitment space limit, and the failures an operator must be told about
//! in one line (unreachable node, unknown netuid, unregistered hotkey, a node that stops
//! answering).

use std::time::{Duration, Instant};

use subtensor::testnode::{SubnetConfig, TestNode};
use subtensor::weights::{commit_hash, random_salt};
use subtensor::{Error, Keypair, Network, Subtensor};
use subxt_signer::sr25519::dev;

const NETUID: u16 = 3;

async fn client(node: &TestNode) -> Subtensor {
    Subtensor::from_rpc(node.rpc_client(), "test node", Duration::from_secs(10))
        .await
        .expect("client connects to the test node")
}

fn key(k: &Keypair) -> [u8; 32] {
    k.public_key().0
}

/// A subnet with a validator (alice, permit) and two miners (bob, charlie).
fn subnet(config: SubnetConfig) -> TestNode {
    let node = TestNode::new();
    node.add_subnet(NETUID, config);
    node.register(NETUID, key(&dev::alice()), key(&dev::ferdie()), 5_000, true);
    node.register(NETUID, key(&dev::bob()), key(&dev::ferdie()), 10, false);
    node.register(NETUID, key(&dev::charlie()), key(&dev::ferdie()), 20, false);
    node
}

#[tokio::test]
async fn metagraph_sync_reads_neurons_and_hyperparameters() {
    let node = subnet(SubnetConfig {
        tempo: 12,
        weights_rate_limit: 7,
        weights_version_key: 3,
        commit_reveal: true,
        reveal_period: 2,
    });
    node.advance(30);
    let chain = client(&node).await;
    let mg = chain.metagraph(NETUID).await.unwrap();
    assert_eq!(mg.block, node.block_number());
    assert_eq!(mg.params.tempo, 12);
    assert_eq!(mg.params.weights_rate_limit, 7);
    assert_eq!(mg.params.weights_version_key, 3);
    assert!(mg.params.commit_reveal_enabled);
    assert_eq!(mg.params.reveal_period, 2);
    assert_eq!(mg.epoch_index, Some(node.epoch_index(NETUID)));
    let uids: Vec<u16> = mg.neurons.iter().map(|n| n.uid).collect();
    assert_eq!(uids, vec![0, 1, 2]);
    assert_eq!(mg.neurons[0].hotkey.0, key(&dev::alice()));
    assert_eq!(mg.neurons[0].coldkey.0, key(&dev::ferdie()));
    assert_eq!(mg.neurons[0].stake, 5_000);
    assert!(mg.neurons[0].validator_permit);
    assert!(!mg.neurons[2].validator_permit);
    assert_eq!(mg.neurons[2].stake, 20);
    assert_eq!(chain.current_block().await.unwrap(), node.block_number());
    // The client speaks the legacy RPCs a subtensor node serves.
    let calls = node.calls();
    assert!(
        calls.contains(&"state_call:NeuronInfoRuntimeApi_get_neurons_lite".to_string()),
        "{calls:?}"
    );
    assert!(calls.contains(&"chain_getFinalizedHead".to_string()));
}

#[tokio::test]
async fn an_unknown_netuid_is_named() {
    let node = subnet(SubnetConfig::default());
    let chain = client(&node).await;
    let err = chain.metagraph(99).await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownNetuid { netuid: 99, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "SubnetInfoRuntimeApi.get_subnet_hyperparams: netuid 99 does not exist on this chain"
    );
}

#[tokio::test]
async fn commitments_are_written_signed_and_read_back_with_their_block() {
    let node = subnet(SubnetConfig::default());
    let chain = client(&node).await;
    let text = b"acme/data:c1:0123456789abcdef0123456789abcdef01234567";
    let block = chain
        .set_commitment(&dev::bob(), NETUID, text)
        .await
        .unwrap();
    assert_eq!(block, node.block_number());
    // Another miner's commitment, and a second one from bob that replaces the first.
    node.put_commitment(NETUID, key(&dev::charlie()), b"zeta/set:c1:abc");
    let second = chain
        .set_commitment(&dev::bob(), NETUID, b"acme/data:c1:ffff")
        .await
        .unwrap();
    assert!(second > block);
    let mut found = chain.commitments(NETUID).await.unwrap();
    found.sort_by_key(|c| c.block);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].hotkey, key(&dev::charlie()));
    assert_eq!(found[0].data.as_deref().unwrap(), b"zeta/set:c1:abc");
    assert_eq!(found[1].hotkey, key(&dev::bob()));
    assert_eq!(found[1].block, second);
    assert_eq!(found[1].data.as_deref().unwrap(), b"acme/data:c1:ffff");

    // Too long for one Raw field: refused before anything is signed.
    let err = chain
        .set_commitment(&dev::bob(), NETUID, &[b'x'; 129])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("one Raw field"), "{err}");
}

#[tokio::test]
async fn an_unregistered_hotkey_is_named_before_signing() {
    let node = subnet(SubnetConfig::default());
    let chain = client(&node).await;
    let eve = dev::eve();
    let err = chain
        .set_commitment(&eve, NETUID, b"a/b:c:d")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotRegistered { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("Commitments.set_commitment: hotkey 5"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("is not registered on netuid {NETUID}")),
        "{text}"
    );
    assert!(!text.contains('\n'));
    let err = chain
        .set_weights(&eve, NETUID, &[0], &[1], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotRegistered { .. }), "{err}");
}

#[tokio::test]
async fn the_commitment_space_limit_is_reported() {
    let node = subnet(SubnetConfig {
        tempo: 1000,
        ..SubnetConfig::default()
    });
    let chain = client(&node).await;
    // Each call costs max(100, bytes) of the 3100 bytes per epoch: the 32nd does not fit.
    for i in 0..31 {
        chain
            .set_commitment(&dev::bob(), NETUID, format!("a/b:c:{i}").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("commit {i}: {e}"));
    }
    let err = chain
        .set_commitment(&dev::bob(), NETUID, b"a/b:c:last")
        .await
        .unwrap_err();
    assert_eq!(err.dispatch_error(), Some("SpaceLimitExceeded"), "{err}");
    assert_eq!(
        err.to_string(),
        "Commitments.set_commitment: failed on chain with Commitments::SpaceLimitExceeded"
    );
}

#[tokio::test]
async fn set_weights_lands_and_the_rate_limit_and_version_key_are_reported() {
    let node = subnet(SubnetConfig {
        weights_rate_limit: 5,
        weights_version_key: 10,
        ..SubnetConfig::default()
    });
    let chain = client(&node).await;
    let alice = dev::alice();

    let err = chain
        .set_weights(&alice, NETUID, &[1, 2], &[1, 3], 9)
        .await
        .unwrap_err();
    assert_eq!(
        err.dispatch_error(),
        Some("IncorrectWeightVersionKey"),
        "{err}"
    );

    let block = chain
        .set_weights(&alice, NETUID, &[1, 2], &[16384, 49151], 10)
        .await
        .unwrap();
    assert_eq!(block, node.block_number());
    let row = chain.weights(NETUID, 0).await.unwrap();
    assert_eq!(row, node.weights_of(NETUID, 0).unwrap());
    assert_eq!(row.iter().map(|(u, _)| *u).collect::<Vec<_>>(), vec![1, 2]);
    assert!(row[1].1 > row[0].1 * 2);
    let mg = chain.metagraph(NETUID).await.unwrap();
    assert_eq!(mg.neurons[0].last_update, block);

    // Again at once: the chain's rate limit, by name.
    let err = chain
        .set_weights(&alice, NETUID, &[1], &[1], 10)
        .await
        .unwrap_err();
    assert_eq!(err.dispatch_error(), Some("SettingWeightsTooFast"), "{err}");
    assert!(err
        .to_string()
        .starts_with("SubtensorModule.set_weights: failed on chain"));
    node.advance(5);
    chain
        .set_weights(&alice, NETUID, &[1], &[1], 10)
        .await
        .unwrap();

    // Client-side checks need no round trip.
    let err = chain
        .set_weights(&alice, NETUID, &[1, 2], &[1], 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2 uids but 1 weights"), "{err}");
}

#[tokio::test]
async fn hash_commit_reveal_round_trip() {
    let node = subnet(SubnetConfig {
        tempo: 10,
        weights_rate_limit: 2,
        commit_reveal: true,
        reveal_period: 1,
        ..SubnetConfig::default()
    });
    let chain = client(&node).await;
    let alice = dev::alice();
    let (uids, values, version_key) = (vec![1u16, 2], vec![20_000u16, 45_535], 0u64);

    // Plain set_weights is refused on a commit-reveal subnet.
    let err = chain
        .set_weights(&alice, NETUID, &uids, &values, version_key)
        .await
        .unwrap_err();
    assert_eq!(err.dispatch_error(), Some("CommitRevealEnabled"), "{err}");

    let salt = random_salt();
    let hash = commit_hash(&key(&alice), NETUID, &uids, &values, &salt, version_key);
    let commit_block = chain.commit_weights(&alice, NETUID, hash).await.unwrap();
    let commits = chain.weight_commits(NETUID, &key(&alice)).await.unwrap();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].hash, hash);
    assert_eq!(commits[0].block, commit_block);
    let commit_epoch = commits[0].epoch;
    assert_eq!(commit_epoch, node.epoch_index(NETUID));

    // Too early: same epoch.
    let err = chain
        .reveal_weights(&alice, NETUID, &uids, &values, &salt, version_key)
        .await
        .unwrap_err();
    assert_eq!(err.dispatch_error(), Some("RevealTooEarly"), "{err}");

    node.advance_to_epoch(NETUID, commit_epoch + 1);
    assert_eq!(
        chain.epoch_index(NETUID).await.unwrap(),
        Some(commit_epoch + 1)
    );
    // A wrong salt does not match the commit.
    let err = chain
        .reveal_weights(&alice, NETUID, &uids, &values, &[1, 2, 3], version_key)
        .await
        .unwrap_err();
    assert_eq!(
        err.dispatch_error(),
        Some("InvalidRevealCommitHashNotMatch"),
        "{err}"
    );
    chain
        .reveal_weights(&alice, NETUID, &uids, &values, &salt, version_key)
        .await
        .unwrap();
    assert!(chain
        .weight_commits(NETUID, &key(&alice))
        .await
        .unwrap()
        .is_empty());
    let row = chain.weights(NETUID, 0).await.unwrap();
    assert_eq!(row.iter().map(|(u, _)| *u).collect::<Vec<_>>(), uids);

    // Committing again right after the reveal is rate limited (the reveal set weights).
    let salt = random_salt();
    let hash = commit_hash(&key(&alice), NETUID, &uids, &values, &salt, version_key);
    let err = chain
        .commit_weights(&alice, NETUID, hash)
        .await
        .unwrap_err();
    assert_eq!(
        err.dispatch_error(),
        Some("CommittingWeightsTooFast"),
        "{err}"
    );
    node.advance(2);

    // A commit left past its reveal epoch expires.
    let salt = random_salt();
    let hash = commit_hash(&key(&alice), NETUID, &uids, &values, &salt, version_key);
    let _ = chain.commit_weights(&alice, NETUID, hash).await.unwrap();
    let epoch = node.epoch_index(NETUID);
    node.advance_to_epoch(NETUID, epoch + 2);
    let err = chain
        .reveal_weights(&alice, NETUID, &uids, &values, &salt, version_key)
        .await
        .unwrap_err();
    assert_eq!(err.dispatch_error(), Some("ExpiredWeightCommit"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_within_the_timeout() {
    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let network = Network::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
    let start = Instant::now();
    let err = Subtensor::connect(&network, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot connect to subtensor at ws://127.0.0.1:{port}"
        )),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
}

#[tokio::test]
async fn a_node_that_stops_answering_times_out_with_the_item_named() {
    let node = subnet(SubnetConfig::default());
    let chain = Subtensor::from_rpc(node.rpc_client(), "test node", Duration::from_secs(1))
        .await
        .unwrap();
    node.set_hang(true);
    let start = Instant::now();
    let err = chain.metagraph(NETUID).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(
        err.to_string(),
        "chain_getFinalizedHead: no answer from subtensor within 1 s"
    );
}

#[tokio::test]
async fn the_websocket_reconnects_when_the_node_comes_back() {
    let node = subnet(SubnetConfig::default());
    let (addr, server) = node.serve_ws().await.unwrap();
    let network = Network::parse(&format!("ws://{addr}")).unwrap();
    let chain = Subtensor::connect(&network, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(chain.current_block().await.unwrap(), node.block_number());

    // The node goes away and comes back on the same address.
    server.stop().unwrap();
    server.stopped().await;
    let (_, _server) = node.serve_ws_on(addr).await.unwrap();
    node.advance(3);
    let mut block = None;
    for _ in 0..50 {
        match chain.current_block().await {
            Ok(b) => {
                block = Some(b);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(block, Some(node.block_number()));
    // Extrinsics work on the new connection too.
    chain
        .set_commitment(&dev::bob(), NETUID, b"a/b:c:d")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_hotkey_from_an_expanded_private_key_signs_extrinsics() {
    let node = subnet(SubnetConfig::default());
    let seed = [9u8; 32];
    let public = Keypair::from_secret_key(seed).unwrap().public_key().0;
    let expanded = schnorrkel::MiniSecretKey::from_bytes(&seed)
        .unwrap()
        .expand(schnorrkel::ExpansionMode::Ed25519);
    let hotkey = subtensor::Hotkey::from_private_key(&expanded.to_bytes(), public).unwrap();
    assert!(matches!(hotkey, subtensor::Hotkey::Expanded(_)));
    node.register(NETUID, public, public, 0, false);
    let chain = client(&node).await;
    let block = chain
        .set_commitment(&hotkey, NETUID, b"x/y:1:abc")
        .await
        .unwrap();
    let found = chain.commitments(NETUID).await.unwrap();
    assert!(found.iter().any(|c| c.hotkey == public && c.block == block));
}

#[tokio::test]
async fn the_metagraph_from_storage_equals_the_runtime_apis_answer() {
    let node = subnet(SubnetConfig {
        tempo: 12,
        weights_rate_limit: 7,
        weights_version_key: 3,
        commit_reveal: true,
        reveal_period: 2,
    });
    node.advance(3);
    let apis = client(&node).await;
    let storage = client(&node)
        .await
        .with_metagraph_source(subtensor::client::MetagraphSource::Storage);
    let before = node.calls().len();
    let from_storage = storage.metagraph(NETUID).await.unwrap();
    let calls = node.calls()[before..].to_vec();
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("NeuronInfoRuntimeApi") || c.contains("SubnetInfoRuntimeApi")),
        "{calls:?}"
    );
    // Storage has no `get_subnet_state`: the SDK's TAO and total stakes are unknown there, and
    // alpha stake falls back to `TotalHotkeyAlpha`.
    let mut from_apis = apis.metagraph(NETUID).await.unwrap();
    for n in &mut from_apis.neurons {
        assert!(n.tao_stake.is_some() && n.total_stake.is_some(), "{n:?}");
        (n.tao_stake, n.total_stake) = (None, None);
    }
    assert_eq!(from_storage, from_apis);
    assert_eq!(from_storage.params.reveal_period, 2);
    assert_eq!(from_storage.neurons[0].stake, 5_000);
    let err = storage.metagraph(99).await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownNetuid { netuid: 99, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn stakes_are_the_sdk_s_alpha_tao_and_total_from_get_subnet_state() {
    let node = subnet(SubnetConfig::default());
    // Charlie also has TAO staked on root: his total stake is alpha + 0.18 × TAO.
    node.set_tao_stake(NETUID, 2, 1_000);
    let chain = client(&node).await;
    let mg = chain.metagraph(NETUID).await.unwrap();
    let calls = node.calls();
    assert!(
        calls.contains(&"state_call:SubnetInfoRuntimeApi_get_subnet_state".to_string()),
        "{calls:?}"
    );
    let stakes: Vec<(u64, Option<u64>, Option<u64>)> = mg
        .neurons
        .iter()
        .map(|n| (n.alpha_stake, n.tao_stake, n.total_stake))
        .collect();
    assert_eq!(
        stakes,
        vec![
            (5_000, Some(0), Some(5_000)),
            (10, Some(0), Some(10)),
            (20, Some(1_000), Some(200)),
        ]
    );
    // `stake` stays the NeuronInfoLite sum.
    assert_eq!(mg.neurons[2].stake, 20);
    let json = serde_json::to_value(&mg).unwrap();
    assert_eq!(json["neurons"][2]["total_stake"], 200);
    assert_eq!(json["neurons"][2]["alpha_stake"], 20);
    assert_eq!(json["neurons"][2]["tao_stake"], 1_000);
}

#[test]
fn the_test_node_s_subnet_state_decodes_with_the_recorded_runtime_s_type() {
    use parity_scale_codec::Decode;
    use subtensor::client::decode_subnet_state;
    use subtensor::testnode::{encode_subnet_state, StateEntry, METADATA_V15};
    let metadata = subxt::metadata::Metadata::decode(&mut &METADATA_V15[..]).unwrap();
    let entry = |i: u8, alpha, tao, total| StateEntry {
        hotkey: [i; 32],
        coldkey: [9; 32],
        validator_permit: i == 0,
        last_update: 7,
        alpha_stake: alpha,
        tao_stake: tao,
        total_stake: total,
    };
    let bytes = encode_subnet_state(NETUID, &[entry(0, 5, 0, 5), entry(1, 1 << 40, 3, 99)]);
    let stakes = decode_subnet_state(&metadata, &bytes).unwrap().unwrap();
    assert_eq!(stakes.len(), 2);
    assert_eq!(
        (
            stakes[1].hotkey,
            stakes[1].alpha,
            stakes[1].tao,
            stakes[1].total
        ),
        ([1; 32], 1 << 40, 3, 99)
    );
    assert_eq!(decode_subnet_state(&metadata, &[0]).unwrap(), None);
    let err = decode_subnet_state(&metadata, &[bytes.clone(), vec![0]].concat()).unwrap_err();
    assert!(err.contains("trailing"), "{err}");
}
