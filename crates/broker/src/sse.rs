//! Pull over server-sent events: `GET /api/v1/bus/groups/{group}/events`.
//!
//! The stream leases deliveries exactly as a long-poll pull does and sends each as an SSE
//! event `delivery` (the CloudEvent with its receipt, topic and attempt); the client settles
//! them through the ack / nack / reject endpoints. At most `max_in_flight` unsettled
//! deliveries are out per stream: the next is sent when one is settled or its lease ends.
//! When the client goes away, deliveries leased but not yet sent are released at once and
//! those sent but unsettled come back after their lease, like any crashed consumer's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flotilla_bus::{Backend, Delivery, GroupName};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use crate::leases::Leases;
use crate::routes::{delivery, group, limits, query_error};
use crate::{Broker, Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Unsettled deliveries out at once on this stream (default 16, at most the
    /// `max_in_flight` option; more is a 400).
    max_in_flight: Option<usize>,
    /// Lease of each delivery in milliseconds (default 30 000, at most one day).
    lease_ms: Option<u64>,
}

pub(crate) async fn events(
    State(b): State<Broker>,
    Path(g): Path<String>,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = q.map_err(query_error)?;
    let group = group(g)?;
    let lease = limits::lease(q.lease_ms.unwrap_or(30_000))?;
    let default_window = b.options.max_in_flight.min(16);
    let window = q.max_in_flight.unwrap_or(default_window);
    let window = limits::within("max_in_flight", window, 1, b.options.max_in_flight)?;
    let stream_slot = Arc::clone(&b.streams)
        .try_acquire_owned()
        .map_err(|_| Error::TooManyStreams(b.options.max_sse_streams))?;
    let window = Arc::new(Semaphore::new(window));
    let slots = free_slots(&window);
    // A first lease without waiting: an unknown group answers 404 here, not mid-stream.
    let first = b
        .backend
        .receive(&group, slots.len(), lease, Duration::ZERO)
        .await?;
    let (tx, rx) = mpsc::channel(1);
    let pump = Pump {
        backend: Arc::clone(&b.backend),
        leases: Arc::clone(&b.leases),
        group,
        window,
        lease,
        wait: b.options.max_wait(),
        tx,
        _stream_slot: stream_slot,
    };
    tokio::spawn(pump.run(first, slots));
    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Takes every free in-flight slot of a stream.
fn free_slots(window: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    std::iter::from_fn(|| Arc::clone(window).try_acquire_owned().ok()).collect()
}

/// Feeds one SSE stream until the client goes away or the backend fails.
struct Pump {
    backend: Arc<dyn Backend>,
    leases: Arc<Leases>,
    group: GroupName,
    window: Arc<Semaphore>,
    lease: Duration,
    wait: Duration,
    tx: mpsc::Sender<Event>,
    /// Held for the stream's life: one of `max_sse_streams`.
    _stream_slot: OwnedSemaphorePermit,
}

enum Next {
    Continue,
    Stop,
}

impl Pump {
    async fn run(self, first: Vec<Delivery>, slots: Vec<OwnedSemaphorePermit>) {
        if let Next::Stop = self.send(first, slots).await {
            return;
        }
        loop {
            self.leases.expire(Instant::now());
            let Some(slots) = self.wait_for_slots().await else {
                return;
            };
            if slots.is_empty() {
                continue;
            }
            let got = tokio::select! {
                () = self.tx.closed() => return,
                got = self.backend.receive(&self.group, slots.len(), self.lease, self.wait) => got,
            };
            let next = match got {
                Ok(deliveries) => self.send(deliveries, slots).await,
                Err(e) => self.fail(e).await,
            };
            if let Next::Stop = next {
                return;
            }
        }
    }

    /// Free slots; empty when none freed before the next lease check. `None`: client gone.
    async fn wait_for_slots(&self) -> Option<Vec<OwnedSemaphorePermit>> {
        let slots = free_slots(&self.window);
        if !slots.is_empty() {
            return Some(slots);
        }
        // Settles free a slot at once; expiries are checked at least once a second.
        let tick = self.lease.min(Duration::from_secs(1));
        tokio::select! {
            () = self.tx.closed() => None,
            slot = Arc::clone(&self.window).acquire_owned() => {
                let mut slots: Vec<_> = slot.into_iter().collect();
                slots.extend(free_slots(&self.window));
                Some(slots)
            }
            () = tokio::time::sleep(tick) => Some(Vec::new()),
        }
    }

    /// Sends each delivery holding one slot; unused slots are returned by dropping them.
    async fn send(&self, deliveries: Vec<Delivery>, slots: Vec<OwnedSemaphorePermit>) -> Next {
        let mut slots = slots.into_iter();
        let mut pending = deliveries.into_iter();
        while let Some(d) = pending.next() {
            let Some(slot) = slots.next() else {
                // The backend leased more than asked: those go back at once.
                let extra = std::iter::once(d).chain(pending.by_ref());
                self.release(extra.map(|d| d.receipt)).await;
                break;
            };
            self.leases
                .hold(&d.receipt, slot, Instant::now() + self.lease);
            let receipt = d.receipt.clone();
            let event = Event::default()
                .event("delivery")
                .id(receipt.token.clone())
                .data(delivery(d).to_string());
            if self.tx.send(event).await.is_err() {
                let unsent = std::iter::once(receipt).chain(pending.map(|d| d.receipt));
                self.release(unsent).await;
                return Next::Stop;
            }
        }
        Next::Continue
    }

    /// Gives back deliveries leased for a client that went away before seeing them.
    async fn release(&self, receipts: impl Iterator<Item = flotilla_bus::Receipt>) {
        for r in receipts {
            self.leases.settled(&r);
            if let Err(e) = self.backend.nack(&r, Duration::ZERO).await {
                tracing::debug!(group = %self.group, error = %e, "unsent delivery left to its lease");
            }
        }
    }

    /// Ends the stream with an `error` event (problem+json data; no internal detail).
    async fn fail(&self, e: flotilla_bus::Error) -> Next {
        tracing::error!(group = %self.group, error = %e, "bus event stream failed");
        let problem = serde_json::json!({
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "the event bus failed while streaming; reconnect to resume",
        });
        let _ = self
            .tx
            .send(Event::default().event("error").data(problem.to_string()))
            .await;
        Next::Stop
    }
}
