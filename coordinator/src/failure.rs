//! Which failures the service retries and which it only reports (`docs/architecture.md`, "A
//! service that stays up"). Transient: the chain or the hub did not answer (timeouts,
//! disconnects, 5xx, rate limits, `SettingWeightsTooFast`); retried with backoff, the epoch
//! goes on. Permanent: the chain said no (no validator permit, deregistered hotkey, wrong
//! version key, an unknown netuid); reported every epoch while the loop keeps running, since an
//! operator can fix them on chain without restarting. Only invalid configuration ends the
//! process, and it is found at start-up.

use subtensor::ChainError;

use crate::epoch::EpochError;

/// How the service treats a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Retried soon, with backoff and jitter.
    Transient,
    /// Reported; the next epoch tries again (and reads the chain again).
    Permanent,
}

/// How a chain error is treated.
pub fn of_chain(e: &ChainError) -> Severity {
    match e {
        ChainError::Timeout { .. }
        | ChainError::Backend { .. }
        | ChainError::RateLimited { .. }
        // Another sender raced us for the nonce: the next try signs with a fresh one.
        | ChainError::BadNonce { .. } => Severity::Transient,
        ChainError::NotRegistered { .. }
        | ChainError::UnknownNetuid { .. }
        | ChainError::CommitRevealEnabled { .. }
        | ChainError::IncorrectVersionKey { .. }
        | ChainError::NoValidatorPermit { .. }
        | ChainError::SpaceLimitExceeded { .. }
        | ChainError::CommitmentSpaceUsed
        | ChainError::RevealWindow { .. }
        | ChainError::BadSignature { .. }
        | ChainError::Invalid { .. } => Severity::Permanent,
    }
}

/// How a failed epoch is treated.
pub fn of_epoch(e: &EpochError) -> Severity {
    match e {
        EpochError::Chain(c) => of_chain(c),
        // Remote workers reconnect on their own; a worker may be back in a moment.
        EpochError::NoWorkers => Severity::Transient,
        EpochError::NotRegistered(..) | EpochError::State(_) => Severity::Permanent,
    }
}

/// How a hub error met at start-up (model, eval set) is treated: the transport failed after the
/// client's own retries (5xx, timeouts, refused connections) or a file came back short, worth
/// another try; anything else names a repo, revision or token to fix.
pub fn of_hub(e: &hub::HubError) -> Severity {
    match e {
        hub::HubError::Io(_) | hub::HubError::Corrupt { .. } => Severity::Transient,
        _ => Severity::Permanent,
    }
}

/// How a subtensor client error met at start-up is treated: no connection or no answer is
/// transient; an answer that says no (an unknown netuid) is configuration.
pub fn of_subtensor(e: &subtensor::Error) -> Severity {
    match e {
        subtensor::Error::Connect { .. }
        | subtensor::Error::Timeout { .. }
        | subtensor::Error::Rpc { .. } => Severity::Transient,
        _ => Severity::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_examples_are_classified() {
        let transient = [
            ChainError::Timeout {
                call: "metagraph",
                seconds: 60,
            },
            ChainError::Backend {
                item: "metagraph",
                reason: "connection closed".into(),
            },
            ChainError::RateLimited { blocks_left: 3 },
        ];
        for e in &transient {
            assert_eq!(of_chain(e), Severity::Transient, "{e}");
        }
        let permanent = [
            ChainError::NoValidatorPermit {
                hotkey: "5F".into(),
                netuid: 1,
            },
            ChainError::NotRegistered {
                call: "set_weights",
                hotkey: "5F".into(),
                netuid: 1,
            },
            ChainError::Invalid {
                call: "set_weights",
                reason: "IncorrectWeightVersionKey".into(),
            },
        ];
        for e in &permanent {
            assert_eq!(of_chain(e), Severity::Permanent, "{e}");
        }
        assert_eq!(
            of_epoch(&EpochError::NotRegistered("5F".into(), 1)),
            Severity::Permanent
        );
        assert_eq!(
            of_hub(&hub::HubError::Io("503".into())),
            Severity::Transient
        );
        assert_eq!(
            of_hub(&hub::HubError::NotFound { repo: "a/b".into() }),
            Severity::Permanent
        );
    }
}
