//! The `[tracing]` table of `flotilla.toml` and the standard `OTEL_*` variables over it.
//!
//! Plain data: validation here, behaviour in `setup`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Protocol {
    /// OTLP over gRPC (default port 4317).
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318, path `/v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(Error::Config(format!(
                "OTLP protocol {other:?} is not supported: use \"grpc\" or \"http/protobuf\""
            ))),
        }
    }

    fn default_endpoint(self) -> &'static str {
        match self {
            Self::Grpc => "http://localhost:4317",
            Self::HttpProtobuf => "http://localhost:4318",
        }
    }
}

/// Span export settings. Off unless `enabled` (or an `OTEL_*` variable turns it on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingOptions {
    /// Export spans at all.
    pub enabled: bool,
    /// The collector's base URL; `http://localhost:4317` (gRPC) or `:4318` (HTTP) when unset.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub protocol: Protocol,
    /// Share of new traces recorded, 0.0 to 1.0. Calls that arrive with a trace follow the
    /// caller's decision (parent-based sampling), so a trace is kept or dropped whole.
    pub sample_ratio: f64,
    /// `service.name` of the spans; the service's own name when unset.
    pub service_name: Option<String>,
    /// Spans waiting for export; past this, new spans are dropped and counted.
    pub max_queue_size: usize,
    /// Spans per export request.
    pub max_export_batch_size: usize,
    /// How long one export may take before its spans count as dropped.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
    /// Whether `endpoint` came from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, which is used as
    /// given rather than as a base URL.
    #[serde(skip)]
    traces_endpoint_is_full: bool,
}

impl Default for TracingOptions {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            protocol: Protocol::Grpc,
            sample_ratio: 1.0,
            service_name: None,
            max_queue_size: 2048,
            max_export_batch_size: 512,
            export_timeout: Duration::from_secs(5),
            traces_endpoint_is_full: false,
        }
    }
}

impl TracingOptions {
    /// Applies the standard OpenTelemetry variables, read through `var`:
    /// `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`otlp` | `none`),
    /// `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` (setting one turns export on),
    /// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub fn with_env(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .map(|e| (e, true))
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| (e, false)));
        if let Some((url, _)) = &endpoint {
            self.endpoint = Some(url.clone());
            self.enabled = true;
        }
        self.traces_endpoint_is_full = endpoint.is_some_and(|(_, full)| full);
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(p) = protocol {
            self.protocol = Protocol::parse(&p)?;
        }
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            self.service_name = Some(name);
        }
        if let Some(sampler) = var("OTEL_TRACES_SAMPLER") {
            self.sample_ratio = sampler_ratio(&sampler, var("OTEL_TRACES_SAMPLER_ARG"))?;
        }
        match var("OTEL_TRACES_EXPORTER").as_deref() {
            Some("otlp") => self.enabled = true,
            Some("none") => self.enabled = false,
            Some(other) => {
                return Err(Error::Config(format!(
                    "OTEL_TRACES_EXPORTER={other:?} is not supported: use \"otlp\" or \"none\""
                )));
            }
            None => {}
        }
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            self.enabled = false;
        }
        self.validate()?;
        Ok(self)
    }

    /// Refuses values that cannot work, naming them.
    pub fn validate(&self) -> Result<(), Error> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(Error::Config(format!(
                "tracing.sample_ratio = {} must be between 0.0 and 1.0",
                self.sample_ratio
            )));
        }
        if self.max_queue_size == 0 || self.max_export_batch_size == 0 {
            return Err(Error::Config(
                "tracing.max_queue_size and tracing.max_export_batch_size must be above 0".into(),
            ));
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(Error::Config(format!(
                "tracing.endpoint {e:?} must be an http:// or https:// URL"
            )));
        }
        Ok(())
    }

    /// The URL spans are sent to: gRPC takes the base URL, HTTP its `/v1/traces` path.
    pub fn export_url(&self) -> String {
        let base = self
            .endpoint
            .as_deref()
            .unwrap_or(self.protocol.default_endpoint());
        match self.protocol {
            Protocol::Grpc => base.to_owned(),
            Protocol::HttpProtobuf if self.traces_endpoint_is_full => base.to_owned(),
            Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
        }
    }
}

fn sampler_ratio(sampler: &str, arg: Option<String>) -> Result<f64, Error> {
    let ratio = || -> Result<f64, Error> {
        let Some(arg) = arg.as_deref() else {
            return Ok(1.0);
        };
        arg.trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                Error::Config(format!(
                    "OTEL_TRACES_SAMPLER_ARG={arg:?} must be a ratio between 0.0 and 1.0"
                ))
            })
    };
    // Every sampler is parent-based here: a trace the caller kept is kept whole.
    match sampler {
        "always_on" | "parentbased_always_on" => Ok(1.0),
        "always_off" | "parentbased_always_off" => Ok(0.0),
        "traceidratio" | "parentbased_traceidratio" => ratio(),
        other => Err(Error::Config(format!(
            "OTEL_TRACES_SAMPLER={other:?} is not supported: use always_on, always_off, \
             traceidratio or their parentbased_ forms"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<TracingOptions, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TracingOptions::default().with_env(|k| map.get(k).cloned())
    }

    #[test]
    fn off_by_default() {
        let o = with(&[]).unwrap();
        assert!(!o.enabled);
        assert_eq!(o.export_url(), "http://localhost:4317");
    }

    #[test]
    fn an_endpoint_in_the_environment_turns_export_on() {
        let o = with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "orders"),
        ])
        .unwrap();
        assert!(o.enabled);
        assert_eq!(o.export_url(), "http://collector:4318/v1/traces");
        assert_eq!(o.service_name.as_deref(), Some("orders"));
    }

    #[test]
    fn a_traces_endpoint_is_used_as_given() {
        let o = with(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(o.export_url(), "http://c:4318/custom");
    }

    #[test]
    fn samplers_map_to_a_parent_based_ratio() {
        let o = with(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ])
        .unwrap();
        assert!((o.sample_ratio - 0.1).abs() < f64::EPSILON);
        assert_eq!(
            with(&[("OTEL_TRACES_SAMPLER", "always_off")])
                .unwrap()
                .sample_ratio,
            0.0
        );
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        for (k, v) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ] {
            let e = with(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(v), "{e}");
        }
        let e = with(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        assert!(e.unwrap_err().to_string().contains("\"2\""));
    }

    #[test]
    fn the_sdk_switch_and_exporter_none_turn_export_off() {
        let o = with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(!o.unwrap().enabled);
        let o = with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        assert!(!o.unwrap().enabled);
    }

    #[test]
    fn the_toml_table_reads_and_refuses_unknown_keys() {
        let o: TracingOptions = serde_json::from_value(serde_json::json!({
            "enabled": true, "protocol": "http/protobuf", "sample_ratio": 0.25, "export_timeout": "2s"
        }))
        .unwrap();
        assert_eq!(o.protocol, Protocol::HttpProtobuf);
        assert_eq!(o.export_timeout, Duration::from_secs(2));
        assert!(
            serde_json::from_value::<TracingOptions>(serde_json::json!({"enable": true})).is_err()
        );
    }
}
