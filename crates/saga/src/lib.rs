//! The saga orchestrator (layer L3): distributed transactions with compensation, kept
//! durably in the event store.
//!
//! A saga is a versioned list of steps ([`SagaDefinition`], written in Rust with
//! [`SagaDefinition::builder`] or loaded from TOML/JSON); each step is an action (an HTTP call
//! to a service found through discovery, a command on the bus answered by a reply event, or
//! an in-process function) with an optional compensation, a timeout and a retry policy. Each
//! instance is an event stream `saga-<name>-<uuid>` ([`SagaEvent`]); a pure state machine
//! ([`state::decide`] over [`SagaState`]) says what to do next and the [`Orchestrator`]'s
//! driver does it and appends the outcome with the expected version, so two replicas never
//! both record a transition. [`Orchestrator::recover`] resumes unfinished instances after a
//! restart. [`api::router`] serves the operations API (start, list, show with a timeline,
//! cancel, retry a stuck instance) and [`SagaObserver`] hears starts and ends, for a host
//! such as the control plane to mount and announce.
//!
//! It owns no storage, transport or discovery source: it keeps state through the
//! `flotilla-eventstore` contract, finds services through `flotilla-discovery` and sends
//! commands through `flotilla-bus`. The control
//! plane and the SDK depend on it; it depends on no backend and no other component.
//! The guide is docs/sagas.md.

pub mod action;
pub mod api;
mod clock;
pub mod definition;
mod error;
pub mod event;
mod observer;
mod orchestrator;
mod spans;
pub mod state;
pub mod template;

pub use action::{StepCall, StepError, StepFunction};
pub use clock::TokioClock;
pub use definition::{
    Action, BusCommand, HttpAction, SagaBuilder, SagaDefinition, StepBuilder, StepDefinition,
    StepPolicy,
};
pub use error::{Error, Result};
pub use event::{AbortReason, SagaEvent};
pub use observer::SagaObserver;
pub use orchestrator::{Orchestrator, OrchestratorBuilder, Recovery, Started, TimelineEntry};
pub use state::{Phase, SagaState, SagaStatus, StepState};
