//! A publish as items of `POST /api/v1/bus/events`, refused here when the server would
//! refuse it (delayed publish it lacks, an event over its size limit).

use std::time::SystemTime;

use flotilla_bus::{Error, Outgoing};

use crate::bus::info::Info;
use crate::bus::wire::millis;

/// Encodes each event as one item of the request, refusing what the server would refuse.
pub(super) fn encode(info: &Info, batch: &[Outgoing]) -> Result<Vec<Vec<u8>>, Error> {
    let now = SystemTime::now();
    batch
        .iter()
        .map(|out| {
            let delay_ms = match out.not_before {
                None => 0,
                Some(_) if !info.capabilities.delayed_publish => {
                    return Err(Error::Unsupported {
                        backend: "platform",
                        feature: "delayed publish (the control plane's bus lacks it)",
                    });
                }
                // Sent as a delay so the two machines' clocks need not agree.
                Some(at) => at.duration_since(now).map_or(0, millis),
            };
            if delay_ms > info.limits.max_delay_ms {
                return Err(Error::InvalidInput(format!(
                    "delivery delay of {delay_ms} ms exceeds the control plane's limit of {} ms",
                    info.limits.max_delay_ms
                )));
            }
            let event =
                serde_json::to_vec(&out.event).map_err(|e| Error::Backend(e.to_string()))?;
            let limit = info.limits.max_event_bytes;
            if event.len() > limit {
                return Err(Error::TooLarge {
                    size: event.len(),
                    limit,
                });
            }
            Ok(item(out, delay_ms, &event))
        })
        .collect()
}

/// `{"topic":..,"delay_ms":..,"event":..}` around the already encoded event (so its size
/// was checked on the bytes sent, and it is not encoded twice).
fn item(out: &Outgoing, delay_ms: u64, event: &[u8]) -> Vec<u8> {
    let topic = serde_json::to_string(out.topic.as_str()).expect("a string encodes as JSON");
    let mut item = Vec::with_capacity(event.len() + topic.len() + 48);
    item.extend_from_slice(b"{\"topic\":");
    item.extend_from_slice(topic.as_bytes());
    item.extend_from_slice(format!(",\"delay_ms\":{delay_ms},\"event\":").as_bytes());
    item.extend_from_slice(event);
    item.push(b'}');
    item
}
