//! Ending leases by receipt: ack, nack with a delay, dead-letter with the failure. Concurrent
//! settles (the engine runs many handlers) are gathered into one `POST /api/v1/bus/settle`,
//! as publishes are, and each caller gets its own result. The server fences receipts, so a
//! settle after the lease ended answers [`Error::LeaseLost`].
//!
//! Not retried here: when the control plane cannot be reached the outcome is unknown, the
//! engine logs it, and the event comes back when its lease ends (handlers deduplicate by
//! event id, as with every at-least-once backend).

use std::sync::OnceLock;
use std::time::Duration;

use flotilla_bus::{Error, Failure, GroupName, Receipt};
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::BatchOptions;
use super::error::{copy, from_call};
use super::gather::{self, Bounds, Weighed};
use super::wire::millis;
use crate::http::Call;
use crate::{CallError, ControlPlane, Problem};

/// Most settles the server takes in one request.
const MAX_SETTLES: usize = 1000;

/// One caller's settle, encoded, and where its result goes.
struct Pending {
    item: Vec<u8>,
    group: GroupName,
    reply: oneshot::Sender<Result<(), Error>>,
}

impl Weighed for Pending {
    fn weight(&self) -> (usize, usize) {
        (self.item.len(), 1)
    }
}

/// The queue into the settle-gathering task, started on the first settle.
#[derive(Debug)]
pub(super) struct Settler {
    cp: ControlPlane,
    options: BatchOptions,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

impl Settler {
    pub(super) fn new(cp: ControlPlane, options: BatchOptions) -> Self {
        Self {
            cp,
            options,
            queue: OnceLock::new(),
        }
    }

    fn queue(&self) -> &mpsc::Sender<Pending> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.options.queue.max(1));
            let bounds = Bounds {
                max_bytes: self.options.max_bytes,
                max_items: self.options.max_events.min(MAX_SETTLES),
                in_flight: self.options.in_flight,
            };
            let cp = self.cp.clone();
            tokio::spawn(gather::run(bounds, rx, move |batch| {
                send_batch(cp.clone(), batch)
            }));
            tx
        })
    }

    pub(super) async fn ack(&self, receipt: &Receipt) -> Result<(), Error> {
        self.settle(receipt, "ack", json!({})).await
    }

    pub(super) async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), Error> {
        let extra = json!({ "delay_ms": millis(delay) });
        self.settle(receipt, "nack", extra).await
    }

    pub(super) async fn dead_letter(
        &self,
        receipt: &Receipt,
        failure: Failure,
    ) -> Result<(), Error> {
        let extra = json!({ "reason": failure.last_error, "failure": failure.reason });
        self.settle(receipt, "reject", extra).await
    }

    async fn settle(&self, receipt: &Receipt, action: &str, mut item: Value) -> Result<(), Error> {
        item["group"] = json!(receipt.group);
        item["action"] = json!(action);
        item["receipt"] = json!(receipt.token);
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            item: serde_json::to_vec(&item).map_err(|e| Error::Backend(e.to_string()))?,
            group: receipt.group.clone(),
            reply,
        };
        self.queue()
            .send(pending)
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// One settle's result as the server answers it.
#[derive(Debug, Deserialize)]
struct Outcome {
    status: u16,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

impl Outcome {
    fn into_result(self, group: &GroupName) -> Result<(), Error> {
        if (200..300).contains(&self.status) {
            return Ok(());
        }
        let e = CallError::Status {
            status: self.status,
            problem: Problem {
                kind: self.kind,
                detail: self.detail,
                ..Problem::default()
            },
            retry_after: None,
        };
        Err(from_call(e, ("group", group.as_str())))
    }
}

/// Sends one gathered request and hands each caller its result.
async fn send_batch(cp: ControlPlane, batch: Vec<Pending>) {
    match post(&cp, &batch).await {
        Ok(outcomes) if outcomes.len() == batch.len() => {
            for (p, outcome) in batch.into_iter().zip(outcomes) {
                let _ = p.reply.send(outcome.into_result(&p.group));
            }
        }
        Ok(_) => {
            let e = Error::Backend("the control plane answered another number of results".into());
            let message = e.to_string();
            for p in batch {
                let _ = p.reply.send(Err(copy(&e, &message)));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for p in batch {
                let _ = p.reply.send(Err(copy(&e, &message)));
            }
        }
    }
}

async fn post(cp: &ControlPlane, batch: &[Pending]) -> Result<Vec<Outcome>, Error> {
    #[derive(Deserialize)]
    struct Results {
        results: Vec<Outcome>,
    }
    let mut body = b"{\"settles\":[".to_vec();
    for (i, p) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&p.item);
    }
    body.extend_from_slice(b"]}");
    let call = Call::new(Method::POST, "/api/v1/bus/settle").body("application/json", body.into());
    let answer = cp
        .call(call)
        .await
        .map_err(|e| from_call(e, ("bus", "/api/v1/bus/settle")))?;
    let got: Results = answer.decode().map_err(|e| Error::Backend(e.to_string()))?;
    Ok(got.results)
}
