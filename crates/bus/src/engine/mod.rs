//! The delivery engine: publishing and subscriptions on top of any [`Backend`].

mod spans;
mod subscribe;
mod worker;

use std::sync::Arc;

use flotilla_core::{CloudEvent, TopicName};
use serde::Serialize;
use tracing::Instrument as _;

use crate::{Backend, Error, Metrics, Outgoing, PublishOutcome};

pub use subscribe::{HandlerError, Received, Subscription, SubscriptionBuilder, Typed};

/// The SDK-facing bus: cheap to clone, shareable across tasks.
///
/// ```
/// # async fn demo() -> Result<(), flotilla_bus::Error> {
/// use flotilla_bus::{Bus, MemoryBackend};
/// use flotilla_core::CloudEvent;
///
/// let bus = Bus::new(std::sync::Arc::new(MemoryBackend::new()));
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// let sub = bus
///     .subscribe("orders.*")
///     .group("billing")
///     .shutdown_on(&shutdown)
///     .handler(|msg| async move {
///         println!("got {}", msg.event.id);
///         Ok(())
///     })
///     .await?;
/// bus.publish(CloudEvent::new("/orders", "orders.created")).await?;
/// shutdown.cancel();
/// sub.join().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Bus {
    backend: Arc<dyn Backend>,
    metrics: Option<Metrics>,
}

impl Bus {
    /// A bus over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            metrics: None,
        }
    }

    /// Counts publishes, deliveries and outcomes, and times handlers, in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The metrics this bus records into, if any.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// The backend, for operations the engine does not wrap (DLQ, topics, groups).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Publishes `event` to the topic named by its `type` (`orders.created`); durable when
    /// `Ok`. Fails with [`Error::Name`] when the type is not a valid topic name: use
    /// [`publish_to`](Self::publish_to) then.
    pub async fn publish(&self, event: CloudEvent) -> Result<PublishOutcome, Error> {
        let topic = TopicName::new(event.ty.clone())?;
        self.publish_to(topic, event).await
    }

    /// Publishes `event` to `topic`; durable when `Ok`.
    pub async fn publish_to(
        &self,
        topic: TopicName,
        event: CloudEvent,
    ) -> Result<PublishOutcome, Error> {
        let mut out = self
            .publish_batch(vec![Outgoing::new(topic, event)])
            .await?;
        out.pop()
            .ok_or_else(|| Error::Backend("publish answered no outcome for one event".into()))
    }

    /// Publishes a typed payload as JSON in a new event of `source` and `ty` on topic `ty`.
    pub async fn publish_json<T: Serialize>(
        &self,
        source: &str,
        ty: &str,
        data: &T,
    ) -> Result<PublishOutcome, Error> {
        let value = serde_json::to_value(data)
            .map_err(|e| Error::InvalidInput(format!("payload does not serialize: {e}")))?;
        self.publish(CloudEvent::new(source, ty).with_json(value))
            .await
    }

    /// Publishes many events in one backend round trip (one transaction on SQLite); the
    /// outcomes are in input order. Validates every event first: nothing is published if
    /// one is invalid.
    pub async fn publish_batch(
        &self,
        mut batch: Vec<Outgoing>,
    ) -> Result<Vec<PublishOutcome>, Error> {
        for out in &batch {
            out.event.validate()?;
        }
        let span = spans::publish(self.backend.name(), &mut batch);
        let n = batch.len();
        let topics: Vec<_> = self.metrics.as_ref().map_or_else(Vec::new, |_| {
            batch.iter().map(|o| o.topic.as_str().to_owned()).collect()
        });
        let outcomes = self
            .backend
            .publish(batch)
            .instrument(span.clone())
            .await
            .inspect_err(|_| spans::record_failure(&span, "backend"))?;
        if outcomes.len() != n {
            return Err(Error::Backend(format!(
                "publish answered {} outcomes for {n} events",
                outcomes.len()
            )));
        }
        if let Some(m) = &self.metrics {
            let stored = topics.iter().zip(&outcomes);
            stored
                .filter(|(_, o)| **o == PublishOutcome::Stored)
                .for_each(|(t, _)| m.published(t));
        }
        Ok(outcomes)
    }

    /// Starts describing a subscription to topics matching `pattern` (`orders.*`,
    /// `orders.>`); the pattern is checked when the handler is attached.
    pub fn subscribe(&self, pattern: &str) -> SubscriptionBuilder {
        SubscriptionBuilder::new(self.clone(), pattern)
    }
}
