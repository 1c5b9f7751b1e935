//! The loop that leases events, runs handlers and settles each attempt by the policy.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;

use super::Bus;
use super::subscribe::{Action, Handler, HandlerError, Received};
use crate::{Delivery, DeliveryPolicy, Error, Failure, FailureReason, Filter, GroupName, Metrics};

/// How long one receive waits for events: also the longest a shutdown waits for the loop.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// Pause after a failed receive, so a backend outage is not hammered.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) filter: Filter,
    pub(crate) concurrency: usize,
    pub(crate) handler_timeout: Duration,
    pub(crate) lease_margin: Duration,
    pub(crate) policy: DeliveryPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            filter: Filter::all(),
            concurrency: 1,
            handler_timeout: Duration::from_secs(30),
            lease_margin: Duration::from_secs(10),
            policy: DeliveryPolicy::default(),
        }
    }
}

pub(crate) struct Worker {
    bus: Bus,
    group: GroupName,
    settings: Settings,
    handler: Handler,
}

impl Worker {
    pub(crate) fn new(bus: Bus, group: GroupName, settings: Settings, handler: Handler) -> Self {
        Self {
            bus,
            group,
            settings,
            handler,
        }
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.settings.concurrency));
        let mut tasks = JoinSet::new();
        while !shutdown.is_cancelled() {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                p = Arc::clone(&permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let mut held = vec![first];
            while let Ok(p) = Arc::clone(&permits).try_acquire_owned() {
                held.push(p);
            }
            // Not raced against shutdown: a receive dropped half-way could leave leases
            // nobody settles until they expire. The wait is short instead.
            let batch = this.receive(held.len()).await;
            let shutting_down = shutdown.is_cancelled();
            for (delivery, permit) in batch.into_iter().zip(held) {
                if shutting_down {
                    this.release(&delivery).await;
                    continue;
                }
                let w = Arc::clone(&this);
                tasks.spawn(async move { w.process(delivery, permit).await });
            }
            while tasks.try_join_next().is_some() {}
        }
        // In-flight handlers finish and settle; nothing new starts.
        while tasks.join_next().await.is_some() {}
    }

    async fn receive(&self, max: usize) -> Vec<Delivery> {
        let lease = self.settings.handler_timeout + self.settings.lease_margin;
        let backend = self.bus.backend();
        match backend.receive(&self.group, max, lease, POLL_WAIT).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "receive failed; pausing");
                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                Vec::new()
            }
        }
    }

    /// Hands an event taken during shutdown straight back, without counting a failure
    /// against it beyond the delivery itself.
    async fn release(&self, d: &Delivery) {
        if let Err(e) = self.bus.backend().nack(&d.receipt, Duration::ZERO).await {
            tracing::warn!(group = %self.group, error = %e, "release on shutdown failed");
        }
    }

    async fn process(&self, d: Delivery, _permit: OwnedSemaphorePermit) {
        if !self.settings.filter.matches(&d.event) {
            return self.settle(&d, Ok(())).await;
        }
        let received = Received {
            event: d.event.clone(),
            topic: d.topic.clone(),
            group: self.group.clone(),
            attempt: d.attempt,
            published_at: d.published_at,
        };
        let metrics = self.bus.metrics();
        metrics.inspect(|m| m.delivered(self.group.as_str()));
        let started = tokio::time::Instant::now();
        let span = super::spans::process(self.bus.backend().name(), &d, self.group.as_str());
        // Its own task, so a panicking handler fails one attempt instead of the worker; the
        // guard aborts it if this subscription is aborted.
        let handling = (self.handler)(received).instrument(span.clone());
        let run = AbortOnDropHandle::new(tokio::spawn(handling));
        let result = tokio::time::timeout(self.settings.handler_timeout, run).await;
        metrics.inspect(|m| m.handler_time(self.group.as_str(), started.elapsed()));
        let outcome = match result {
            Ok(Ok(result)) => result,
            Ok(Err(join)) if join.is_panic() => Err(HandlerError::retry("handler panicked")),
            Ok(Err(_)) => Err(HandlerError::retry("handler task was cancelled")),
            Err(_) => Err(HandlerError::retry(format!(
                "handler timed out after {:?}",
                self.settings.handler_timeout
            ))),
        };
        if outcome.is_err() && !span.is_none() {
            super::spans::record_failure(&span, "handler");
        }
        self.settle(&d, outcome).await;
    }

    async fn settle(&self, d: &Delivery, outcome: Result<(), HandlerError>) {
        let backend = self.bus.backend();
        let group = self.group.as_str();
        let (result, count): (_, fn(&Metrics, &str)) = match outcome {
            Ok(()) => (backend.ack(&d.receipt).await, |m, g| m.acked(g)),
            Err(e) => match self.decide(d.attempt, &e) {
                Decision::Retry(delay) => {
                    (backend.nack(&d.receipt, delay).await, |m, g| m.nacked(g))
                }
                Decision::DeadLetter(reason) => {
                    let failure = Failure {
                        reason,
                        last_error: e.message,
                    };
                    let r = backend.dead_letter(&d.receipt, failure).await;
                    let count: fn(&Metrics, &str) = match reason {
                        FailureReason::MaxDeliveries => |m, g| m.dead_lettered(g, "max_deliveries"),
                        FailureReason::Rejected => |m, g| m.dead_lettered(g, "rejected"),
                    };
                    (r, count)
                }
            },
        };
        match result {
            Ok(()) => {
                if let Some(m) = self.bus.metrics() {
                    count(m, group);
                }
            }
            // Another consumer holds the event now; it settles it.
            Err(Error::LeaseLost) => tracing::debug!(group = %self.group, "lease lost"),
            Err(e) => tracing::warn!(
                group = %self.group, id = %d.event.id, error = %e,
                "settling failed; the event is redelivered when its lease ends"
            ),
        }
    }

    fn decide(&self, attempt: u32, e: &HandlerError) -> Decision {
        decide(&self.settings.policy, attempt, e.action)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Retry(Duration),
    DeadLetter(FailureReason),
}

fn decide(policy: &DeliveryPolicy, attempt: u32, action: Action) -> Decision {
    match action {
        Action::Reject => Decision::DeadLetter(FailureReason::Rejected),
        _ if attempt >= policy.max_deliveries => Decision::DeadLetter(FailureReason::MaxDeliveries),
        Action::Retry(Some(delay)) => Decision::Retry(delay),
        Action::Retry(None) => Decision::Retry(policy.backoff.delay(attempt)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backoff;

    #[test]
    fn failures_retry_with_backoff_until_max_deliveries_then_dead_letter() {
        let policy = DeliveryPolicy {
            max_deliveries: 3,
            backoff: Backoff::List {
                delays: vec![Duration::from_secs(1), Duration::from_secs(4)],
            },
        };
        let retry = Action::Retry(None);
        assert_eq!(
            decide(&policy, 1, retry),
            Decision::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            decide(&policy, 2, retry),
            Decision::Retry(Duration::from_secs(4))
        );
        let last = decide(&policy, 3, retry);
        assert_eq!(last, Decision::DeadLetter(FailureReason::MaxDeliveries));
        let asked = Action::Retry(Some(Duration::from_millis(7)));
        assert_eq!(
            decide(&policy, 1, asked),
            Decision::Retry(Duration::from_millis(7))
        );
        let reject = decide(&policy, 1, Action::Reject);
        assert_eq!(reject, Decision::DeadLetter(FailureReason::Rejected));
    }
}
