//! Ending a lease by receipt: ack, nack with a delay, dead-letter with the failure. The
//! server fences receipts, so a settle after the lease ended answers [`Error::LeaseLost`].
//!
//! Not retried here: when the control plane cannot be reached the outcome is unknown, the
//! engine logs it, and the event comes back when its lease ends (handlers deduplicate by
//! event id, as with every at-least-once backend).

use std::time::Duration;

use flotilla_bus::{Error, Failure, Receipt};
use http::Method;
use serde_json::{Value, json};

use super::error::from_call;
use super::wire::millis;
use crate::ControlPlane;
use crate::http::{Call, segment};

async fn settle(
    cp: &ControlPlane,
    receipt: &Receipt,
    verb: &str,
    body: Value,
) -> Result<(), Error> {
    let group = receipt.group.as_str();
    let path = format!("/api/v1/bus/groups/{}/{verb}", segment(group));
    cp.call(Call::new(Method::POST, &path).json(&body))
        .await
        .map_err(|e| from_call(e, ("group", group)))?;
    Ok(())
}

pub(super) async fn ack(cp: &ControlPlane, receipt: &Receipt) -> Result<(), Error> {
    settle(cp, receipt, "ack", json!({ "receipt": receipt.token })).await
}

pub(super) async fn nack(
    cp: &ControlPlane,
    receipt: &Receipt,
    delay: Duration,
) -> Result<(), Error> {
    let body = json!({ "receipt": receipt.token, "delay_ms": millis(delay) });
    settle(cp, receipt, "nack", body).await
}

pub(super) async fn dead_letter(
    cp: &ControlPlane,
    receipt: &Receipt,
    failure: Failure,
) -> Result<(), Error> {
    let body = json!({
        "receipt": receipt.token,
        "reason": failure.last_error,
        "failure": failure.reason,
    });
    settle(cp, receipt, "reject", body).await
}
