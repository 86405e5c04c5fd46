//! Deciders' rules as one line each: given these events, when this command, then these
//! events (or this refusal).
//!
//! ```
//! use kassa_domain::scenario::given;
//! use kassa_domain::aggregate::UserCommand;
//! use kassa_domain::identity::UserId;
//! use kassa_domain::user::{User, UserEvent};
//!
//! let deleted = UserEvent::Deleted { user_id: UserId::new("ann"), deleted_by: UserId::new("ann") };
//! given::<User>([deleted])
//!     .when(UserCommand::Delete { user_id: UserId::new("ann"), by: UserId::new("ann") })
//!     .then([]);
//! ```

use crate::aggregate::Aggregate;
use std::fmt::Debug;

/// The state the events build, ready for a command.
pub struct Given<A: Aggregate> {
    state: Option<A>,
}

/// Starts a scenario from an aggregate's history (empty for a new one).
pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let state = history
        .into_iter()
        .fold(None, |state, event| A::evolve(state, &event));
    Given { state }
}

impl<A: Aggregate> Given<A> {
    /// The state the history built, for assertions on evolve alone.
    pub fn state(&self) -> Option<&A> {
        self.state.as_ref()
    }

    pub fn when(self, command: A::Command) -> When<A> {
        let outcome = A::decide(self.state.as_ref(), command);
        When {
            state: self.state,
            outcome,
        }
    }
}

/// A decision, to be checked.
pub struct When<A: Aggregate> {
    state: Option<A>,
    outcome: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> When<A>
where
    A::Event: PartialEq + Debug,
    A::Error: PartialEq + Debug,
{
    /// Asserts the decision recorded exactly `expected`; returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> Option<A> {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => {
                assert_eq!(events, expected, "the decision's events");
                events.iter().fold(self.state, A::evolve)
            }
            Err(e) => panic!("expected events {expected:?}, the command was refused: {e:?}"),
        }
    }

    /// Asserts the command was refused with `expected`.
    #[track_caller]
    pub fn then_refused(self, expected: A::Error) {
        match self.outcome {
            Ok(events) => panic!("expected the refusal {expected:?}, got events {events:?}"),
            Err(e) => assert_eq!(e, expected, "the refusal"),
        }
    }

    /// The raw decision, for checks the two assertions above do not cover.
    pub fn outcome(self) -> Result<Vec<A::Event>, A::Error> {
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::given;
    use crate::credits::{AllocationReason, CreditCommand, CreditError, CreditEvent, Wallet};
    use crate::tier::TierId;
    use uuid::Uuid;

    const WS: Uuid = Uuid::nil();

    fn opened() -> CreditEvent {
        CreditEvent::WalletOpened {
            workspace_id: WS,
            tier: TierId::Free,
        }
    }

    fn allocated(credits: u64) -> CreditEvent {
        CreditEvent::Allocated {
            workspace_id: WS,
            allocation_id: "signup".into(),
            reason: AllocationReason::Signup,
            base: credits,
            bonus: 0,
            total: credits,
            balance_after: credits as i64,
        }
    }

    fn consume(feature: &str, quantity: u64) -> CreditCommand {
        CreditCommand::Consume {
            consumption_id: WS,
            feature: feature.into(),
            quantity,
        }
    }

    fn consumed(credits: u64, balance_after: i64) -> CreditEvent {
        CreditEvent::Consumed {
            workspace_id: WS,
            consumption_id: WS,
            feature: "api.call".into(),
            quantity: credits,
            credits,
            balance_after,
        }
    }

    #[test]
    fn a_consume_within_the_balance_debits_it() {
        let wallet = given::<Wallet>([opened(), allocated(1_000)])
            .when(consume("api.call", 3))
            .then([consumed(3, 997)]);
        assert_eq!(wallet.map(|w| w.balance), Some(997));
    }

    #[test]
    fn a_consume_past_the_balance_on_the_free_tier_is_refused() {
        given::<Wallet>([opened(), allocated(2)])
            .when(consume("api.call", 3))
            .then_refused(CreditError::InsufficientCredits {
                needed: 3,
                balance: 2,
                allowance: 0,
            });
    }
}
