//! Self-registration: a service announces itself to the registry on start, keeps the
//! registration alive, and drains then deregisters before its listener closes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::ServiceInstance;
use flotilla_registry_client::{Agent, Check, ClientOptions, Registration, RegistryClient};

use crate::service::{Hook, HookContext, MicroserviceBuilder};

/// How a service registers itself.
#[derive(Debug, Clone)]
pub struct SelfRegistration {
    /// The control plane's URL (`http://127.0.0.1:4400`), or several registry replicas
    /// separated by commas (`http://r1:4400,http://r2:4400`).
    pub url: String,
    /// Bearer token for registry writes, when required.
    pub token: Option<String>,
    /// The address other services should call; default: the listener's IP, or `127.0.0.1`
    /// when it listens on every interface.
    pub address: Option<String>,
    /// Tags of this instance.
    pub tags: Vec<String>,
    /// Metadata of this instance.
    pub metadata: BTreeMap<String, String>,
    /// The check the registry runs: HTTP on `/health` every 5 s by default.
    pub check: Check,
}

impl SelfRegistration {
    /// Registration with the registry at `url`, checked over HTTP on `/health` every 5 s and
    /// removed after 60 s critical.
    pub fn new(url: impl Into<String>) -> Self {
        let check = Check::Http {
            path: "/health".into(),
            interval: Duration::from_secs(5),
            deregister_after: Some(Duration::from_secs(60)),
        };
        Self {
            url: url.into(),
            token: None,
            address: None,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            check,
        }
    }

    fn instance(&self, ctx: &HookContext) -> ServiceInstance {
        let ip = ctx.local_addr.ip();
        let address = self.address.clone().unwrap_or_else(|| {
            if ip.is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                ip.to_string()
            }
        });
        let mut instance = ServiceInstance::new(ctx.name.clone(), address, ctx.local_addr.port());
        instance.version = ctx.version.clone();
        instance.tags = self.tags.clone();
        instance.metadata = self.metadata.clone();
        instance
    }
}

impl MicroserviceBuilder {
    /// Registers the service with the registry once it listens (retrying in the background
    /// while the registry is unreachable: the service starts regardless), re-registers if the
    /// registry forgets it, and on shutdown marks it draining then deregisters it before the
    /// listener closes.
    pub fn register_with(self, registration: SelfRegistration) -> Self {
        let agent: Arc<Mutex<Option<Agent>>> = Arc::default();
        let (starting, stopping) = (agent.clone(), agent);
        let start = Hook::new("self-registration", move |ctx: HookContext| async move {
            let mut options = ClientOptions::new(registration.url.clone());
            options.token = registration.token.clone();
            let client = RegistryClient::new(options).map_err(|e| e.to_string())?;
            let mut reg =
                Registration::new(registration.instance(&ctx), registration.check.clone());
            // Start hooks run once the event handlers and projections run and the listener is
            // bound, right before the service reports ready: callers may use it at once
            // rather than wait for the registry's first probe.
            reg.starts_passing = true;
            let running = Agent::start(client, reg);
            *starting.lock().unwrap_or_else(|p| p.into_inner()) = Some(running);
            Ok(())
        });
        let drain = Hook::new("deregistration", move |_| async move {
            let running = stopping.lock().unwrap_or_else(|p| p.into_inner()).take();
            match running {
                Some(agent) => agent.shutdown().await.map_err(|e| e.to_string()),
                None => Ok(()),
            }
        });
        self.on_start(start).on_drain(drain)
    }
}
