//! Leasing events: the long-poll `POST /api/v1/bus/groups/{group}/pull`, one request per
//! `receive`, answered as soon as the first event is leased (with up to `max`).
//!
//! Why not a background SSE stream per group feeding a buffer: the contract's `receive`
//! chooses `max` and the lease per call, and the delivery engine asks for exactly as many
//! events as it has free handlers. A stream's window would lease events no handler asked
//! for; their lease and their attempt count would run while they sat in the buffer, so a
//! slow subscription could see events dead-lettered that no handler ever ran. The long poll
//! leases only what is asked, keeps one keep-alive connection per subscription loop, and
//! answers within a round trip of the publish (see docs/BENCHMARKS.md, platform bus).

use std::time::Duration;

use flotilla_bus::{Delivery, Error, GroupName};
use http::Method;
use serde_json::json;
use tokio::time::Instant;

use super::error::from_call;
use super::info::Info;
use super::wire::{Deliveries, millis};
use crate::ControlPlane;
use crate::http::{Call, segment};

pub(super) async fn receive(
    cp: &ControlPlane,
    info: &Info,
    group: &GroupName,
    max: usize,
    lease: Duration,
    wait: Duration,
) -> Result<Vec<Delivery>, Error> {
    let limits = &info.limits;
    let lease_ms = millis(lease).max(1);
    if lease_ms > limits.max_lease_ms {
        return Err(Error::InvalidInput(format!(
            "lease {lease:?} exceeds the control plane's limit of {} ms",
            limits.max_lease_ms
        )));
    }
    let max = max.clamp(1, limits.max_pull);
    // A wait longer than the server allows is served as several pulls.
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait_ms = millis(left).min(limits.max_wait_ms);
        let got = pull(cp, group, max, lease_ms, wait_ms).await?;
        if !got.is_empty() || Instant::now() >= deadline {
            return Ok(got);
        }
    }
}

async fn pull(
    cp: &ControlPlane,
    group: &GroupName,
    max: usize,
    lease_ms: u64,
    wait_ms: u64,
) -> Result<Vec<Delivery>, Error> {
    let path = format!("/api/v1/bus/groups/{}/pull", segment(group.as_str()));
    let body = json!({ "max": max, "lease_ms": lease_ms, "wait_ms": wait_ms });
    // The server holds the request up to `wait_ms`; the deadline covers that plus a call.
    let deadline = Duration::from_millis(wait_ms) + cp.timeout();
    let call = Call::new(Method::POST, &path).json(&body).timeout(deadline);
    let answer = cp
        .call(call)
        .await
        .map_err(|e| from_call(e, ("group", group.as_str())))?;
    let got: Deliveries = answer.decode().map_err(|e| Error::Backend(e.to_string()))?;
    Ok(got
        .deliveries
        .into_iter()
        .map(|d| d.into_delivery(group))
        .collect())
}
