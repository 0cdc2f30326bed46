//! Exponential backoff for the few requests this crate sends itself (hf-hub retries its own
//! with the same policy, passed to its builder).

use std::future::Future;

use crate::config::RetryPolicy;

/// HTTP statuses worth another try: 408, 429, 500, 502, 503, 504.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Connection failures and timeouts are worth another try; a malformed request is not.
pub(crate) fn is_transient_error(err: &reqwest::Error) -> bool {
    err.is_timeout() || err.is_connect() || err.is_request() || err.is_body()
}

/// The sleep before try `attempt + 1` (`attempt` counts from 0): `base * 2^attempt`, capped at
/// 30 s.
pub(crate) fn backoff(policy: &RetryPolicy, attempt: usize) -> std::time::Duration {
    let factor = 1u32 << attempt.min(16);
    policy
        .base_delay
        .saturating_mul(factor)
        .min(std::time::Duration::from_secs(30))
}

/// Sends with `make` until the answer is not transient or the retries are spent; returns the
/// last answer.
pub(crate) async fn send<F, Fut>(
    policy: &RetryPolicy,
    mut make: F,
) -> Result<reqwest::Response, reqwest::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::Response, reqwest::Error>>,
{
    let mut attempt = 0;
    loop {
        let result = make().await;
        let transient = match &result {
            Ok(r) => is_transient_status(r.status().as_u16()),
            Err(e) => is_transient_error(e),
        };
        if !transient || attempt >= policy.retries {
            return result;
        }
        tracing::debug!(attempt, "transient hub failure, retrying");
        tokio::time::sleep(backoff(policy, attempt)).await;
        attempt += 1;
    }
}
