//! Hooks for what happens to instances, so the process running the orchestrator can count
//! them or announce them (the control plane publishes `saga.<name>.<outcome>` on its bus and
//! keeps Prometheus counters) without the orchestrator knowing either.

use crate::state::SagaState;

/// Told about instances as this orchestrator records their transitions. Calls are made on
/// the driver's task right after the event is durable, so they must not block; spawn for
/// anything slow. A replica that loses the race to record an end is not told; one that
/// records it is, exactly once per recorded event.
pub trait SagaObserver: Send + Sync + std::fmt::Debug + 'static {
    /// An instance was started here (`SagaStarted` is durable).
    fn started(&self, _state: &SagaState) {}

    /// An unfinished instance is driven here again: resumed by `recover()`, or a stuck one
    /// retried.
    fn resumed(&self, _state: &SagaState) {}

    /// An instance ended (`SagaCompleted`, `SagaCompensated` or `SagaStuck` is durable);
    /// `state.status` says which.
    fn ended(&self, _state: &SagaState) {}
}
