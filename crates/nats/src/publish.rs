//! Publishing: an event is durable when JetStream's publish ack arrives (the stream is
//! file-backed, so the server has written it to its store; with `replicas > 1` a quorum has).
//! A batch is pipelined: every message is sent, then the acks are awaited in order.

use std::time::SystemTime;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use flotilla_bus::{Error as BusError, Outgoing, PublishOutcome};
use flotilla_core::CloudEvent;

use crate::Options;
use crate::codec::unix_ms;
use crate::topology::{NOT_BEFORE, delayed_subject, event_subject};

/// The `Nats-Msg-Id` for an event: its (source, id), which CloudEvents makes unique.
pub(crate) fn msg_id(event: &CloudEvent) -> Result<String, BusError> {
    let id = format!("{} {}", event.source, event.id);
    if id.contains(['\r', '\n']) {
        return Err(BusError::InvalidInput(format!(
            "event id {:?} contains a line break, which a NATS header cannot carry",
            event.id
        )));
    }
    Ok(id)
}

/// Publishes a batch and waits for every ack.
pub(crate) async fn publish_batch(
    js: &jetstream::Context,
    o: &Options,
    batch: Vec<Outgoing>,
) -> Result<Vec<PublishOutcome>, BusError> {
    let mut pending = Vec::with_capacity(batch.len());
    for out in &batch {
        out.event.validate()?;
        let (subject, headers) = route(o, out)?;
        let body = serde_json::to_vec(&out.event.to_json_value())
            .map_err(|e| BusError::InvalidInput(format!("event {:?}: {e}", out.event.id)))?;
        pending.push(send(js, subject, headers, body).await?);
    }
    let mut outcomes = Vec::with_capacity(pending.len());
    for ack in pending {
        outcomes.push(confirm(ack).await?);
    }
    Ok(outcomes)
}

fn route(o: &Options, out: &Outgoing) -> Result<(String, HeaderMap), BusError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id(&out.event)?.as_str());
    match out.not_before.filter(|t| *t > SystemTime::now()) {
        Some(t) => {
            headers.insert(NOT_BEFORE, unix_ms(t).to_string().as_str());
            Ok((delayed_subject(o, &out.topic), headers))
        }
        None => Ok((event_subject(o, &out.topic), headers)),
    }
}

/// Sends one message; the returned future resolves to the server's ack.
pub(crate) async fn send(
    js: &jetstream::Context,
    subject: String,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Result<PublishAckFuture, BusError> {
    js.publish_with_headers(subject, headers, body.into())
        .await
        .map_err(|e| BusError::Unavailable(format!("NATS publish: {e}")))
}

/// Waits for a publish ack: `Duplicate` when the server dropped a repeat `Nats-Msg-Id`.
pub(crate) async fn confirm(ack: PublishAckFuture) -> Result<PublishOutcome, BusError> {
    let ack = ack
        .await
        .map_err(|e| BusError::Unavailable(format!("NATS publish ack: {e}")))?;
    Ok(if ack.duplicate {
        PublishOutcome::Duplicate
    } else {
        PublishOutcome::Stored
    })
}
