//! Ending a lease: ack, nack with delay, dead-letter. Each is a request to the message's ack
//! subject (the receipt token) and returns once the server has answered, so an `Ok` ack is
//! recorded by the server.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::message::StreamMessage;
use flotilla_bus::{DeadLetter, Error as BusError, Failure, Receipt};
use flotilla_core::{CloudEvent, TopicName};

use crate::NatsBackend;
use crate::codec::{delivered_of, encode_dead_letter, stream_seq_of};
use crate::publish::{confirm, send};
use crate::topology::{TOPIC_HEADER, dlq_subject, topic_of};

impl NatsBackend {
    /// Sends `body` to the receipt's ack subject and waits for the server's answer.
    pub(crate) async fn settle(&self, receipt: &Receipt, body: String) -> Result<(), BusError> {
        stream_seq_of(&receipt.token)?;
        self.inner.leases.release(&receipt.token);
        self.inner
            .client
            .request(receipt.token.clone(), body.into())
            .await
            .map_err(|e| BusError::Unavailable(format!("NATS ack: {e}")))?;
        Ok(())
    }

    pub(crate) async fn nack_after(
        &self,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<(), BusError> {
        let body = if delay.is_zero() {
            "-NAK".to_owned()
        } else {
            format!("-NAK {{\"delay\":{}}}", delay.as_nanos())
        };
        self.settle(receipt, body).await
    }

    /// Writes the dead letter (deduplicated by `Nats-Msg-Id`, so a retry after a crash
    /// cannot make a second entry), then terminates the delivery.
    pub(crate) async fn dead_letter_to_dlq(
        &self,
        receipt: &Receipt,
        failure: Failure,
    ) -> Result<(), BusError> {
        let seq = stream_seq_of(&receipt.token)?;
        let original = self.stored(seq).await?;
        let (topic, event) = self.decode_stored(&original)?;
        let letter = DeadLetter {
            id: String::new(),
            group: receipt.group.clone(),
            topic,
            event,
            reason: failure.reason,
            attempts: u32::try_from(delivered_of(&receipt.token)?).unwrap_or(u32::MAX),
            last_error: failure.last_error,
            published_at: SystemTime::from(original.time),
            dead_lettered_at: SystemTime::now(),
        };
        let mut headers = HeaderMap::new();
        let id = format!("dlq {} {seq}", receipt.group);
        headers.insert("Nats-Msg-Id", id.as_str());
        let subject = dlq_subject(&self.inner.opts, &receipt.group);
        let ack = send(
            &self.inner.js,
            subject,
            headers,
            encode_dead_letter(&letter),
        )
        .await?;
        confirm(ack).await?;
        self.settle(receipt, "+TERM".to_owned()).await
    }

    /// The stored message at `seq`.
    pub(crate) async fn stored(&self, seq: u64) -> Result<StreamMessage, BusError> {
        self.inner
            .stream
            .get_raw_message(seq)
            .await
            .map_err(|e| match e.kind() {
                async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                    BusError::NotFound {
                        what: "message",
                        id: seq.to_string(),
                    }
                }
                _ => BusError::Unavailable(format!("NATS get message {seq}: {e}")),
            })
    }

    /// The topic and event of a stored event or replayed dead letter.
    pub(crate) fn decode_stored(
        &self,
        m: &StreamMessage,
    ) -> Result<(TopicName, CloudEvent), BusError> {
        let bad = |r: String| BusError::Backend(format!("message {} is corrupt: {r}", m.sequence));
        let topic = match topic_of(&self.inner.opts, &m.subject, "ev") {
            Some(t) => t.to_owned(),
            None => m
                .headers
                .get(TOPIC_HEADER)
                .map(|h| h.as_str().to_owned())
                .ok_or_else(|| bad("no topic".into()))?,
        };
        let topic = TopicName::new(topic).map_err(|e| bad(e.to_string()))?;
        let event = CloudEvent::from_json_slice(&m.payload).map_err(|e| bad(e.to_string()))?;
        Ok((topic, event))
    }
}
