//! The devnet chain through its public API: signed extrinsics, the block clock, subtensor's
//! `set_weights` checks, and several handles (processes) on one file.

use std::sync::Arc;
use std::time::Duration;

use subtensor::devnet::{Call, DevnetChain, Extrinsic};
use subtensor::wallet::Signer;
use subtensor::{Chain, ChainError};

fn key() -> Signer {
    Signer::generate().expect("key").0
}

/// A devnet with netuid 1 (tempo 100, rate limit 10), a validator (uid 0, permit), a miner
/// (uid 1) and a second neuron without permit (uid 2).
fn devnet(dir: &std::path::Path) -> (DevnetChain, Signer, Signer, Signer) {
    let chain = DevnetChain::open(&dir.join("devnet.sqlite"), 60_000).expect("opens");
    chain.create_subnet(1, 100, 10).expect("subnet");
    let (validator, miner, other) = (key(), key(), key());
    for (signer, permit) in [(&validator, true), (&miner, false), (&other, false)] {
        chain
            .register_neuron(1, signer.account(), key().account(), 1000, permit)
            .expect("register");
    }
    (chain, validator, miner, other)
}

#[tokio::test]
async fn extrinsics_signed_elsewhere_are_verified_and_replays_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, _, miner, other) = devnet(dir.path());
    let genesis = chain.genesis();
    let commit = |data: &[u8]| Call::SetCommitment {
        netuid: 1,
        data: data.to_vec(),
    };

    let nonce = chain.nonce(&miner.account()).expect("nonce");
    assert_eq!(nonce, 0);
    let xt = Extrinsic::sign(&genesis, &miner, nonce, commit(b"alice/data:1:abc"));
    let block = chain.submit(&xt).expect("applied");
    assert_eq!(chain.nonce(&miner.account()).expect("nonce"), 1);
    let err = chain.submit(&xt).expect_err("replayed");
    assert!(
        matches!(
            err,
            ChainError::BadNonce {
                nonce: 0,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("set_commitment:"), "{err}");

    // Signed by someone else in the miner's name.
    let mut forged = Extrinsic::sign(&genesis, &other, 1, commit(b"evil/data:1:abc"));
    forged.signer = miner.account();
    let err = chain.submit(&forged).expect_err("forged");
    assert!(matches!(err, ChainError::BadSignature { .. }), "{err}");
    // The arguments changed after signing.
    let mut tampered = Extrinsic::sign(&genesis, &miner, 1, commit(b"alice/data:1:abc"));
    tampered.call = commit(b"alice/data:1:xyz");
    let err = chain.submit(&tampered).expect_err("tampered");
    assert!(matches!(err, ChainError::BadSignature { .. }), "{err}");
    // Signed for another devnet.
    let foreign = Extrinsic::sign(&[9; 32], &miner, 1, commit(b"alice/data:1:abc"));
    let err = chain.submit(&foreign).expect_err("other genesis");
    assert!(matches!(err, ChainError::BadSignature { .. }), "{err}");

    // Failed extrinsics changed nothing: no nonce used, no commitment replaced.
    assert_eq!(chain.nonce(&miner.account()).expect("nonce"), 1);
    let commitments = chain.commitments(1).await.expect("commitments");
    assert_eq!(commitments.len(), 1);
    assert_eq!(commitments[0].data, b"alice/data:1:abc");
    assert_eq!(commitments[0].block, block);
    assert_eq!(commitments[0].uid, Some(1));

    // The trait's calls use the next nonce.
    chain
        .set_commitment(&miner, 1, b"alice/data:1:def")
        .await
        .expect("commit");
    assert_eq!(chain.nonce(&miner.account()).expect("nonce"), 2);
}

#[tokio::test]
async fn the_block_clock_ticks_with_wall_time_and_with_every_extrinsic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("devnet.sqlite");
    let chain = DevnetChain::open(&path, 20).expect("opens");
    chain.create_subnet(1, 10, 0).expect("subnet");
    let miner = key();
    chain
        .register_neuron(1, miner.account(), key().account(), 0, false)
        .expect("register");
    let start = chain.current_block().await.expect("block");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = chain.current_block().await.expect("block");
    assert!(
        later >= start + 5,
        "{start} -> {later} after 300 ms at 20 ms/block"
    );

    let b1 = chain.set_commitment(&miner, 1, b"a").await.expect("commit");
    let b2 = chain.set_commitment(&miner, 1, b"b").await.expect("commit");
    assert!(b1 > later && b2 > b1, "{later} {b1} {b2}");
    assert!(chain.current_block().await.expect("block") >= b2);

    // Reopened with another block time: genesis and block time are the file's.
    drop(chain);
    let chain = DevnetChain::open(&path, 3_600_000).expect("reopens");
    let after = chain.current_block().await.expect("block");
    assert!(after >= b2, "the clock never goes back: {after} < {b2}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(chain.current_block().await.expect("block") > after);

    let skipped = chain.advance_blocks(1000).expect("advance");
    assert!(skipped >= after + 1000);
    assert_eq!(
        chain.metagraph(1).await.expect("metagraph").block / 1000,
        skipped / 1000
    );
}

#[tokio::test]
async fn set_weights_follows_subtensors_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, validator, miner, other) = devnet(dir.path());
    let stranger = key();
    let set = |signer: &Signer, uids: &[u16], weights: &[u16], version: u64| {
        let (signer, uids, weights) = (signer.clone(), uids.to_vec(), weights.to_vec());
        let chain = &chain;
        async move {
            chain
                .set_weights(&signer, 1, &uids, &weights, version)
                .await
        }
    };
    let invalid = |e: ChainError, what: &str| {
        assert!(
            matches!(&e, ChainError::Invalid { call: "set_weights", reason } if reason.contains(what)),
            "{what}: {e}"
        );
    };

    invalid(
        set(&validator, &[1, 2], &[1], 0).await.expect_err("len"),
        "2 uids but 1 weights",
    );
    invalid(
        set(&validator, &[0, 1, 2, 0], &[1, 1, 1, 1], 0)
            .await
            .expect_err("too many"),
        "the subnet has 3 neurons",
    );
    invalid(
        set(&validator, &[1, 1], &[1, 2], 0).await.expect_err("dup"),
        "uid 1 appears twice",
    );
    invalid(
        set(&validator, &[1, 7], &[1, 2], 0).await.expect_err("uid"),
        "uid 7 does not exist",
    );
    let err = set(&stranger, &[1], &[1], 0).await.expect_err("stranger");
    assert!(
        matches!(err, ChainError::NotRegistered { netuid: 1, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&stranger.account().to_ss58()),
        "{err}"
    );
    let err = set(&miner, &[2], &[1], 0).await.expect_err("no permit");
    assert!(matches!(err, ChainError::NoValidatorPermit { .. }), "{err}");
    set(&other, &[2], &[65535], 0)
        .await
        .expect("a self-weight needs no permit");
    let err = chain
        .set_weights(&validator, 9, &[1], &[1], 0)
        .await
        .expect_err("no subnet");
    assert!(
        matches!(err, ChainError::UnknownNetuid { netuid: 9, .. }),
        "{err}"
    );

    chain.set_weights_version_key(1, 5).expect("sudo");
    let err = set(&validator, &[1], &[1], 4).await.expect_err("old key");
    assert_eq!(
        err,
        ChainError::IncorrectVersionKey {
            sent: 4,
            required: 5
        }
    );
    let first = set(&validator, &[1, 2], &[65535, 100], 5)
        .await
        .expect("set");
    assert_eq!(
        chain.weights(1, 0).await.expect("weights"),
        (vec![(1, 65535), (2, 100)], Some(first))
    );
    let meta = chain.metagraph(1).await.expect("metagraph");
    assert_eq!(meta.params.weights_version_key, 5);
    assert_eq!(meta.neuron(0).expect("validator").last_update, first);

    // Rate limit 10: blocks_left counts down with the chain.
    let err = set(&validator, &[1], &[1], 5).await.expect_err("too fast");
    let ChainError::RateLimited { blocks_left } = err else {
        panic!("{err}")
    };
    assert!((1..=10).contains(&blocks_left), "{blocks_left}");
    chain.advance_blocks(blocks_left - 1).expect("advance");
    let err = set(&validator, &[1], &[1], 5)
        .await
        .expect_err("still too fast");
    assert_eq!(err, ChainError::RateLimited { blocks_left: 1 });
    chain.advance_blocks(1).expect("advance");
    let second = set(&validator, &[1], &[7], 6).await.expect("allowed again");
    assert_eq!(
        chain.weights(1, 0).await.expect("weights"),
        (vec![(1, 7)], Some(second)),
        "a new set replaces the old one"
    );

    chain.set_commit_reveal(1, true).expect("sudo");
    assert!(
        chain
            .metagraph(1)
            .await
            .expect("metagraph")
            .params
            .commit_reveal_enabled
    );
    chain.advance_blocks(100).expect("advance");
    let err = set(&validator, &[1], &[1], 6)
        .await
        .expect_err("commit-reveal");
    assert_eq!(err, ChainError::CommitRevealEnabled { netuid: 1 });
}

#[tokio::test]
async fn admin_calls_refuse_bad_input_and_reregistration_keeps_the_uid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, validator, _, _) = devnet(dir.path());
    let err = chain.create_subnet(2, 0, 10).expect_err("tempo 0");
    assert!(err.to_string().contains("tempo 0"), "{err}");
    let err = chain
        .register_neuron(3, key().account(), key().account(), 0, false)
        .expect_err("no subnet");
    assert!(
        matches!(err, ChainError::UnknownNetuid { netuid: 3, .. }),
        "{err}"
    );
    assert!(chain.set_weights_version_key(3, 1).is_err());
    assert_eq!(
        chain
            .register_neuron(1, validator.account(), key().account(), 0, false)
            .expect("again"),
        0
    );
    // Updating the subnet keeps the owner's version key.
    chain.set_weights_version_key(1, 7).expect("sudo");
    chain.create_subnet(1, 360, 100).expect("update");
    let meta = chain.metagraph(1).await.expect("metagraph");
    assert_eq!(
        (
            meta.params.tempo,
            meta.params.weights_rate_limit,
            meta.params.weights_version_key
        ),
        (360, 100, 7)
    );
    assert!(meta.neuron(0).expect("validator").validator_permit);
}

#[test]
fn several_handles_on_one_file_see_each_other_and_never_share_a_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("devnet.sqlite");
    let setup = DevnetChain::open(&path, 60_000).expect("opens");
    setup.create_subnet(1, 100, 0).expect("subnet");
    let miners: Vec<Signer> = (0..4).map(|_| key()).collect();
    for m in &miners {
        setup
            .register_neuron(1, m.account(), key().account(), 0, false)
            .expect("register");
    }
    // One handle (a process's connection) per thread, each committing repeatedly.
    let threads: Vec<_> = miners
        .iter()
        .cloned()
        .map(|miner| {
            let path = path.clone();
            std::thread::spawn(move || {
                let chain = DevnetChain::open(&path, 60_000).expect("opens");
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                (0..5)
                    .map(|i| {
                        runtime
                            .block_on(chain.set_commitment(
                                &miner,
                                1,
                                format!("m/d:1:{i}").as_bytes(),
                            ))
                            .expect("commit")
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut blocks: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    let total = blocks.len();
    blocks.sort_unstable();
    blocks.dedup();
    assert_eq!(
        blocks.len(),
        total,
        "every extrinsic has a block of its own"
    );
    let chain: Arc<dyn Chain> = Arc::new(setup);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let commitments = runtime.block_on(chain.commitments(1)).expect("commitments");
    assert_eq!(
        commitments.len(),
        4,
        "one commitment per hotkey, the latest"
    );
    assert!(commitments.iter().all(|c| c.data.ends_with(b":4")));
}
