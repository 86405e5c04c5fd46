//! How a side effect fails: worth retrying (the store was busy, Stripe timed out, the mail
//! relay refused for now) or never going to work (a payload that does not decode, a
//! request the provider refuses as given). SQS redelivers the first kind after the queue's
//! visibility timeout; the second goes to the dead-letter queue at once, with its reason,
//! instead of failing five more times first.

use kassa_commerce::Fail;
use kassa_payments::gateway::GatewayError;
use kassa_store::{IdempotencyError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// Transient: the message is redelivered later.
    #[error("{0} (will be retried)")]
    Retry(String),
    /// Permanent: the message is parked in the dead-letter queue with this reason.
    #[error("{0} (poison: not retried)")]
    Poison(String),
}

impl EffectError {
    pub fn retry(why: impl std::fmt::Display) -> Self {
        Self::Retry(why.to_string())
    }

    pub fn poison(why: impl std::fmt::Display) -> Self {
        Self::Poison(why.to_string())
    }

    pub fn is_poison(&self) -> bool {
        matches!(self, Self::Poison(_))
    }
}

impl From<StoreError> for EffectError {
    fn from(e: StoreError) -> Self {
        match e {
            // A commit too large for one transaction stays too large.
            StoreError::TooManyItems(_) => Self::Poison(e.to_string()),
            // Conflicts that outlived their retries, refusals, outages and even data kassa
            // cannot read (a deploy may fix the reader) are worth another delivery.
            _ => Self::Retry(e.to_string()),
        }
    }
}

impl<E: std::fmt::Display> From<IdempotencyError<E>> for EffectError {
    fn from(e: IdempotencyError<E>) -> Self {
        Self::Retry(e.to_string())
    }
}

/// A command's refusal is decided on state, and deciding again on the same state gives
/// the same answer: poison, unless the handler knows the state will move (an order not
/// visible yet) and says `Retry` itself.
impl<E: std::fmt::Display> From<Fail<E>> for EffectError {
    fn from(fail: Fail<E>) -> Self {
        match fail {
            Fail::Refused(e) => Self::Poison(format!("refused: {e}")),
            Fail::Store(e) => Self::from(e),
        }
    }
}

/// A payload that does not decode now never will.
impl From<serde_json::Error> for EffectError {
    fn from(e: serde_json::Error) -> Self {
        Self::Poison(format!("the event does not decode: {e}"))
    }
}

impl From<uuid::Error> for EffectError {
    fn from(e: uuid::Error) -> Self {
        Self::Poison(format!("not an id: {e}"))
    }
}

impl From<GatewayError> for EffectError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Unavailable(_) => Self::Retry(e.to_string()),
            GatewayError::Refused { .. } | GatewayError::InvalidAmount(_) => {
                Self::Poison(e.to_string())
            }
        }
    }
}

impl From<crate::mail::MailError> for EffectError {
    fn from(e: crate::mail::MailError) -> Self {
        Self::Retry(e.to_string())
    }
}

impl From<time::error::Format> for EffectError {
    fn from(e: time::error::Format) -> Self {
        Self::Poison(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_retry_and_permanent_ones_are_poison() {
        let unavailable = GatewayError::Unavailable("timeout".into());
        assert!(!EffectError::from(unavailable).is_poison());
        let refused = GatewayError::Refused {
            kind: "card_error".into(),
            message: "declined".into(),
        };
        assert!(EffectError::from(refused).is_poison());
        let garbled = serde_json::from_str::<u32>("x").unwrap_err();
        assert!(EffectError::from(garbled).is_poison());
        assert!(!EffectError::from(StoreError::Dynamo("busy".into())).is_poison());
        assert!(EffectError::from(StoreError::TooManyItems(101)).is_poison());
    }
}
