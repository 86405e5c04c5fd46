//! Bounded retry with jitter for commits that lose an optimistic race or are throttled.

use crate::store::Head;
use crate::StoreError;
use std::future::Future;
use std::time::Duration;

/// How many times a command decides and commits before it answers 409.
pub const DEFAULT_ATTEMPTS: u32 = 12;

/// How many times a throttled attempt is tried again before the caller hears of it (and
/// answers 503): DynamoDB sheds load for a moment, so a few pauses usually see it through,
/// and more would only spend the function's time.
pub const THROTTLED_RETRIES: u32 = 3;

/// Runs `attempt` until it fails with neither a conflict nor throttling, at most
/// `attempts` times. Each retry after a conflict gets the head the failed condition saw
/// (when DynamoDB returned it), so it can decide again without a read, and waits a random
/// "full jitter" delay first. Throttling is retried at most [`THROTTLED_RETRIES`] times,
/// after longer delays.
pub async fn on_conflict<T, F, Fut>(attempts: u32, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut(Option<Head>) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut seen = None;
    let mut tries = 0;
    let mut throttled = 0;
    loop {
        tries += 1;
        match Box::pin(attempt(seen.take())).await {
            Err(StoreError::Conflict { current, .. }) if tries < attempts => {
                seen = current.map(|h| *h);
                pause(tries).await;
            }
            Err(StoreError::Throttled(code))
                if throttled < THROTTLED_RETRIES && tries < attempts =>
            {
                throttled += 1;
                tracing::warn!(%code, throttled, "DynamoDB throttled; retrying after a pause");
                pause_throttled(throttled).await;
            }
            other => return other,
        }
    }
}

/// Waits before retry number `tries` + 1: contenders that lost together must not retry
/// together, so the delay is a random "full jitter" in a window that doubles from 4 ms up
/// to 400 ms.
pub async fn pause(tries: u32) {
    let cap_ms = (2u64 << tries.min(8)).min(400);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=cap_ms))).await;
}

/// Waits before retrying after throttle number `throttled`: the window doubles from
/// 100 ms to 400 ms, long enough for capacity to recover, short enough to answer well
/// inside the function's timeout.
pub async fn pause_throttled(throttled: u32) {
    let cap_ms = 50u64 << throttled.min(3);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(cap_ms / 4..=cap_ms))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn throttling_is_retried_then_answered() {
        let tries = AtomicU32::new(0);
        let outcome: Result<(), StoreError> = on_conflict(DEFAULT_ATTEMPTS, |_| {
            tries.fetch_add(1, Ordering::SeqCst);
            async { Err(StoreError::Throttled("ThrottlingError".into())) }
        })
        .await;
        assert!(
            matches!(outcome, Err(StoreError::Throttled(_))),
            "{outcome:?}"
        );
        assert!(tries.load(Ordering::SeqCst) > 1, "retried");
    }

    #[tokio::test]
    async fn a_throttled_attempt_is_tried_again() {
        let tries = AtomicU32::new(0);
        let outcome = on_conflict(DEFAULT_ATTEMPTS, |_| {
            let first = tries.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err(StoreError::Throttled("ThrottlingError".into()))
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(outcome.unwrap(), 7);
    }
}
