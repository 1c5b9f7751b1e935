//! Logging and tracing set-up: human lines (coloured only on a terminal) or JSON, and spans
//! exported over OTLP when the standard `OTEL_*` variables or [`TracingOptions`] ask for it.

pub use flotilla_telemetry::{TracingOptions, flush, shutdown};

use crate::config::LogFormat;

/// Installs the global `tracing` subscriber. `level` is a filter directive; `RUST_LOG`, when
/// set, wins. Spans are exported when the `OTEL_*` variables turn export on (see
/// [`init_with_tracing`]). Calling it again (or after another subscriber was installed) does
/// nothing; a bad `OTEL_*` value is reported on stderr and export stays off.
pub fn init(format: LogFormat, level: &str) {
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "flotilla".into());
    if let Err(e) = init_with_tracing(format, level, &TracingOptions::default(), &service) {
        eprintln!("tracing: {e}; spans are not exported");
        let _ =
            flotilla_telemetry::init(&logs(format, level), &TracingOptions::default(), &service);
    }
}

/// Installs the global subscriber with span export configured by `tracing` (the `[tracing]`
/// table) under the `OTEL_*` variables, as `service` unless a service name is set there.
pub fn init_with_tracing(
    format: LogFormat,
    level: &str,
    tracing: &TracingOptions,
    service: &str,
) -> Result<(), flotilla_telemetry::Error> {
    let tracing = tracing.clone().with_env(|k| std::env::var(k).ok())?;
    flotilla_telemetry::init(&logs(format, level), &tracing, service)
}

fn logs(format: LogFormat, level: &str) -> flotilla_telemetry::Logs {
    flotilla_telemetry::Logs {
        json: format == LogFormat::Json,
        filter: level.to_owned(),
    }
}
