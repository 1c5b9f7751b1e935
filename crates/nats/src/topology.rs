//! Subjects, the stream and the durable consumers the bus lives in.
//!
//! One stream per bus holds four subject spaces: `<prefix>.ev.<topic>` (events),
//! `<prefix>.delayed.<topic>` (events published with a not-before time, waiting for the
//! delay mover), `<prefix>.dlq.<group>` (dead letters) and `<prefix>.rq.<group>` (dead
//! letters replayed to one group). Bus topic patterns use NATS's own
//! wildcard syntax (`*` one token, `>` one or more), so a group's pattern maps one-to-one
//! onto its consumer's filter subject.

use async_nats::jetstream::{self, consumer, stream};
use flotilla_bus::GroupName;
use flotilla_core::{TopicName, TopicPattern};

use crate::{Error, Options};

/// The header carrying the not-before time of a delayed publish (Unix milliseconds).
pub(crate) const NOT_BEFORE: &str = "Flotilla-Not-Before";
/// The durable consumer that moves due delayed events into the event space.
pub(crate) const DELAY_MOVER: &str = "flotilla_delay_mover";
/// The header naming the topic of a replayed dead letter (its subject names the group).
pub(crate) const TOPIC_HEADER: &str = "Flotilla-Topic";

pub(crate) fn event_subject(o: &Options, topic: &TopicName) -> String {
    format!("{}.ev.{topic}", o.prefix)
}

pub(crate) fn delayed_subject(o: &Options, topic: &TopicName) -> String {
    format!("{}.delayed.{topic}", o.prefix)
}

pub(crate) fn pattern_subject(o: &Options, pattern: &TopicPattern) -> String {
    format!("{}.ev.{pattern}", o.prefix)
}

pub(crate) fn dlq_subject(o: &Options, group: &GroupName) -> String {
    format!("{}.dlq.{group}", o.prefix)
}

/// Where replayed dead letters of one group go: NATS 2.9 has no multi-subject filters, so a
/// group has a second durable consumer on this subject.
pub(crate) fn replay_subject(o: &Options, group: &GroupName) -> String {
    format!("{}.rq.{group}", o.prefix)
}

/// The topic an event subject carries, if `subject` is one.
pub(crate) fn topic_of<'s>(o: &Options, subject: &'s str, space: &str) -> Option<&'s str> {
    subject
        .strip_prefix(o.prefix.as_str())?
        .strip_prefix('.')?
        .strip_prefix(space)?
        .strip_prefix('.')
}

/// Creates (or finds) the bus stream; safe to call from every process at start-up.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    o: &Options,
) -> Result<stream::Stream, Error> {
    let config = stream::Config {
        name: o.prefix.clone(),
        subjects: vec![format!("{}.>", o.prefix)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: o.dedupe_window,
        max_age: o.max_age,
        num_replicas: o.replicas,
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| Error::broker("create stream", e))
}

/// Creates a durable pull consumer on `filter`, or updates its `ack_wait` (the lease). `max_deliver` is unlimited:
/// retries and dead-lettering are the delivery engine's, never stacked with JetStream's own.
pub(crate) async fn ensure_consumer(
    stream: &stream::Stream,
    name: &str,
    filter: String,
    ack_wait: std::time::Duration,
) -> Result<consumer::PullConsumer, Error> {
    let config = consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject: filter,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        deliver_policy: consumer::DeliverPolicy::New,
        max_ack_pending: 10_000,
        ..Default::default()
    };
    stream
        .create_consumer(config)
        .await
        .map_err(|e| Error::broker("create consumer", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_is_read_back_from_its_subject() {
        let o = Options::default();
        let t = TopicName::new("orders.created").unwrap();
        let s = event_subject(&o, &t);
        assert_eq!(topic_of(&o, &s, "ev"), Some("orders.created"));
        assert_eq!(topic_of(&o, &s, "dlq"), None);
    }
}
