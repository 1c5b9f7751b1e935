//! The `Microservice` builder and its run loop (start-up, serving, graceful shutdown).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use flotilla_core::ServiceName;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::error::Error;
use crate::health::{HealthCheck, Probes};
use crate::lifecycle::{Lifecycle, State};
use crate::metrics::Metrics;
use crate::middleware::Observe;
use crate::observe_service::{ObserveLayer, Settings};
use crate::parts::Parts;

/// What a lifecycle hook learns about the service.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// The service's name.
    pub name: ServiceName,
    /// Its version.
    pub version: String,
    /// The address the listener is bound to.
    pub local_addr: SocketAddr,
    /// The service's metrics registry.
    pub metrics: Metrics,
}

type HookFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A named lifecycle hook.
pub struct Hook {
    name: String,
    run: Box<dyn FnOnce(HookContext) -> HookFuture + Send>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Hook {
    /// A hook named `name` running `f` once.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: FnOnce(HookContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            run: Box::new(move |ctx| Box::pin(f(ctx))),
        }
    }
}

type TaskFn = Box<dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Builds a [`Microservice`].
pub struct MicroserviceBuilder {
    name: ServiceName,
    version: String,
    description: String,
    config: ServiceConfig,
    routes: Router,
    liveness: Vec<HealthCheck>,
    readiness: Vec<HealthCheck>,
    on_start: Vec<Hook>,
    on_drain: Vec<Hook>,
    on_shutdown: Vec<Hook>,
    tasks: Vec<(String, TaskFn)>,
    metrics: Metrics,
    closing: CancellationToken,
    #[cfg(feature = "events")]
    pub(crate) events: crate::event_handlers::EventHandlers,
    #[cfg(feature = "eventsourcing")]
    pub(crate) projections: crate::projections::HostedProjections,
}

impl std::fmt::Debug for MicroserviceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicroserviceBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MicroserviceBuilder {
    /// The service's version, shown by `/`, `/health` and registration.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// A one-line description, shown by `/`.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The SDK's settings (see [`ServiceConfig::load`]).
    pub fn config(mut self, config: ServiceConfig) -> Self {
        self.config = config;
        self
    }

    /// The service's own routes, merged with the built-in ones.
    pub fn routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// A liveness check, reported by `/health`.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.liveness.push(check);
        self
    }

    /// A readiness check of a dependency, reported by `/ready`.
    pub fn readiness_check(mut self, check: HealthCheck) -> Self {
        self.readiness.push(check);
        self
    }

    /// Runs after the listener is bound and before the service reports ready; a failure stops
    /// start-up.
    pub fn on_start(mut self, hook: Hook) -> Self {
        self.on_start.push(hook);
        self
    }

    /// Runs when shutdown begins, while requests are still served (deregister, mark draining).
    pub fn on_drain(mut self, hook: Hook) -> Self {
        self.on_drain.push(hook);
        self
    }

    /// Runs after the listener closed and in-flight requests finished (flush, close pools).
    pub fn on_shutdown(mut self, hook: Hook) -> Self {
        self.on_shutdown.push(hook);
        self
    }

    /// A background task (an event consumer, a poller) started with the service. Its token is
    /// cancelled when shutdown begins; the service waits for it (up to the shutdown deadline).
    pub fn task<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .push((name.into(), Box::new(move |t| Box::pin(f(t)))));
        self
    }

    /// The service's metrics registry, to register custom metrics before building.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A token cancelled when the listener closes during shutdown. End long-lived responses
    /// (server-sent events, long polls) when it fires, so shutdown does not wait for them
    /// until the deadline; streaming responses still open at the deadline are ended then.
    pub fn closing_token(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Validates the configuration and assembles the service.
    pub fn build(self) -> Result<Microservice, Error> {
        crate::config::Validate::validate(&self.config).map_err(|e| crate::ConfigError {
            key: format!("service.{}", e.key),
            ..e
        })?;
        let managed = Managed {
            parts: Parts::default(),
            routes: self.routes,
            readiness: self.readiness,
        };
        #[cfg(feature = "events")]
        let managed = managed.with_events(self.events)?;
        #[cfg(feature = "eventsourcing")]
        let managed = managed.with_projections(self.projections, &self.config)?;
        let Managed {
            parts,
            routes,
            readiness,
        } = managed;
        let lifecycle = Lifecycle::default();
        let cut_streams = CancellationToken::new();
        let probes = Probes {
            name: self.name.as_str().into(),
            version: self.version.as_str().into(),
            lifecycle: lifecycle.clone(),
            liveness: self.liveness.into(),
            readiness: readiness.into(),
        };
        let app = assemble(
            routes,
            probes,
            &self.metrics,
            &self.config,
            &self.description,
            cut_streams.clone(),
        );
        Ok(Microservice {
            name: self.name,
            version: self.version,
            config: self.config,
            app,
            lifecycle,
            hooks: Hooks {
                start: self.on_start,
                drain: self.on_drain,
                shutdown: self.on_shutdown,
            },
            tasks: self.tasks,
            parts,
            metrics: self.metrics,
            shutdown: CancellationToken::new(),
            closing: self.closing,
            cut_streams,
        })
    }
}

/// What the managed parts (event handlers, hosted projections) add to a service: the parts
/// to start, their admin routes and their readiness checks.
struct Managed {
    parts: Parts,
    routes: Router,
    readiness: Vec<HealthCheck>,
}

impl Managed {
    #[cfg(feature = "events")]
    fn with_events(mut self, events: crate::event_handlers::EventHandlers) -> Result<Self, Error> {
        let waiting = events.into_parts(&mut self.parts)?;
        self.readiness.extend(waiting);
        Ok(self)
    }

    #[cfg(feature = "eventsourcing")]
    fn with_projections(
        mut self,
        projections: crate::projections::HostedProjections,
        config: &ServiceConfig,
    ) -> Result<Self, Error> {
        let access = crate::admin::AdminAccess::new(config.admin_token.as_deref());
        if let Some(admin) = projections.into_parts(&mut self.parts, access)? {
            self.routes = self.routes.merge(admin);
        }
        Ok(self)
    }
}

fn assemble(
    routes: Router,
    probes: Probes,
    metrics: &Metrics,
    config: &ServiceConfig,
    description: &str,
    cut_streams: CancellationToken,
) -> Router {
    let (p1, p2) = (probes.clone(), probes.clone());
    let m = metrics.clone();
    let info = serde_json::json!({
        "name": &*probes.name, "version": &*probes.version, "description": description,
    });
    let builtin = Router::new()
        .route("/health", get(move || async move { p1.health().await }))
        .route("/ready", get(move || async move { p2.ready().await }))
        .route(
            "/metrics",
            get(move |headers: http::HeaderMap| async move { m.response(&headers) }),
        )
        .route("/", get(move || async move { axum::Json(info) }));
    let observe_state = Observe {
        metrics: metrics.http.clone(),
        routes: Default::default(),
    };
    let outer = ObserveLayer::new(Settings {
        observe: observe_state,
        max_uri_bytes: config.max_uri_bytes,
        body_limit: config.body_limit,
        request_timeout: config.request_timeout,
        cut_streams,
    });
    // The outer step enforces the body limit. Axum's body extractors stop at their own
    // default of 2 MiB, so only a larger limit needs `DefaultBodyLimit` (an extension per
    // request) to lift theirs.
    let extractors = (config.body_limit > AXUM_DEFAULT_BODY_LIMIT)
        .then(|| DefaultBodyLimit::max(config.body_limit));
    // One `Router::layer` call: each costs every request a boxed clone of the route and a
    // boxed future.
    routes
        .merge(builtin)
        .layer((outer, tower::util::option_layer(extractors)))
}

/// The body limit axum's extractors apply when not told another.
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

struct Hooks {
    start: Vec<Hook>,
    drain: Vec<Hook>,
    shutdown: Vec<Hook>,
}

/// A built service, ready to run.
pub struct Microservice {
    name: ServiceName,
    version: String,
    config: ServiceConfig,
    app: Router,
    lifecycle: Lifecycle,
    hooks: Hooks,
    tasks: Vec<(String, TaskFn)>,
    parts: Parts,
    metrics: Metrics,
    shutdown: CancellationToken,
    closing: CancellationToken,
    cut_streams: CancellationToken,
}

impl std::fmt::Debug for Microservice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microservice")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A handle to a running service: its state, and a way to stop it.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    lifecycle: Lifecycle,
    shutdown: CancellationToken,
}

impl ServiceHandle {
    /// Starts graceful shutdown, as SIGTERM would.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The service's lifecycle state.
    pub fn state(&self) -> State {
        self.lifecycle.state()
    }
}

impl Microservice {
    /// Starts building a service named `name` (validated as a [`ServiceName`]).
    pub fn builder(name: &str) -> Result<MicroserviceBuilder, Error> {
        Ok(MicroserviceBuilder {
            name: ServiceName::new(name)?,
            version: "0.0.0".into(),
            description: String::new(),
            config: ServiceConfig::default(),
            routes: Router::new(),
            liveness: Vec::new(),
            readiness: Vec::new(),
            on_start: Vec::new(),
            on_drain: Vec::new(),
            on_shutdown: Vec::new(),
            tasks: Vec::new(),
            metrics: Metrics::new(),
            closing: CancellationToken::new(),
            #[cfg(feature = "events")]
            events: Default::default(),
            #[cfg(feature = "eventsourcing")]
            projections: Default::default(),
        })
    }

    /// A handle to stop the service and read its state.
    pub fn handle(&self) -> ServiceHandle {
        ServiceHandle {
            lifecycle: self.lifecycle.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// The service's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Binds the configured address, serves until SIGTERM or SIGINT (or [`ServiceHandle::shutdown`]),
    /// then shuts down gracefully.
    pub async fn run(self) -> Result<(), Error> {
        let addr = self.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let token = self.shutdown.clone();
        let signalled = crate::lifecycle_signals::listen();
        tokio::spawn(async move {
            signalled.await;
            token.cancel();
        });
        self.serve(listener).await
    }

    /// Serves on an already bound listener until the handle's shutdown is triggered.
    pub async fn serve(self, listener: TcpListener) -> Result<(), Error> {
        let local_addr = listener.local_addr().map_err(Error::Serve)?;
        let ctx = HookContext {
            name: self.name.clone(),
            version: self.version.clone(),
            local_addr,
            metrics: self.metrics.clone(),
        };
        let deadline = self.config.shutdown_deadline;
        let parts = start_up(self.parts, self.hooks.start, &ctx, deadline)
            .await
            .inspect_err(|_| self.lifecycle.advance(State::Stopped))?;
        let tasks_token = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for (name, task) in self.tasks {
            tracing::debug!(task = %name, "starting background task");
            tasks.spawn(task(tasks_token.clone()));
        }
        let app = self.app.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(self.closing.clone().cancelled_owned());
        let mut server = tokio::spawn(server.into_future());
        self.lifecycle.advance(State::Running);
        tracing::info!(service = %self.name, version = %self.version, %local_addr, "service ready");
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            result = &mut server => {
                self.lifecycle.advance(State::Stopped);
                let _ = parts.stop(deadline).await;
                return result.map_err(|e| Error::Serve(std::io::Error::other(e)))?.map_err(Error::Serve);
            }
        }
        self.lifecycle.advance(State::Draining);
        // Right after readiness flips: no new events are taken; in-flight handlers finish
        // (within the deadline) while requests drain.
        let parts_done = parts.stop(deadline);
        tracing::info!(drain_delay = ?self.config.drain_delay, "shutdown started: not ready, draining");
        let _ = run_hooks("drain", self.hooks.drain, &ctx, false).await;
        tasks_token.cancel();
        tokio::time::sleep(self.config.drain_delay).await;
        self.closing.cancel();
        // One deadline for everything after the listener closes, so the steps below cannot
        // add up to more than the orchestrator's grace period allows for.
        let ends_at = tokio::time::Instant::now() + deadline;
        close_server(server, ends_at, &self.cut_streams).await;
        self.lifecycle.advance(State::Stopped);
        join_tasks(tasks, ends_at).await;
        if parts_done.await.is_err() {
            tracing::error!("stopping event handlers or projections panicked");
        }
        let _ = run_hooks("shutdown", self.hooks.shutdown, &ctx, false).await;
        tracing::info!(service = %self.name, "service stopped");
        Ok(())
    }
}

/// Starts the managed parts, then runs the start hooks. Parts first: the service is announced
/// (start hooks register it) only once its event handlers and projections run.
async fn start_up(
    parts: Parts,
    hooks: Vec<Hook>,
    ctx: &HookContext,
    deadline: Duration,
) -> Result<crate::parts::Started, Error> {
    let parts = parts.start(deadline).await?;
    if let Err(e) = run_hooks("start", hooks, ctx, true).await {
        let _ = parts.stop(deadline).await;
        return Err(e);
    }
    Ok(parts)
}

/// Waits for background tasks until `ends_at`, then aborts those still running.
async fn join_tasks(mut tasks: JoinSet<()>, ends_at: tokio::time::Instant) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout_at(ends_at, all).await.is_err() {
        tracing::warn!("background tasks outlived the shutdown deadline; aborting them");
        tasks.abort_all();
    }
}

/// How long connections get to close once their streaming responses were ended at the
/// deadline, before the server is abandoned.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Waits for in-flight requests until `ends_at`, then ends streaming responses still open
/// and stops waiting.
async fn close_server(
    mut server: tokio::task::JoinHandle<std::io::Result<()>>,
    ends_at: tokio::time::Instant,
    cut_streams: &CancellationToken,
) {
    if tokio::time::timeout_at(ends_at, &mut server).await.is_ok() {
        return;
    }
    tracing::warn!("in-flight requests outlived the shutdown deadline; closing them");
    cut_streams.cancel();
    if tokio::time::timeout(CUT_GRACE, &mut server).await.is_err() {
        // Handlers that are still running end at their request timeout.
        server.abort();
    }
}

async fn run_hooks(
    phase: &str,
    hooks: Vec<Hook>,
    ctx: &HookContext,
    fatal: bool,
) -> Result<(), Error> {
    for hook in hooks {
        if let Err(message) = (hook.run)(ctx.clone()).await {
            tracing::error!(phase, hook = %hook.name, %message, "lifecycle hook failed");
            if fatal {
                return Err(Error::Hook {
                    name: hook.name,
                    message,
                });
            }
        }
    }
    Ok(())
}
