//! Installing the process's `tracing` subscriber: log lines always, span export when asked.

use std::io::IsTerminal as _;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tokio::runtime::Runtime;
use tracing::Subscriber;
use tracing_subscriber::filter::{DynFilterFn, EnvFilter};
use tracing_subscriber::layer::{Filter, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

use crate::entered::EnteredExported;
use crate::export::{Bounded, OnRuntime, Queued};
use crate::hop::{self, PresetTraceIds};
use crate::options::{Protocol, TracingOptions};
use crate::{Error, spans};

/// How log lines are written.
#[derive(Debug, Clone)]
pub struct Logs {
    /// One JSON object per line instead of human lines.
    pub json: bool,
    /// A `tracing` filter directive; `RUST_LOG`, when set, wins.
    pub filter: String,
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static EXPORT_RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Installs the global subscriber: log lines as `logs` says and, when `tracing.enabled`,
/// spans exported over OTLP as `service` (or `tracing.service_name`). Does nothing when a
/// subscriber is already installed. Exporting never blocks a request: spans wait in a bounded
/// queue and are dropped, and counted, when it is full.
pub fn init(logs: &Logs, tracing: &TracingOptions, service: &str) -> Result<(), Error> {
    tracing.validate()?;
    let otel = match tracing.enabled {
        true => Some(provider(tracing, service)?),
        false => None,
    };
    let tracer = otel.as_ref().map(|p| p.tracer("flotilla"));
    let layer = tracer.clone().map(otel_layer);
    let installed = tracing_subscriber::registry()
        .with(log_layer(logs))
        .with(layer)
        .try_init()
        .is_ok();
    if let (true, Some(p), Some(t)) = (installed, otel, tracer) {
        let _ = PROVIDER.set(p);
        crate::exported::set_tracer(t);
        spans::set_enabled();
    }
    Ok(())
}

/// Exports the spans still queued and stops exporting; for the end of `main`.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown();
    }
}

/// Exports the spans still queued, waiting until the collector answered.
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

fn log_layer(logs: &Logs) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&logs.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // Exported spans carry semantic-convention fields for the collector; log lines keep
        // their own, shorter context.
        .add_directive(
            format!("{}=off", crate::TARGET)
                .parse()
                .expect("a static directive parses"),
        );
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only where a person reads them, never in log files or collectors.
        .with_ansi(std::io::stderr().is_terminal());
    match logs.json {
        true => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        false => fmt.with_filter(filter).boxed(),
    }
}

/// Only spans of target [`crate::TARGET`] are exported, whatever the log filter: the request,
/// call, messaging and storage spans, not the spans written for log context. Decided once
/// per call site.
fn exported_only<S: Subscriber>() -> impl Filter<S> + Send + Sync + 'static {
    let exported = |m: &tracing::Metadata<'_>| m.is_span() && m.target() == crate::TARGET;
    DynFilterFn::new(move |m, _| exported(m)).with_callsite_filter(move |m| match exported(m) {
        true => tracing::subscriber::Interest::always(),
        false => tracing::subscriber::Interest::never(),
    })
}

/// The exporter's layer, and beside it the record of which exported span is entered
/// ([`EnteredExported`]), which stands in for the exporter attaching each span's
/// OpenTelemetry context on every entry.
fn otel_layer<S>(tracer: opentelemetry_sdk::trace::Tracer) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        // Every span is the process's; a `target` attribute on each would say nothing.
        .with_target(false)
        // Parents come from the `tracing` span tree; see `EnteredExported`.
        .with_context_activation(false)
        .with_filter(exported_only())
        .and_then(EnteredExported.with_filter(exported_only()))
}

fn provider(opts: &TracingOptions, service: &str) -> Result<SdkTracerProvider, Error> {
    let runtime = export_runtime()?;
    let exporter = {
        let _entered = runtime.enter();
        exporter(opts)?
    };
    let queued = Queued::default();
    let on_runtime = OnRuntime {
        inner: Arc::new(exporter),
        runtime: runtime.handle().clone(),
        queued: queued.clone(),
    };
    let batch = BatchConfigBuilder::default()
        // The bound is kept by `Bounded`, which counts what it drops; the processor's own
        // queue has room for one more batch so it never drops silently.
        .with_max_queue_size(opts.max_queue_size + opts.max_export_batch_size)
        .with_max_export_batch_size(opts.max_export_batch_size)
        .build();
    let processor = Bounded {
        inner: BatchSpanProcessor::builder(on_runtime)
            .with_batch_config(batch)
            .build(),
        queued,
        max: opts.max_queue_size,
    };
    let name = opts
        .service_name
        .clone()
        .unwrap_or_else(|| service.to_owned());
    let root = Sampler::TraceIdRatioBased(opts.sample_ratio);
    hop::set_root_sampler(root.clone());
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(root)))
        .with_id_generator(PresetTraceIds::default())
        .with_resource(Resource::builder().with_service_name(name).build())
        .build())
}

fn exporter(opts: &TracingOptions) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    let url = opts.export_url();
    let built = match opts.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .with_timeout(opts.export_timeout)
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(opts.export_timeout)
            .build(),
    };
    built.map_err(|e| Error::Config(format!("tracing exporter: {e}")))
}

fn export_runtime() -> Result<&'static Runtime, Error> {
    if let Some(rt) = EXPORT_RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flotilla-otlp-export")
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("tracing export runtime: {e}")))?;
    Ok(EXPORT_RUNTIME.get_or_init(|| rt))
}
