//! The bus conformance suite against the RabbitMQ broker on this machine.

use std::sync::Arc;

use flotilla_amqp::{AmqpBackend, Options};
use flotilla_bus::conformance::Harness;
use flotilla_testkit::{Backend, backend, unique_name};

/// A backend under the shared test prefix (one topic exchange); every case's groups carry the
/// harness's unique namespace and the suite deletes them (queues and marker exchanges).
async fn harness() -> Option<Harness> {
    let url = backend(Backend::RabbitMq, "amqp bus conformance")?;
    let opts = Options {
        url,
        prefix: "flotilla_conformance".into(),
        ..Options::default()
    };
    let b = AmqpBackend::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("connect to RabbitMQ: {e}"));
    Some(Harness::new(Arc::new(b), &unique_name("c")))
}

flotilla_bus::conformance_suite!(harness);
