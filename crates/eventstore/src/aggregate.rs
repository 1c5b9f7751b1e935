//! Aggregates: consistency boundaries whose state is a fold of their events.
//!
//! An aggregate decides (`command + state -> events | domain error`) and evolves
//! (`state + event -> state`); both are pure, so they are tested without a store (see
//! [`testing`]). The [`Repository`](crate::repository::Repository) does the I/O.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event of an aggregate. It is stored as its serde form (`data`) under
/// [`event_type`](DomainEvent::event_type), which subscribers filter on.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync
{
    /// The stored type name (`OrderPlaced`). Keep it stable; rename through an upcaster.
    fn event_type(&self) -> &'static str;
}

/// An event-sourced aggregate.
pub trait Aggregate:
    Default + Serialize + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// The stream category: the aggregate with id `42` lives in stream `{CATEGORY}-42`.
    const CATEGORY: &'static str;
    /// What callers ask of it.
    type Command: Debug + Send + Sync;
    /// What it records.
    type Event: DomainEvent;
    /// Why it refuses a command (a business rule, not a failure).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides what happens: the events to record, or why not. Must not do I/O.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Applies one event. Must not fail: events are facts.
    fn evolve(self, event: &Self::Event) -> Self;
}

/// Given-events / when-command / then-events tests for an [`Aggregate`].
pub mod testing {
    use super::Aggregate;

    /// Starts a test from a history.
    pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
        Given {
            state: history.into_iter().fold(A::default(), |s, e| s.evolve(&e)),
        }
    }

    /// An aggregate rebuilt from a history.
    #[derive(Debug)]
    pub struct Given<A> {
        state: A,
    }

    impl<A: Aggregate> Given<A> {
        /// Decides `command` against the history.
        pub fn when(self, command: A::Command) -> Then<A> {
            Then {
                outcome: self.state.decide(&command),
                command: format!("{command:?}"),
            }
        }
    }

    /// The decision, to assert on.
    #[derive(Debug)]
    pub struct Then<A: Aggregate> {
        outcome: Result<Vec<A::Event>, A::Error>,
        command: String,
    }

    impl<A: Aggregate> Then<A> {
        /// Asserts the command recorded exactly `expected`.
        pub fn then(self, expected: impl IntoIterator<Item = A::Event>) {
            let expected: Vec<_> = expected.into_iter().collect();
            match self.outcome {
                Ok(events) => assert_eq!(events, expected, "when {}", self.command),
                Err(e) => panic!("when {}: expected {expected:?}, refused: {e}", self.command),
            }
        }

        /// Asserts the command was refused with an error `check` accepts.
        pub fn then_refused(self, check: impl FnOnce(&A::Error) -> bool) {
            match self.outcome {
                Ok(events) => panic!("when {}: expected a refusal, got {events:?}", self.command),
                Err(e) => assert!(check(&e), "when {}: refused, but with {e}", self.command),
            }
        }
    }
}
