//! The dead-letter queue: records on `<prefix>.dlq.<group>`, read by stream sequence (the
//! dead letter's id) with JetStream's get-next-by-subject, so listing needs no consumer.

use async_nats::HeaderMap;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
use flotilla_bus::{DeadLetter, DlqQuery, Error as BusError, GroupName};

use crate::NatsBackend;
use crate::codec::decode_dead_letter;
use crate::publish::{confirm, send};
use crate::topology::{TOPIC_HEADER, dlq_subject, replay_subject};

const DEFAULT_LIMIT: usize = 100;

impl NatsBackend {
    pub(crate) async fn list_dead_letters(
        &self,
        q: &DlqQuery,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let filter = match &q.group {
            Some(g) => dlq_subject(&self.inner.opts, g),
            None => format!("{}.dlq.>", self.inner.opts.prefix),
        };
        let limit = if q.limit == 0 { DEFAULT_LIMIT } else { q.limit };
        let mut next = match &q.after {
            Some(a) => parse_id(a)? + 1,
            None => 1,
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(m) = self.next_by_subject(next, &filter).await? else {
                break;
            };
            next = m.sequence + 1;
            out.push(decode_dead_letter(m.sequence, &m.payload)?);
        }
        Ok(out)
    }

    async fn next_by_subject(
        &self,
        seq: u64,
        filter: &str,
    ) -> Result<Option<StreamMessage>, BusError> {
        let got = self
            .inner
            .stream
            .raw_message_builder()
            .sequence(seq)
            .next_by_subject(filter)
            .send()
            .await;
        match got {
            Ok(m) => Ok(Some(m)),
            Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(BusError::Unavailable(format!(
                "NATS get next on {filter}: {e}"
            ))),
        }
    }

    pub(crate) async fn dead_letter_by_id(&self, id: &str) -> Result<DeadLetter, BusError> {
        let seq = parse_id(id)?;
        let not_found = || BusError::NotFound {
            what: "dead letter",
            id: id.to_owned(),
        };
        let m = self.stored(seq).await.map_err(|_| not_found())?;
        let dlq_space = format!("{}.dlq.", self.inner.opts.prefix);
        if !m.subject.starts_with(dlq_space.as_str()) {
            return Err(not_found());
        }
        decode_dead_letter(seq, &m.payload)
    }

    /// Publishes the event to the group's replay subject (deduplicated by the dead letter's
    /// id), then deletes the dead letter: a crash in between leaves the entry, and replaying
    /// it again inside the dedupe window does not deliver twice.
    pub(crate) async fn replay_dead_letter(&self, id: &str) -> Result<(), BusError> {
        let letter = self.dead_letter_by_id(id).await?;
        self.declared_filter(&letter.group).await?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("replay {id}").as_str());
        headers.insert(TOPIC_HEADER, letter.topic.as_str());
        let body = serde_json::to_vec(&letter.event.to_json_value())
            .map_err(|e| BusError::Backend(format!("dead letter {id}: {e}")))?;
        let subject = replay_subject(&self.inner.opts, &letter.group);
        confirm(send(&self.inner.js, subject, headers, body).await?).await?;
        self.delete_seq(parse_id(id)?).await?;
        Ok(())
    }

    pub(crate) async fn purge_dead_letters(
        &self,
        group: &GroupName,
        ids: &[String],
    ) -> Result<u64, BusError> {
        if ids.is_empty() {
            return self
                .purge_subject(dlq_subject(&self.inner.opts, group))
                .await;
        }
        let mut deleted = 0;
        for id in ids {
            match self.dead_letter_by_id(id).await {
                Ok(d) if &d.group == group => {
                    deleted += u64::from(self.delete_seq(parse_id(id)?).await?)
                }
                Ok(_) | Err(BusError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    pub(crate) async fn purge_subject(&self, subject: String) -> Result<u64, BusError> {
        let r = self
            .inner
            .stream
            .purge()
            .filter(subject.clone())
            .await
            .map_err(|e| BusError::Unavailable(format!("NATS purge {subject}: {e}")))?;
        Ok(r.purged)
    }

    async fn delete_seq(&self, seq: u64) -> Result<bool, BusError> {
        self.inner
            .stream
            .delete_message(seq)
            .await
            .map_err(|e| BusError::Unavailable(format!("NATS delete message {seq}: {e}")))
    }
}

fn parse_id(id: &str) -> Result<u64, BusError> {
    id.parse().map_err(|_| BusError::NotFound {
        what: "dead letter",
        id: id.to_owned(),
    })
}
