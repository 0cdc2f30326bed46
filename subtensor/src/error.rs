//! Why a subtensor call failed. Every variant names the pallet item or call it came from; none
//! carries a secret (extrinsics are logged by call name only, never their signed bytes).

/// A failed chain read or extrinsic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The node could not be reached or refused the connection.
    #[error("cannot connect to subtensor at {endpoint}: {reason}")]
    Connect {
        /// The endpoint tried.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("{item}: no answer from subtensor within {seconds} s")]
    Timeout {
        /// The storage item, runtime API or call.
        item: String,
        /// The timeout.
        seconds: u64,
    },
    /// The subnet does not exist.
    #[error("{item}: netuid {netuid} does not exist on this chain")]
    UnknownNetuid {
        /// Where this was found out.
        item: String,
        /// The subnet.
        netuid: u16,
    },
    /// The hotkey has no uid on the subnet.
    #[error("{item}: hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered {
        /// The call or item.
        item: String,
        /// The hotkey (SS58).
        hotkey: String,
        /// The subnet.
        netuid: u16,
    },
    /// The extrinsic was included but failed with a pallet error (`ExtrinsicFailed`).
    #[error("{call}: failed on chain with {pallet}::{error}")]
    Dispatch {
        /// `Pallet.call`.
        call: String,
        /// The pallet that raised the error.
        pallet: String,
        /// The error variant's name, e.g. `SettingWeightsTooFast`.
        error: String,
    },
    /// The node refused the extrinsic before inclusion (invalid, bad nonce, custom validity
    /// error of subtensor's transaction extension, dropped).
    #[error("{call}: rejected by the node: {reason}")]
    Rejected {
        /// `Pallet.call`.
        call: String,
        /// The node's reason.
        reason: String,
    },
    /// The subnet takes only timelocked (CRv3) weight commits, which this client does not
    /// produce.
    #[error(
        "{call}: netuid {netuid} requires timelocked weight commits \
         (commit_timelocked_weights), which are not supported yet"
    )]
    TimelockRequired {
        /// The call that is missing or refused.
        call: String,
        /// The subnet.
        netuid: u16,
    },
    /// The chain's metadata lacks an item or call we need, or our arguments do not fit it.
    #[error("{item}: {reason}")]
    Metadata {
        /// The item or call.
        item: String,
        /// Why.
        reason: String,
    },
    /// An RPC request failed (after the client's own retries).
    #[error("{item}: {reason}")]
    Rpc {
        /// The item or call.
        item: String,
        /// Why.
        reason: String,
    },
    /// The node's answer did not decode as the metadata says it should.
    #[error("{item}: cannot decode the answer: {reason}")]
    Decode {
        /// The item.
        item: String,
        /// Why.
        reason: String,
    },
    /// Our own arguments are invalid (caught before sending).
    #[error("{call}: {reason}")]
    Invalid {
        /// The call.
        call: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The pallet error's name when this is a dispatch error (`SettingWeightsTooFast`, ...).
    pub fn dispatch_error(&self) -> Option<&str> {
        match self {
            Error::Dispatch { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Names of subtensor's custom transaction-validity codes
/// (`common/src/transaction_error.rs`, `CustomTransactionError` as `u8`), for messages.
pub fn custom_validity_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "ColdkeyInSwapSchedule",
        1 => "StakeAmountTooLow",
        2 => "BalanceTooLow",
        3 => "SubnetNotExists",
        4 => "HotkeyAccountDoesntExist",
        5 => "NotEnoughStakeToWithdraw",
        6 => "RateLimitExceeded",
        7 => "InsufficientLiquidity",
        8 => "SlippageTooHigh",
        9 => "TransferDisallowed",
        10 => "HotKeyNotRegisteredInNetwork",
        11 => "InvalidIpAddress",
        12 => "ServingRateLimitExceeded",
        13 => "InvalidPort",
        14 => "BadRequest",
        15 => "ZeroMaxAmount",
        16 => "InvalidRevealRound",
        17 => "CommitNotFound",
        18 => "CommitBlockNotInRevealRange",
        19 => "InputLengthsUnequal",
        20 => "UidNotFound",
        _ => return None,
    })
}

/// Adds the name of a subtensor custom validity code to a node's rejection message
/// ("Custom error: 6" → "... (RateLimitExceeded)").
pub fn explain_rejection(message: &str) -> String {
    let code = message
        .split("Custom error: ")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u8>().ok()
        })
        .and_then(custom_validity_name);
    match code {
        Some(name) => format!("{message} ({name})"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_codes_are_named() {
        assert_eq!(
            explain_rejection("Invalid Transaction: Custom error: 6"),
            "Invalid Transaction: Custom error: 6 (RateLimitExceeded)"
        );
        assert_eq!(
            explain_rejection("Transaction is outdated"),
            "Transaction is outdated"
        );
    }
}
