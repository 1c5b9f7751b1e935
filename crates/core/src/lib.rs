//! Flotilla's shared vocabulary (layer L0).
//!
//! This crate owns the types every other Flotilla crate speaks in: validated names
//! ([`ServiceName`], [`TopicName`], [`StreamId`]), the service-instance model
//! ([`ServiceInstance`]), the CloudEvents 1.0 envelope ([`CloudEvent`]), W3C trace context
//! ([`TraceParent`]), error classification ([`ErrorClass`]), time ([`Clock`]) and
//! [`redact`]ion of passwords in connection URLs.
//!
//! It does not own behaviour: no I/O, no async runtime, no storage. Everything above it
//! (contracts, backends, components, the SDK and the binary) depends on it; it depends on
//! nothing of ours.

pub mod clock;
pub mod error;
pub mod event;
pub mod instance;
pub mod name;
pub mod redact;
pub mod sse;
pub mod trace;
pub mod tracestate;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Blame, ErrorClass, ErrorKind};
pub use event::{CloudEvent, EventError};
pub use instance::{InstanceError, Scheme, ServiceInstance};
pub use name::{NameError, ServiceName, StreamId, TopicName, TopicPattern};
pub use trace::{RequestId, TraceContext, TraceParent};
pub use tracestate::TraceState;
