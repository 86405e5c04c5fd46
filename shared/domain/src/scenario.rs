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
