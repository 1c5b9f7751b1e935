//! Which exported span is entered on this thread, for [`crate::Hop::begin_within`].
//!
//! `tracing-opentelemetry` can attach each exported span's OpenTelemetry context whenever the
//! span is entered, so that `Context::current()` names it; but an entered span is re-entered on
//! every poll of the future it instruments, and attaching costs a lock, a context clone and a
//! guard each time, for an answer only a publish or an append made inside a request asks for.
//! This layer, filtered to the exported spans, keeps just their ids on a thread-local stack; the
//! context is looked up when it is asked for.

use std::cell::RefCell;

use opentelemetry::trace::TraceContextExt as _;
use tracing::Subscriber;
use tracing::span::Id;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

thread_local! {
    /// Exported spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

/// Records entries into and exits from exported spans; install it behind the same filter as
/// the exporter's layer.
pub(crate) struct EnteredExported;

impl<S: Subscriber> Layer<S> for EnteredExported {
    fn on_enter(&self, id: &Id, _: Context<'_, S>) {
        ENTERED.with_borrow_mut(|stack| stack.push(id.clone()));
    }

    fn on_exit(&self, id: &Id, _: Context<'_, S>) {
        // Exits normally mirror entries; when they do not, the latest entry of the span goes.
        ENTERED.with_borrow_mut(|stack| {
            if let Some(at) = stack.iter().rposition(|entered| entered == id) {
                stack.remove(at);
            }
        });
    }
}

/// The span context of the innermost exported span entered on this thread, if any.
pub(crate) fn innermost() -> Option<opentelemetry::trace::SpanContext> {
    let id = ENTERED.with_borrow(|stack| stack.last().cloned())?;
    let cx = tracing::dispatcher::get_default(|d| tracing_opentelemetry::get_otel_context(&id, d))?;
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}
