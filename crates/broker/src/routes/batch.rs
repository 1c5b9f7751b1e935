//! `POST /api/v1/bus/events`: one request publishing to many topics, each event with its own
//! delay. A client that gathers concurrent publishes (the platform backend does) sends them
//! as one request and one backend batch, whatever their topics.

use axum::extract::State;
use bytes::Bytes;
use flotilla_bus::Outgoing;
use flotilla_core::{CloudEvent, TopicName};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, json_body, limits, ok};
use crate::{Broker, Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Batch {
    events: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    topic: String,
    /// A CloudEvent in structured JSON form.
    event: Value,
    /// Deliver not before this many milliseconds after the request arrives.
    #[serde(default)]
    delay_ms: u64,
}

fn outgoing(item: Item, limit: usize) -> Result<Outgoing, Error> {
    let topic = TopicName::new(item.topic).map_err(flotilla_bus::Error::from)?;
    let delay = limits::delay("delay_ms", item.delay_ms)?;
    let size = item.event.to_string().len();
    if size > limit {
        return Err(flotilla_bus::Error::TooLarge { size, limit }.into());
    }
    let event = CloudEvent::from_json_value(item.event).map_err(flotilla_bus::Error::from)?;
    let out = Outgoing::new(topic, event);
    Ok(if delay.is_zero() {
        out
    } else {
        out.deliver_after(delay)
    })
}

pub(crate) async fn publish(State(b): State<Broker>, body: Bytes) -> Answer {
    let batch: Batch = json_body(&body)?;
    if batch.events.is_empty() {
        return Err(Error::BadRequest(
            "events must hold at least one event".into(),
        ));
    }
    let limit = b.options.max_event_bytes;
    let batch = batch
        .events
        .into_iter()
        .enumerate()
        .map(|(i, item)| outgoing(item, limit).map_err(|e| e.at("events", i)))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<String> = batch.iter().map(|o| o.event.id.clone()).collect();
    let outcomes = b.backend.publish(batch).await?;
    let list: Vec<Value> = ids
        .iter()
        .zip(outcomes)
        .map(|(id, o)| json!({ "id": id, "outcome": o }))
        .collect();
    ok(json!({ "outcomes": list }))
}
