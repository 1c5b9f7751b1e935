//! One gathered publish request: sent, and its outcomes handed back to each caller in turn.

use flotilla_bus::{Error, PublishOutcome};
use http::Method;
use serde::Deserialize;

use super::Pending;
use crate::ControlPlane;
use crate::bus::error::{self, from_call};
use crate::http::Call;

/// Sends one request and hands each caller its share of the outcomes.
pub(super) async fn send_batch(cp: ControlPlane, batch: Vec<Pending>) {
    let items = batch.iter().flat_map(|p| p.items.iter());
    let result = post(&cp, items).await;
    let mut outcomes = match result {
        Ok(o) => o.into_iter(),
        Err(e) => {
            let message = e.to_string();
            for p in batch {
                let _ = p.reply.send(Err(error::copy(&e, &message)));
            }
            return;
        }
    };
    for p in batch {
        let mine: Vec<_> = outcomes.by_ref().take(p.items.len()).collect();
        let answer = if mine.len() == p.items.len() {
            Ok(mine)
        } else {
            Err(Error::Backend(
                "the control plane answered fewer outcomes than events".into(),
            ))
        };
        let _ = p.reply.send(answer);
    }
}

async fn post<'a>(
    cp: &ControlPlane,
    items: impl Iterator<Item = &'a Vec<u8>>,
) -> Result<Vec<PublishOutcome>, Error> {
    #[derive(Deserialize)]
    struct Outcomes {
        outcomes: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        outcome: PublishOutcome,
    }
    let mut body = b"{\"events\":[".to_vec();
    for (i, item) in items.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    let call = Call::new(Method::POST, "/api/v1/bus/events").body("application/json", body.into());
    let answer = cp
        .call(call)
        .await
        .map_err(|e| from_call(e, ("bus", "/api/v1/bus/events")))?;
    let got: Outcomes = answer.decode().map_err(|e| Error::Backend(e.to_string()))?;
    Ok(got.outcomes.into_iter().map(|i| i.outcome).collect())
}
