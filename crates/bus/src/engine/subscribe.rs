//! Describing a subscription and what a handler receives and answers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Bus;
use super::worker::{Settings, Worker};
use crate::{DeliveryPolicy, Error, Filter, GroupName, GroupSpec};

/// One event as a handler sees it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The event.
    pub event: CloudEvent,
    /// The topic it was published to.
    pub topic: TopicName,
    /// The group it is delivered to.
    pub group: GroupName,
    /// 1 on the first delivery, more on redeliveries.
    pub attempt: u32,
    /// When the backend stored it.
    pub published_at: SystemTime,
}

impl Received {
    /// The JSON payload as `T`; a payload that does not fit is a poison message, so the error
    /// [rejects](HandlerError::reject) it (straight to the dead-letter queue).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        let value = self
            .event
            .json_data()
            .ok_or_else(|| HandlerError::reject("event carries no JSON data"))?;
        T::deserialize(value)
            .map_err(|e| HandlerError::reject(format!("payload does not fit the type: {e}")))
    }
}

/// A typed event: the payload decoded, plus the delivery it came in.
#[derive(Debug, Clone)]
pub struct Typed<T> {
    /// The decoded payload.
    pub data: T,
    /// The delivery.
    pub received: Received,
}

/// A handler's failure: retry (after the policy's backoff or a given delay) or reject.
///
/// Any `std::error::Error` converts into a retry, so handlers can use `?`.
pub struct HandlerError {
    pub(crate) action: Action,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Retry(Option<Duration>),
    Reject,
}

impl HandlerError {
    /// Try again after the policy's backoff (dead-lettered after max deliveries).
    pub fn retry(message: impl fmt::Display) -> Self {
        Self {
            action: Action::Retry(None),
            message: message.to_string(),
        }
    }

    /// Try again after `delay` (nack with delay), still counting toward max deliveries.
    pub fn retry_after(delay: Duration, message: impl fmt::Display) -> Self {
        Self {
            action: Action::Retry(Some(delay)),
            message: message.to_string(),
        }
    }

    /// Never retry: dead-letter now (a poison message).
    pub fn reject(message: impl fmt::Display) -> Self {
        Self {
            action: Action::Reject,
            message: message.to_string(),
        }
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.action, self.message)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self::retry(e)
    }
}

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Received) -> BoxFuture + Send + Sync>;

/// Describes a subscription; attach a handler to start it.
#[derive(Debug)]
pub struct SubscriptionBuilder {
    bus: Bus,
    pattern: String,
    group: Option<String>,
    settings: Settings,
    shutdown: CancellationToken,
}

impl SubscriptionBuilder {
    pub(super) fn new(bus: Bus, pattern: &str) -> Self {
        Self {
            bus,
            pattern: pattern.to_owned(),
            group: None,
            settings: Settings::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The consumer group (required): subscribers in one group share its events, each group
    /// gets every event.
    pub fn group(mut self, name: &str) -> Self {
        self.group = Some(name.to_owned());
        self
    }

    /// Only events matching `filter` reach the handler (others are acked unseen).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.settings.filter = filter;
        self
    }

    /// Handlers running at once (default 1). Events with the same ordering key never run
    /// concurrently, whatever this says.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// A handler running longer fails its attempt (default 30 s).
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handler_timeout = timeout;
        self
    }

    /// Lease beyond the handler timeout before a silent consumer's event is redelivered
    /// (default 10 s): covers settling time after a slow handler.
    pub fn lease_margin(mut self, margin: Duration) -> Self {
        self.settings.lease_margin = margin;
        self
    }

    /// Max deliveries and backoff (default: 5 deliveries, exponential backoff from 1 s).
    pub fn policy(mut self, policy: DeliveryPolicy) -> Self {
        self.settings.policy = policy;
        self
    }

    /// Stops the subscription when `token` is cancelled: no new events are taken, in-flight
    /// handlers finish and are settled, then [`Subscription::join`] returns.
    pub fn shutdown_on(mut self, token: &CancellationToken) -> Self {
        self.shutdown = token.child_token();
        self
    }

    /// Declares the group and starts delivering to `handler`.
    pub async fn handler<F, Fut>(self, handler: F) -> Result<Subscription, Error>
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
        self.start(handler).await
    }

    /// Like [`handler`](Self::handler), with the JSON payload decoded as `T`; an event whose
    /// payload does not decode is dead-lettered at once (reason `rejected`).
    pub async fn typed_handler<T, F, Fut>(self, handler: F) -> Result<Subscription, Error>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Typed<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let wrapped: Handler = Arc::new(move |received: Received| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let data = received.json::<T>()?;
                handler(Typed { data, received }).await
            })
        });
        self.start(wrapped).await
    }

    async fn start(self, handler: Handler) -> Result<Subscription, Error> {
        let pattern = TopicPattern::new(self.pattern)?;
        let group = self
            .group
            .ok_or_else(|| Error::InvalidInput("a subscription needs a group".into()))
            .and_then(GroupName::new)?;
        self.settings.policy.validate()?;
        let spec = GroupSpec {
            name: group,
            pattern,
        };
        self.bus.backend().declare_group(&spec).await?;
        let worker = Worker::new(self.bus, spec.name, self.settings, handler);
        let task = tokio::spawn(worker.run(self.shutdown.clone()));
        Ok(Subscription {
            task,
            shutdown: self.shutdown,
        })
    }
}

/// A running subscription.
#[derive(Debug)]
pub struct Subscription {
    task: JoinHandle<()>,
    shutdown: CancellationToken,
}

impl Subscription {
    /// Stops taking events, lets in-flight handlers finish and settle, and returns when done.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.join().await;
    }

    /// Waits until the subscription has stopped (after its shutdown token was cancelled).
    pub async fn join(self) {
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!("subscription worker panicked");
        }
    }

    /// Waits for the subscription to stop (after its shutdown token was cancelled) for at most
    /// `deadline`, then kills it as [`abort`](Self::abort) does: handlers still running are
    /// dropped unsettled, and their events come back to the group when their leases end.
    /// Returns whether it stopped in time.
    pub async fn join_within(mut self, deadline: Duration) -> bool {
        match tokio::time::timeout(deadline, &mut self.task).await {
            Ok(result) => {
                if result.as_ref().is_err_and(|e| e.is_panic()) {
                    tracing::error!("subscription worker panicked");
                }
                true
            }
            Err(_) => {
                self.task.abort();
                false
            }
        }
    }

    /// Kills the subscription at once, settling nothing: what a crash looks like to the
    /// backend (in-flight events come back when their leases expire). For tests and
    /// emergencies; prefer [`stop`](Self::stop).
    pub fn abort(self) {
        self.task.abort();
    }
}
