//! What the control plane's bus is (`GET /api/v1/bus`): its backend, its capabilities and
//! the limits a request must respect. Asked once, on first use, and kept.

use std::sync::Arc;

use flotilla_bus::{Capabilities, Error};
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::error::from_call;
use crate::ControlPlane;
use crate::http::Call;

/// Before the control plane was first reached, nothing is promised.
pub(super) const NOTHING_KNOWN: Capabilities = Capabilities {
    per_key_order: false,
    delayed_publish: false,
    dedupe: false,
    fenced_receipts: false,
};

#[derive(Debug, Deserialize)]
pub(super) struct Info {
    pub(super) backend: String,
    #[serde(with = "CapabilitiesWire")]
    pub(super) capabilities: Capabilities,
    pub(super) limits: Limits,
}

#[derive(Deserialize)]
#[serde(remote = "Capabilities")]
struct CapabilitiesWire {
    per_key_order: bool,
    delayed_publish: bool,
    dedupe: bool,
    fenced_receipts: bool,
}

/// The server's bounds (see docs/bus.md).
#[derive(Debug, Clone, Copy, Deserialize)]
pub(super) struct Limits {
    pub(super) max_event_bytes: usize,
    pub(super) max_body_bytes: usize,
    pub(super) max_pull: usize,
    pub(super) max_wait_ms: u64,
    pub(super) max_lease_ms: u64,
    pub(super) max_delay_ms: u64,
}

/// The description, fetched on first success and kept (a control plane that restarts with
/// another backend is a new deployment; services restart with it).
#[derive(Debug, Default)]
pub(super) struct Cached(OnceCell<Arc<Info>>);

impl Cached {
    pub(super) fn known(&self) -> Option<&Arc<Info>> {
        self.0.get()
    }

    pub(super) async fn get(&self, cp: &ControlPlane) -> Result<Arc<Info>, Error> {
        let info = self
            .0
            .get_or_try_init(|| async {
                let answer = cp
                    .call(Call::get("/api/v1/bus"))
                    .await
                    .map_err(|e| from_call(e, ("bus", "/api/v1/bus")))?;
                let info: Info = answer.decode().map_err(|e| Error::Backend(e.to_string()))?;
                Ok::<_, Error>(Arc::new(info))
            })
            .await?;
        Ok(Arc::clone(info))
    }
}
