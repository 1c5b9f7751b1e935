//! A discovery source whose instances are set by hand: static upstream lists in configuration,
//! and tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotilla_core::{ServiceInstance, ServiceName};
use tokio::sync::watch;

use crate::{Discovery, Endpoint, HealthStatus, ServiceSet};

/// Instances set by hand; every change bumps the service's revision and wakes its watchers only.
#[derive(Debug, Clone, Default)]
pub struct StaticDiscovery {
    services: Arc<Mutex<HashMap<ServiceName, watch::Sender<ServiceSet>>>>,
}

impl StaticDiscovery {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the endpoints of `service`.
    pub fn set(&self, service: &ServiceName, endpoints: Vec<Endpoint>) {
        let sender = self.sender(service);
        sender.send_modify(|set| {
            set.revision += 1;
            set.endpoints = endpoints.into();
        });
    }

    /// Replaces the instances of `service`, all passing.
    pub fn set_passing(&self, service: &ServiceName, instances: Vec<ServiceInstance>) {
        let endpoints = instances
            .into_iter()
            .map(|instance| Endpoint {
                instance,
                status: HealthStatus::Passing,
            })
            .collect();
        self.set(service, endpoints);
    }

    /// Changes the status of one instance; returns false when it is unknown.
    pub fn set_status(&self, service: &ServiceName, id: &str, status: HealthStatus) -> bool {
        let sender = self.sender(service);
        sender.send_if_modified(|set| {
            let mut endpoints: Vec<Endpoint> = set.endpoints.to_vec();
            let Some(e) = endpoints.iter_mut().find(|e| e.instance.id == id) else {
                return false;
            };
            e.status = status;
            set.endpoints = endpoints.into();
            set.revision += 1;
            true
        })
    }

    fn sender(&self, service: &ServiceName) -> watch::Sender<ServiceSet> {
        let mut map = self.services.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(service.clone())
            .or_insert_with(|| watch::channel(ServiceSet::default()).0)
            .clone()
    }
}

impl Discovery for StaticDiscovery {
    fn watch(&self, service: &ServiceName) -> watch::Receiver<ServiceSet> {
        self.sender(service).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceName {
        ServiceName::new(s).unwrap()
    }

    #[test]
    fn unknown_service_is_an_empty_set_that_fills_in() {
        let d = StaticDiscovery::new();
        let rx = d.watch(&name("users"));
        assert_eq!(rx.borrow().revision, 0);
        d.set_passing(
            &name("users"),
            vec![ServiceInstance::new(name("users"), "h", 1)],
        );
        assert_eq!(rx.borrow().revision, 1);
        assert_eq!(rx.borrow().routable().count(), 1);
    }

    #[test]
    fn a_change_to_one_service_does_not_wake_watchers_of_another() {
        let d = StaticDiscovery::new();
        let mut users = d.watch(&name("users"));
        users.mark_unchanged();
        d.set_passing(
            &name("orders"),
            vec![ServiceInstance::new(name("orders"), "h", 1)],
        );
        assert!(!users.has_changed().unwrap());
    }

    #[test]
    fn critical_and_draining_instances_are_not_routable() {
        let d = StaticDiscovery::new();
        let svc = name("users");
        let a = ServiceInstance::new(svc.clone(), "a", 1);
        let b = ServiceInstance::new(svc.clone(), "b", 1);
        d.set_passing(&svc, vec![a.clone(), b]);
        assert!(d.set_status(&svc, &a.id, HealthStatus::Draining));
        let set = d.snapshot(&svc);
        let ids: Vec<_> = set.routable().map(|i| i.address.clone()).collect();
        assert_eq!(ids, vec!["b".to_string()]);
        assert!(!d.set_status(&svc, "nope", HealthStatus::Passing));
    }
}
