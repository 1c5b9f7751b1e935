//! Hosted projections: read models a service keeps up to date from the event store, run as
//! managed parts (live from their checkpoint, stopped on shutdown) and rebuilt on demand
//! through the service's admin routes.

mod host;
mod routes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use flotilla_eventstore::EventStore;
use flotilla_eventstore::projection::Projection;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminAccess;
use crate::error::Error;
use crate::parts::{Finish, Parts};
use crate::service::MicroserviceBuilder;

use host::Shared;

/// The projections a builder was given, by name.
#[derive(Default)]
pub(crate) struct HostedProjections {
    entries: Vec<(Arc<Shared>, Box<dyn Projection>)>,
}

impl HostedProjections {
    /// Turns the projections into managed parts and returns the admin routes that report and
    /// rebuild them (none when there is no projection).
    pub(crate) fn into_parts(
        self,
        parts: &mut Parts,
        access: AdminAccess,
    ) -> Result<Option<Router>, Error> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let mut by_name = BTreeMap::new();
        for (shared, projection) in self.entries {
            flotilla_eventstore::store::validate_subscriber(&shared.name)
                .map_err(|e| Error::Setup(format!("projection name: {e}")))?;
            if by_name.contains_key(&shared.name) {
                let msg = format!("two projections are named {:?}", shared.name);
                return Err(Error::Setup(msg));
            }
            by_name.insert(shared.name.clone(), Arc::clone(&shared));
            parts.add(Box::new(move |stop| {
                Box::pin(start(shared, projection, stop))
            }));
        }
        Ok(Some(routes::router(Arc::new(by_name), access)))
    }
}

async fn start(
    shared: Arc<Shared>,
    projection: Box<dyn Projection>,
    stop: CancellationToken,
) -> Result<Finish, Error> {
    let name = shared.name.clone();
    let mut task = tokio::spawn(host::host(shared, projection, stop));
    Ok(Box::new(move |deadline: Duration| {
        Box::pin(async move {
            if tokio::time::timeout(deadline, &mut task).await.is_err() {
                // Its checkpoint is saved only after an event is applied: the next run applies
                // the interrupted event again (at least once).
                tracing::warn!(projection = %name, ?deadline, "projection outlived the shutdown deadline; aborting it");
                task.abort();
            }
        })
    }))
}

impl MicroserviceBuilder {
    /// Hosts `projection`: it runs live from its checkpoint in `store` while the service runs
    /// (at least once: make `apply` idempotent), stops on shutdown, and can be rebuilt with
    /// `POST /admin/projections/{name}/rebuild`; `GET /admin/projections` reports each one's
    /// state, checkpoint, lag and rebuild progress. Admin routes need `service.admin_token`
    /// as a bearer token when it is set, and answer loopback callers only otherwise.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use flotilla::eventsourcing::{EventStore, RecordedEvent};
    /// # use flotilla::eventsourcing::projection::{BoxError, Projection};
    /// struct OrderCount(u64);
    ///
    /// #[async_trait::async_trait]
    /// impl Projection for OrderCount {
    ///     fn name(&self) -> &str { "order-count" }
    ///     async fn apply(&mut self, _: &RecordedEvent) -> Result<(), BoxError> { self.0 += 1; Ok(()) }
    ///     async fn reset(&mut self) -> Result<(), BoxError> { self.0 = 0; Ok(()) }
    /// }
    ///
    /// # fn demo(store: Arc<dyn EventStore>) -> Result<(), flotilla::Error> {
    /// let service = flotilla::Microservice::builder("orders")?
    ///     .projection(store, OrderCount(0))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn projection<P: Projection + 'static>(
        mut self,
        store: Arc<dyn EventStore>,
        projection: P,
    ) -> Self {
        let shared = Arc::new(Shared::new(projection.name().to_owned(), store));
        self.projections
            .entries
            .push((shared, Box::new(projection)));
        self
    }

    /// Hosts a projection whose read model lives in memory, so starts empty: it is rebuilt
    /// from the beginning of the store at every start, then follows the store live as
    /// [`projection`](Self::projection) does. Resuming from the stored checkpoint instead
    /// would leave it holding only what was appended since the last run.
    pub fn memory_projection<P: Projection + 'static>(
        self,
        store: Arc<dyn EventStore>,
        projection: P,
    ) -> Self {
        let hosted = self.projection(store, projection);
        if let Some((shared, _)) = hosted.projections.entries.last() {
            // A new projection is neither stopped nor rebuilding: the request is taken.
            let _ = shared.request_rebuild();
        }
        hosted
    }
}
