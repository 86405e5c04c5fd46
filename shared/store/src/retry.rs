//! Bounded retry with jitter for commits that lose an optimistic race.

use crate::store::Head;
use crate::StoreError;
use std::future::Future;
use std::time::Duration;

/// How many times a command decides and commits before it answers 409.
pub const DEFAULT_ATTEMPTS: u32 = 12;

/// Runs `attempt` until it does not fail with a conflict, at most `attempts` times. Each
/// retry gets the head the failed condition saw (when DynamoDB returned it), so it can
/// decide again without a read, and waits a random "full jitter" delay first.
pub async fn on_conflict<T, F, Fut>(attempts: u32, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut(Option<Head>) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut seen = None;
    let mut tries = 0;
    loop {
        tries += 1;
        match Box::pin(attempt(seen.take())).await {
            Err(StoreError::Conflict { current, .. }) if tries < attempts => {
                seen = current.map(|h| *h);
                pause(tries).await;
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
