//! The service's view of the chain: every read that fails for a transient reason (timeout,
//! disconnect; see [`crate::failure`]) is tried again with backoff and jitter until it answers
//! or `budget` has passed, each try logged with its cause and the next delay. An epoch that
//! loses its node mid-way therefore waits for it and goes on. Extrinsics are sent once: a
//! timed-out `set_weights` may still land, so its retry is the next epoch's business, which
//! reads the chain first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use subtensor::{AccountId, Chain, ChainError, CommitmentRecord, Metagraph, Signer};

use crate::backoff::Backoff;
use crate::failure::{of_chain, Severity};

/// A [`Chain`] whose reads are retried while they fail transiently.
pub struct RetryingChain {
    inner: Arc<dyn Chain>,
    base: Duration,
    max_delay: Duration,
    budget: Duration,
}

impl RetryingChain {
    /// Wraps `inner`: delays from `base` up to `max_delay`, giving up after `budget`.
    pub fn new(
        inner: Arc<dyn Chain>,
        base: Duration,
        max_delay: Duration,
        budget: Duration,
    ) -> Self {
        RetryingChain {
            inner,
            base,
            max_delay,
            budget,
        }
    }

    /// Runs `read` until it succeeds, fails for a reason that is not transient (the chain's
    /// rate limit is an answer, not a failure, for a read), or the budget is spent.
    async fn read<T, F, Fut>(&self, what: &str, read: F) -> Result<T, ChainError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>>,
    {
        let start = Instant::now();
        let mut backoff = Backoff::new(self.base, self.max_delay);
        loop {
            match read().await {
                Ok(v) => {
                    if backoff.attempts() > 0 {
                        tracing::info!(
                            read = what,
                            tries = backoff.attempts() + 1,
                            "chain answers again"
                        );
                    }
                    return Ok(v);
                }
                Err(e) if of_chain(&e) == Severity::Transient && start.elapsed() < self.budget => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        read = what,
                        attempt = backoff.attempts(),
                        cause = %e,
                        next_try_in_ms = delay.as_millis() as u64,
                        "chain read failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Chain for RetryingChain {
    async fn current_block(&self) -> Result<u64, ChainError> {
        self.read("current_block", || self.inner.current_block())
            .await
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        self.read("metagraph", || self.inner.metagraph(netuid))
            .await
    }

    async fn commitments(&self, netuid: u16) -> Result<Vec<CommitmentRecord>, ChainError> {
        self.read("commitments", || self.inner.commitments(netuid))
            .await
    }

    async fn set_commitment(
        &self,
        signer: &Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<u64, ChainError> {
        self.inner.set_commitment(signer, netuid, data).await
    }

    async fn set_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        self.inner
            .set_weights(signer, netuid, uids, weights, version_key)
            .await
    }

    async fn commit_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        hash: [u8; 32],
    ) -> Result<u64, ChainError> {
        self.inner.commit_weights(signer, netuid, hash).await
    }

    async fn reveal_weights(
        &self,
        signer: &Signer,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        salt: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        self.inner
            .reveal_weights(signer, netuid, uids, values, salt, version_key)
            .await
    }

    async fn weight_commit_epoch(
        &self,
        netuid: u16,
        hotkey: &AccountId,
        hash: [u8; 32],
    ) -> Result<Option<u64>, ChainError> {
        self.read("weight_commit_epoch", || {
            self.inner.weight_commit_epoch(netuid, hotkey, hash)
        })
        .await
    }

    async fn epoch_index(&self, netuid: u16) -> Result<Option<u64>, ChainError> {
        self.read("epoch_index", || self.inner.epoch_index(netuid))
            .await
    }

    async fn weights(
        &self,
        netuid: u16,
        validator_uid: u16,
    ) -> Result<(Vec<(u16, u16)>, Option<u64>), ChainError> {
        self.read("weights", || self.inner.weights(netuid, validator_uid))
            .await
    }
}
