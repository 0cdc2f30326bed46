//! The coordinator on subtensor: the [`SubtensorChain`] adapter and weight commit-reveal through
//! the validator's SQLite state, against the subtensor crate's in-memory node (driven through
//! subxt's mock RPC client). A "restart" drops every client and the state, then opens the same
//! state file again.

use std::sync::Arc;
use std::time::Duration;

use coordinator::{commit, reveal_due};
use coordinator::{PendingCommit, State};
use subtensor::testnode::{SubnetConfig, TestNode};
use subtensor::wallet::Signer;
use subtensor::Subtensor;
use subtensor::SubtensorChain;
use subtensor::{Chain, ChainError};
use subxt_signer::sr25519::dev;

const NETUID: u16 = 2;

fn key(k: &subxt_signer::sr25519::Keypair) -> [u8; 32] {
    k.public_key().0
}

fn node(config: SubnetConfig) -> TestNode {
    let node = TestNode::new();
    node.add_subnet(NETUID, config);
    node.register(NETUID, key(&dev::alice()), key(&dev::ferdie()), 1_000, true);
    node.register(NETUID, key(&dev::bob()), key(&dev::ferdie()), 0, false);
    node.register(NETUID, key(&dev::charlie()), key(&dev::ferdie()), 0, false);
    node
}

async fn chain(node: &TestNode) -> Arc<SubtensorChain> {
    let client = Subtensor::from_rpc(node.rpc_client(), "test node", Duration::from_secs(10))
        .await
        .expect("connects");
    Arc::new(SubtensorChain::new(client))
}

fn commit_reveal_config() -> SubnetConfig {
    SubnetConfig {
        tempo: 10,
        weights_rate_limit: 3,
        weights_version_key: 0,
        commit_reveal: true,
        reveal_period: 1,
    }
}

#[tokio::test]
async fn commit_then_restart_then_reveal_in_the_reveal_epoch() {
    let node = node(commit_reveal_config());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("validator.sqlite");
    let signer = Signer::from_keypair(dev::alice());
    let emission = [(1u16, 16_384u16), (2, 65_535)];

    let commit_block = {
        let state = State::open(&db).unwrap();
        let chain = chain(&node).await;
        let block = commit(chain.as_ref(), &state, &signer, NETUID, &emission, 7)
            .await
            .unwrap();
        let open = state.open_weight_commits().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].commit_block, Some(block));
        assert_eq!(open[0].commit_epoch, Some(node.epoch_index(NETUID)));
        assert_eq!(open[0].uids, vec![1, 2]);
        assert_eq!(node.pending_commits(NETUID, &key(&dev::alice())).len(), 1);
        block
    }; // the coordinator "dies" here: state, client and chain are dropped

    let state = State::open(&db).unwrap();
    let chain = chain(&node).await;
    // Same epoch: too early, nothing is sent.
    let summary = reveal_due(chain.as_ref(), &state, &signer, NETUID)
        .await
        .unwrap();
    assert!(summary.revealed.is_empty());
    let commit_epoch = state.open_weight_commits().unwrap()[0]
        .commit_epoch
        .unwrap();
    assert_eq!(
        summary.waiting,
        vec![(Some(commit_block), commit_epoch + 1)]
    );
    assert_eq!(node.weights_of(NETUID, 0), None);

    node.advance_to_epoch(NETUID, commit_epoch + 1);
    let summary = reveal_due(chain.as_ref(), &state, &signer, NETUID)
        .await
        .unwrap();
    assert_eq!(summary.revealed.len(), 1);
    assert!(state.open_weight_commits().unwrap().is_empty());
    assert!(node.pending_commits(NETUID, &key(&dev::alice())).is_empty());
    let row = node.weights_of(NETUID, 0).expect("weights revealed");
    assert_eq!(row.iter().map(|(u, _)| *u).collect::<Vec<_>>(), vec![1, 2]);
    assert!(row[1].1 > 3 * row[0].1);
    // Nothing left to do.
    let summary = reveal_due(chain.as_ref(), &state, &signer, NETUID)
        .await
        .unwrap();
    assert_eq!(summary, Default::default());
}

#[tokio::test]
async fn a_commit_stored_but_never_sent_is_closed_and_a_late_one_expires() {
    let node = node(commit_reveal_config());
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("validator.sqlite")).unwrap();
    let chain = chain(&node).await;
    let signer = Signer::from_keypair(dev::alice());

    // Died between writing the commit and sending it.
    state
        .record_weight_commit(&PendingCommit {
            netuid: NETUID,
            hotkey: signer.account().to_ss58(),
            uids: vec![1],
            values: vec![65_535],
            salt: vec![1, 2, 3],
            version_key: 0,
            hash: "ab".repeat(32),
            commit_block: None,
            commit_epoch: None,
        })
        .unwrap();
    let summary = reveal_due(chain.as_ref(), &state, &signer, NETUID)
        .await
        .unwrap();
    assert_eq!(summary.expired, 1);
    assert!(state.open_weight_commits().unwrap().is_empty());

    // Sent, but the validator was down through the whole reveal epoch.
    commit(chain.as_ref(), &state, &signer, NETUID, &[(1, 100)], 0)
        .await
        .unwrap();
    let epoch = state.open_weight_commits().unwrap()[0]
        .commit_epoch
        .unwrap();
    node.advance_to_epoch(NETUID, epoch + 2);
    let summary = reveal_due(chain.as_ref(), &state, &signer, NETUID)
        .await
        .unwrap();
    assert_eq!((summary.expired, summary.revealed.len()), (1, 0));
    assert_eq!(node.weights_of(NETUID, 0), None);
}

#[tokio::test]
async fn chain_errors_become_the_coordinators_by_name() {
    let node = node(SubnetConfig {
        tempo: 10,
        weights_rate_limit: 4,
        ..SubnetConfig::default()
    });
    let chain = chain(&node).await;
    let validator = Signer::from_keypair(dev::alice());

    let mg = chain.metagraph(NETUID).await.unwrap();
    assert_eq!(mg.neurons.len(), 3);
    assert_eq!(mg.neuron_of(&validator.account()).unwrap().uid, 0);
    assert_eq!(mg.params.weights_rate_limit, 4);
    assert!(!mg.params.commit_reveal_enabled);

    let block = chain
        .set_weights(&validator, NETUID, &[1, 2], &[1, 1], 0)
        .await
        .unwrap();
    let (row, last) = chain.weights(NETUID, 0).await.unwrap();
    assert_eq!(last, Some(block));
    assert_eq!(row.len(), 2);
    match chain
        .set_weights(&validator, NETUID, &[1], &[1], 0)
        .await
        .unwrap_err()
    {
        // The refused extrinsic was itself included in a block.
        ChainError::RateLimited { blocks_left } => {
            assert_eq!(blocks_left, 4 - (node.block_number() - block))
        }
        other => panic!("{other}"),
    }

    let err = chain.metagraph(77).await.unwrap_err();
    assert_eq!(
        err,
        ChainError::UnknownNetuid {
            call: "metagraph",
            netuid: 77
        }
    );

    let eve = Signer::from_keypair(dev::eve());
    let err = chain
        .set_commitment(&eve, NETUID, b"a/b:c:d")
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::NotRegistered { .. }), "{err}");
    assert!(err.to_string().contains(&eve.account().to_ss58()), "{err}");

    // A miner's commitment is read back with its uid.
    let bob = Signer::from_keypair(dev::bob());
    let at = chain
        .set_commitment(
            &bob,
            NETUID,
            b"acme/data:1:0123456789abcdef0123456789abcdef01234567",
        )
        .await
        .unwrap();
    let found = chain.commitments(NETUID).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].uid, Some(1));
    assert_eq!(found[0].block, at);

    node.configure(NETUID, commit_reveal_config());
    node.advance(5);
    let err = chain
        .set_weights(&validator, NETUID, &[1], &[1], 0)
        .await
        .unwrap_err();
    assert_eq!(err, ChainError::CommitRevealEnabled { netuid: NETUID });
}
