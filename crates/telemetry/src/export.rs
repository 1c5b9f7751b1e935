//! Export plumbing around the SDK's batch processor.
//!
//! The SDK's `BatchSpanProcessor` exports from a thread of its own that has no Tokio reactor,
//! while the OTLP transports (tonic, hyper) need one: [`OnRuntime`] runs each export on a
//! small runtime kept for exports only. The processor's own queue drops spans silently, so
//! [`Bounded`] keeps the bound in front of it and counts what it drops, and `OnRuntime`
//! counts the spans of every batch the collector did not take.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::runtime::Handle;

use crate::metrics::{DROPPED, EXPORTED};

/// Spans handed to the batch processor and not yet exported or dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Queued(Arc<AtomicUsize>);

/// A span processor that refuses (and counts) spans past `max` waiting for export.
#[derive(Debug)]
pub(crate) struct Bounded<P> {
    pub(crate) inner: P,
    pub(crate) queued: Queued,
    pub(crate) max: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queued.0.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.queued.0.fetch_sub(1, Ordering::Relaxed);
            DROPPED.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Runs an exporter's calls on the export runtime and counts their outcome.
pub(crate) struct OnRuntime<E> {
    pub(crate) inner: Arc<E>,
    pub(crate) runtime: Handle,
    pub(crate) queued: Queued,
}

impl<E> fmt::Debug for OnRuntime<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRuntime").finish_non_exhaustive()
    }
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let inner = self.inner.clone();
        let result = self
            .runtime
            .spawn(async move { inner.export(batch).await })
            .await
            .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())));
        self.queued.0.fetch_sub(n, Ordering::Relaxed);
        let counter = if result.is_ok() { &EXPORTED } else { &DROPPED };
        counter.inc_by(n as u64);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once while the provider is built, before the exporter is shared.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
