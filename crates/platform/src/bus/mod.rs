//! [`PlatformBus`]: a [`flotilla_bus::Backend`] over the control plane's `/api/v1/bus`, so a
//! service in its own process publishes and consumes through the platform with the same
//! delivery engine, typed handlers, filters, ordering keys and retry / dead-letter policies
//! as one linked to an engine.
//!
//! The server does the delivering: leases, ordering keys, delays, dedupe and fenced receipts
//! are the control plane's bus's own, so this backend adds no semantics of its own and
//! declares exactly the capabilities the server's backend declares. What it adds is
//! transport: publishes and settles gathered into requests ([`gather`], [`publish`],
//! [`settle`]), pulls that wait on the server ([`receive`]), and the admin calls ([`admin`]).
//! See docs/sdk.md, "The platform bus".

mod admin;
mod error;
mod gather;
mod info;
mod publish;
mod receive;
mod settle;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_bus::{
    Backend, Capabilities, DeadLetter, Delivery, DlqQuery, Error, Failure, GroupInfo, GroupName,
    GroupSpec, Outgoing, PublishOutcome, Receipt, TopicInfo,
};

use crate::ControlPlane;

pub use publish::BatchOptions;

/// The event bus of a running control plane. Cheap to clone; clones share the connection
/// pool and the publish batcher.
///
/// Building one does no I/O: a control plane that is down at start is reached when it comes
/// up, and every call until then fails [`Error::Unavailable`] (retryable).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use flotilla_platform::{ConnectOptions, ControlPlane, bus::PlatformBus};
///
/// let platform = ControlPlane::new(ConnectOptions::new("http://127.0.0.1:4400").token("s3cret"))?;
/// let bus = flotilla_bus::Bus::new(Arc::new(PlatformBus::new(platform)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PlatformBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cp: ControlPlane,
    info: info::Cached,
    batcher: publish::Batcher,
    settler: settle::Settler,
}

impl PlatformBus {
    /// A bus over `cp`, gathering publishes with the default [`BatchOptions`].
    pub fn new(cp: ControlPlane) -> Self {
        Self::with_batching(cp, BatchOptions::default())
    }

    /// A bus over `cp` with its own batching of publishes and settles.
    pub fn with_batching(cp: ControlPlane, batching: BatchOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                info: info::Cached::default(),
                batcher: publish::Batcher::new(cp.clone(), batching),
                settler: settle::Settler::new(cp.clone(), batching),
                cp,
            }),
        }
    }

    /// A bus over `cp` that has already asked the control plane what it is: fails
    /// [`Error::Unavailable`] when it cannot be reached, so [`capabilities`](Backend::capabilities)
    /// is known from the start.
    pub async fn connect(cp: ControlPlane) -> Result<Self, Error> {
        let bus = Self::new(cp);
        bus.inner.info.get(&bus.inner.cp).await?;
        Ok(bus)
    }

    /// The name of the backend behind the control plane (`sqlite`, `nats`, ...), once known.
    pub fn server_backend(&self) -> Option<String> {
        self.inner.info.known().map(|i| i.backend.clone())
    }
}

#[async_trait]
impl Backend for PlatformBus {
    fn name(&self) -> &'static str {
        "platform"
    }

    /// The server backend's capabilities, all carried over HTTP; none until the control plane
    /// was first reached (use [`PlatformBus::connect`] to know them from the start).
    fn capabilities(&self) -> Capabilities {
        self.inner
            .info
            .known()
            .map_or(info::NOTHING_KNOWN, |i| i.capabilities)
    }

    async fn declare_group(&self, spec: &GroupSpec) -> Result<(), Error> {
        admin::declare_group(&self.inner.cp, spec).await
    }

    async fn delete_group(&self, group: &GroupName) -> Result<(), Error> {
        admin::delete_group(&self.inner.cp, group).await
    }

    async fn publish(&self, batch: Vec<Outgoing>) -> Result<Vec<PublishOutcome>, Error> {
        let info = self.inner.info.get(&self.inner.cp).await?;
        self.inner.batcher.publish(&info, batch).await
    }

    async fn receive(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        let info = self.inner.info.get(&self.inner.cp).await?;
        receive::receive(&self.inner.cp, &info, group, max, lease, wait).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), Error> {
        self.inner.settler.ack(receipt).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), Error> {
        self.inner.settler.nack(receipt, delay).await
    }

    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), Error> {
        self.inner.settler.dead_letter(receipt, failure).await
    }

    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, Error> {
        admin::dlq_list(&self.inner.cp, query).await
    }

    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, Error> {
        admin::dlq_get(&self.inner.cp, id).await
    }

    async fn dlq_replay(&self, id: &str) -> Result<(), Error> {
        admin::dlq_replay(&self.inner.cp, id).await
    }

    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, Error> {
        admin::dlq_purge(&self.inner.cp, group, ids).await
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, Error> {
        admin::topics(&self.inner.cp).await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, Error> {
        admin::groups(&self.inner.cp).await
    }
}
