//! Bounded retry with jitter for commits that lose an optimistic race.

use crate::store::Head;
use crate::StoreError;
use std::future::Future;
use std::time::Duration;

/// How many times a command decides and commits before it answers 409.
pub const DEFAULT_ATTEMPTS: u32 = 8;

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
                let cap_ms = 2u64.saturating_pow(tries.min(8)).min(200);
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=cap_ms))).await;
            }
            other => return other,
        }
    }
}
