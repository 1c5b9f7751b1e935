//! A bus that does not answer when the service starts (a control plane or broker still coming
//! up) does not stop the service: it starts, `/ready` says which subscriptions wait, and the
//! handlers run once the bus answers. Time is paused: the retry backoff passes at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotilla::events::{
    Backend, Bus, Capabilities, DeadLetter, Delivery, DlqQuery, Error, Failure, GroupInfo,
    GroupName, GroupSpec, MemoryBackend, Outgoing, PublishOutcome, Receipt, TopicInfo, Typed,
};
use flotilla::testing::TestService;
use flotilla::{CheckStatus, Microservice};
use tokio::sync::mpsc;

/// The memory backend behind a switch: while `down`, declaring a group is `Unavailable`.
#[derive(Debug, Default)]
struct Switched {
    inner: MemoryBackend,
    down: AtomicBool,
}

#[async_trait]
impl Backend for Switched {
    fn name(&self) -> &'static str {
        "switched"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn declare_group(&self, spec: &GroupSpec) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("connection refused".into()));
        }
        self.inner.declare_group(spec).await
    }
    async fn delete_group(&self, group: &GroupName) -> Result<(), Error> {
        self.inner.delete_group(group).await
    }
    async fn publish(&self, batch: Vec<Outgoing>) -> Result<Vec<PublishOutcome>, Error> {
        self.inner.publish(batch).await
    }
    async fn receive(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        self.inner.receive(group, max, lease, wait).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), Error> {
        self.inner.ack(receipt).await
    }
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), Error> {
        self.inner.nack(receipt, delay).await
    }
    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), Error> {
        self.inner.dead_letter(receipt, failure).await
    }
    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dlq_list(query).await
    }
    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, Error> {
        self.inner.dlq_get(id).await
    }
    async fn dlq_replay(&self, id: &str) -> Result<(), Error> {
        self.inner.dlq_replay(id).await
    }
    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, Error> {
        self.inner.dlq_purge(group, ids).await
    }
    async fn topics(&self) -> Result<Vec<TopicInfo>, Error> {
        self.inner.topics().await
    }
    async fn groups(&self) -> Result<Vec<GroupInfo>, Error> {
        self.inner.groups().await
    }
}

#[tokio::test(start_paused = true)]
async fn the_service_starts_not_ready_and_subscribes_once_the_bus_answers() {
    let backend = Arc::new(Switched::default());
    backend.down.store(true, Ordering::SeqCst);
    let bus = Bus::new(backend.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let builder = Microservice::builder("billing")
        .unwrap()
        .events(bus.clone())
        .on_event("orders.*", "billing", move |e: Typed<serde_json::Value>| {
            let tx = tx.clone();
            async move {
                tx.send(e.data).unwrap();
                Ok(())
            }
        });
    let service = TestService::start(builder).await;

    let ready = service.get("/ready").await;
    assert_eq!(ready.status, 503, "not ready while the bus is unreachable");
    let report = ready.json();
    assert_eq!(report["checks"]["events"]["status"], "critical", "{report}");

    backend.down.store(false, Ordering::SeqCst);
    while service.get("/ready").await.status != 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bus.publish_json("/shop", "orders.placed", &serde_json::json!({ "order": 1 }))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap()["order"], 1);
    assert_eq!(
        service.get("/ready").await.json()["checks"]["events"]["status"],
        serde_json::to_value(CheckStatus::Passing).unwrap()
    );
    service.stop().await.unwrap();
}
