//! The CloudEvents 1.0 envelope (<https://github.com/cloudevents/spec>), structured JSON mode.
//!
//! Every event on the bus, every step message of a saga and every event the HTTP APIs accept is
//! a [`CloudEvent`]. Parsing validates the envelope as the spec requires (required attributes,
//! attribute-name rules, RFC 3339 `time`, `data` xor `data_base64`) and refuses with a reason
//! that names the attribute. Flotilla's correlation attributes travel as extensions:
//! `traceparent` (W3C distributed-tracing extension), `correlationid` and `causationid`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::trace::{TraceContext, TraceParent};
use crate::tracestate::TraceState;

/// The only specification version this crate speaks.
pub const SPEC_VERSION: &str = "1.0";
/// Extension carrying the W3C trace context.
pub const EXT_TRACEPARENT: &str = "traceparent";
/// Extension: W3C `tracestate`, carried with `traceparent` (CloudEvents distributed tracing).
pub const EXT_TRACESTATE: &str = "tracestate";
/// Extension carrying the id shared by every event of one business transaction.
pub const EXT_CORRELATION: &str = "correlationid";
/// Extension carrying the id of the event or command that caused this one.
pub const EXT_CAUSATION: &str = "causationid";

const CONTEXT_ATTRIBUTES: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
];

/// Why an event was refused. `attribute` names the offending attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CloudEvent attribute `{attribute}`: {reason}")]
pub struct EventError {
    /// The attribute at fault.
    pub attribute: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(attribute: &str, reason: impl Into<String>) -> EventError {
    EventError {
        attribute: attribute.into(),
        reason: reason.into(),
    }
}

/// An extension attribute's value: the CloudEvents type system reduced to what JSON carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExtensionValue {
    /// A string (also used for URI, URI-reference and timestamp typed extensions).
    String(String),
    /// A signed 32-bit integer, as the spec's Integer type.
    Integer(i32),
    /// A boolean.
    Boolean(bool),
}

/// The event's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// A JSON value, carried in `data`.
    Json(Value),
    /// Bytes, carried base64-encoded in `data_base64`.
    Binary(Vec<u8>),
}

/// A CloudEvents 1.0 event.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// Unique per `source`; producers use it for deduplication.
    pub id: String,
    /// URI-reference of the producer context (`/orders`, `urn:flotilla:orders`).
    pub source: String,
    /// The kind of occurrence (`com.example.order.created`).
    pub ty: String,
    /// Media type of `data` (`application/json` when absent and `data` is JSON).
    pub datacontenttype: Option<String>,
    /// URI of the schema `data` adheres to.
    pub dataschema: Option<String>,
    /// What the event is about within the source.
    pub subject: Option<String>,
    /// When the occurrence happened.
    pub time: Option<DateTime<Utc>>,
    /// The payload, if any.
    pub data: Option<Data>,
    /// Extension attributes, by validated name.
    pub extensions: BTreeMap<String, ExtensionValue>,
}

impl CloudEvent {
    /// A new event with a fresh UUID v7 id (time-ordered), `time` set to now and no data.
    pub fn new(source: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            source: source.into(),
            ty: ty.into(),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            time: Some(Utc::now()),
            data: None,
            extensions: BTreeMap::new(),
        }
    }

    /// Sets a JSON payload and `datacontenttype: application/json`.
    pub fn with_json(mut self, data: Value) -> Self {
        self.datacontenttype = Some("application/json".into());
        self.data = Some(Data::Json(data));
        self
    }

    /// Sets a binary payload with its media type.
    pub fn with_binary(mut self, content_type: impl Into<String>, data: Vec<u8>) -> Self {
        self.datacontenttype = Some(content_type.into());
        self.data = Some(Data::Binary(data));
        self
    }

    /// Sets an extension attribute; refuses invalid or reserved names.
    pub fn set_extension(&mut self, name: &str, value: ExtensionValue) -> Result<(), EventError> {
        validate_extension_name(name)?;
        self.extensions.insert(name.to_owned(), value);
        Ok(())
    }

    /// A string extension's value.
    pub fn extension_str(&self, name: &str) -> Option<&str> {
        match self.extensions.get(name) {
            Some(ExtensionValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The trace context carried by the event, if it parses.
    pub fn traceparent(&self) -> Option<TraceParent> {
        self.extension_str(EXT_TRACEPARENT)
            .and_then(TraceParent::parse)
    }

    /// The whole trace context carried by the event: `traceparent` and, only with it, a valid
    /// `tracestate`.
    pub fn trace_context(&self) -> Option<TraceContext> {
        let parent = self.traceparent()?;
        let state = self
            .extension_str(EXT_TRACESTATE)
            .and_then(TraceState::parse);
        Some(TraceContext { parent, state })
    }

    /// Attaches a whole trace context (replacing any `tracestate` the event had).
    pub fn with_trace_context(mut self, ctx: &TraceContext) -> Self {
        self.set_trace_context(ctx);
        self
    }

    /// Sets the event's trace context (replacing any `tracestate` it had).
    pub fn set_trace_context(&mut self, ctx: &TraceContext) {
        self.extensions.remove(EXT_TRACESTATE);
        if let Some(state) = &ctx.state {
            let value = ExtensionValue::String(state.as_str().to_owned());
            self.extensions.insert(EXT_TRACESTATE.into(), value);
        }
        let value = ExtensionValue::String(ctx.parent.to_string());
        self.extensions.insert(EXT_TRACEPARENT.into(), value);
    }

    /// Attaches trace context.
    pub fn with_traceparent(mut self, tp: &TraceParent) -> Self {
        let value = ExtensionValue::String(tp.to_string());
        self.extensions.insert(EXT_TRACEPARENT.into(), value);
        self
    }

    /// Sets the correlation id (shared by one business transaction).
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.extensions
            .insert(EXT_CORRELATION.into(), ExtensionValue::String(id.into()));
        self
    }

    /// Sets the causation id (the id of the message that caused this one).
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.extensions
            .insert(EXT_CAUSATION.into(), ExtensionValue::String(id.into()));
        self
    }

    /// The correlation id, if set.
    pub fn correlation_id(&self) -> Option<&str> {
        self.extension_str(EXT_CORRELATION)
    }

    /// The causation id, if set.
    pub fn causation_id(&self) -> Option<&str> {
        self.extension_str(EXT_CAUSATION)
    }

    /// The JSON payload, if the event carries one.
    pub fn json_data(&self) -> Option<&Value> {
        match &self.data {
            Some(Data::Json(v)) => Some(v),
            _ => None,
        }
    }

    /// Checks the envelope against the spec.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.id.is_empty() {
            return Err(invalid("id", "must be a non-empty string"));
        }
        if self.source.is_empty() {
            return Err(invalid("source", "must be a non-empty URI-reference"));
        }
        if self
            .source
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid("source", "must be a URI-reference (no whitespace)"));
        }
        if self.ty.is_empty() {
            return Err(invalid("type", "must be a non-empty string"));
        }
        if self.datacontenttype.as_deref() == Some("") {
            return Err(invalid("datacontenttype", "must not be empty when present"));
        }
        if self.dataschema.as_deref() == Some("") {
            return Err(invalid("dataschema", "must not be empty when present"));
        }
        if self.subject.as_deref() == Some("") {
            return Err(invalid("subject", "must not be empty when present"));
        }
        self.extensions
            .keys()
            .try_for_each(|k| validate_extension_name(k))
    }

    /// Parses a structured-mode JSON event, validating it.
    pub fn from_json_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(mut map) = value else {
            return Err(invalid("(event)", "must be a JSON object"));
        };
        let version = take_string(&mut map, "specversion")?
            .ok_or_else(|| invalid("specversion", "is required"))?;
        if version != SPEC_VERSION {
            return Err(invalid(
                "specversion",
                format!("must be \"1.0\", got {version:?}"),
            ));
        }
        let event = Self {
            id: required(&mut map, "id")?,
            source: required(&mut map, "source")?,
            ty: required(&mut map, "type")?,
            datacontenttype: take_string(&mut map, "datacontenttype")?,
            dataschema: take_string(&mut map, "dataschema")?,
            subject: take_string(&mut map, "subject")?,
            time: take_time(&mut map)?,
            data: take_data(&mut map)?,
            extensions: take_extensions(map)?,
        };
        event.validate()?;
        Ok(event)
    }

    /// Parses a structured-mode JSON document from bytes.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, EventError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid("(event)", format!("is not valid JSON: {e}")))?;
        Self::from_json_value(value)
    }

    /// The structured-mode JSON form.
    pub fn to_json_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("specversion".into(), SPEC_VERSION.into());
        map.insert("id".into(), self.id.clone().into());
        map.insert("source".into(), self.source.clone().into());
        map.insert("type".into(), self.ty.clone().into());
        let optional = [
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
            ("subject", &self.subject),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                map.insert(k.into(), v.clone().into());
            }
        }
        if let Some(t) = self.time {
            map.insert(
                "time".into(),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true).into(),
            );
        }
        match &self.data {
            Some(Data::Json(v)) => drop(map.insert("data".into(), v.clone())),
            Some(Data::Binary(b)) => drop(map.insert("data_base64".into(), B64.encode(b).into())),
            None => {}
        }
        for (k, v) in &self.extensions {
            let v = serde_json::to_value(v).unwrap_or(Value::Null);
            map.insert(k.clone(), v);
        }
        Value::Object(map)
    }
}

fn required(map: &mut Map<String, Value>, attr: &str) -> Result<String, EventError> {
    take_string(map, attr)?.ok_or_else(|| invalid(attr, "is required"))
}

fn take_string(map: &mut Map<String, Value>, attr: &str) -> Result<Option<String>, EventError> {
    match map.remove(attr) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(attr, "must be a string")),
    }
}

fn take_time(map: &mut Map<String, Value>) -> Result<Option<DateTime<Utc>>, EventError> {
    let Some(s) = take_string(map, "time")? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| invalid("time", format!("must be an RFC 3339 timestamp ({e})")))
}

fn take_data(map: &mut Map<String, Value>) -> Result<Option<Data>, EventError> {
    let json = map.remove("data");
    let binary = take_string(map, "data_base64")?;
    match (json, binary) {
        (Some(_), Some(_)) => Err(invalid(
            "data_base64",
            "must not be present together with data",
        )),
        (Some(v), None) => Ok(Some(Data::Json(v))),
        (None, Some(b)) => B64
            .decode(b)
            .map(|bytes| Some(Data::Binary(bytes)))
            .map_err(|e| invalid("data_base64", format!("is not valid base64 ({e})"))),
        (None, None) => Ok(None),
    }
}

fn take_extensions(
    map: Map<String, Value>,
) -> Result<BTreeMap<String, ExtensionValue>, EventError> {
    let mut out = BTreeMap::new();
    for (name, value) in map {
        validate_extension_name(&name)?;
        let value = match value {
            Value::String(s) => ExtensionValue::String(s),
            Value::Bool(b) => ExtensionValue::Boolean(b),
            Value::Number(n) => n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .map(ExtensionValue::Integer)
                .ok_or_else(|| invalid(&name, "integers must fit in 32 bits"))?,
            Value::Null => continue,
            _ => {
                return Err(invalid(
                    &name,
                    "extension values must be strings, integers or booleans",
                ));
            }
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// Extension names: lowercase ASCII letters and digits, at most 64 characters (the spec
/// recommends 20), and not a context attribute's name.
fn validate_extension_name(name: &str) -> Result<(), EventError> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok) {
        return Err(invalid(
            name,
            "extension names must be 1 to 64 lowercase letters or digits",
        ));
    }
    if CONTEXT_ATTRIBUTES.contains(&name) || name == "data_base64" {
        return Err(invalid(name, "is a context attribute, not an extension"));
    }
    Ok(())
}

impl Serialize for CloudEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for CloudEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_json_value(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "specversion": "1.0", "id": "A234-1234-1234", "source": "/orders",
            "type": "com.example.order.created", "time": "2018-04-05T17:31:00Z",
            "datacontenttype": "application/json", "data": {"orderId": 42},
            "correlationid": "c-1", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        })
    }

    #[test]
    fn structured_json_round_trips() {
        let e = CloudEvent::from_json_value(sample()).unwrap();
        assert_eq!(e.correlation_id(), Some("c-1"));
        assert!(e.traceparent().is_some());
        assert_eq!(e.json_data(), Some(&json!({"orderId": 42})));
        let again = CloudEvent::from_json_value(e.to_json_value()).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn binary_data_round_trips_through_base64() {
        let e = CloudEvent::new("/x", "t").with_binary("application/octet-stream", vec![0, 1, 255]);
        let v = e.to_json_value();
        assert_eq!(v["data_base64"], "AAH/");
        assert_eq!(
            CloudEvent::from_json_value(v).unwrap().data,
            Some(Data::Binary(vec![0, 1, 255]))
        );
    }

    fn refused(mutate: impl FnOnce(&mut Map<String, Value>)) -> EventError {
        let Value::Object(mut m) = sample() else {
            unreachable!()
        };
        mutate(&mut m);
        CloudEvent::from_json_value(Value::Object(m)).unwrap_err()
    }

    #[test]
    fn invalid_events_are_refused_with_the_attribute_named() {
        assert_eq!(refused(|m| drop(m.remove("id"))).attribute, "id");
        assert_eq!(
            refused(|m| drop(m.insert("specversion".into(), "0.3".into()))).attribute,
            "specversion"
        );
        assert_eq!(
            refused(|m| drop(m.insert("Bad-Ext".into(), "x".into()))).attribute,
            "Bad-Ext"
        );
        assert_eq!(
            refused(|m| drop(m.insert("time".into(), "yesterday".into()))).attribute,
            "time"
        );
        assert_eq!(
            refused(|m| drop(m.insert("data_base64".into(), "AA==".into()))).attribute,
            "data_base64"
        );
        assert_eq!(
            refused(|m| drop(m.insert("id".into(), "".into()))).attribute,
            "id"
        );
        assert_eq!(
            refused(|m| drop(m.insert("ext".into(), json!({"a": 1})))).attribute,
            "ext"
        );
    }

    #[test]
    fn new_events_are_valid_and_time_ordered() {
        let a = CloudEvent::new("/s", "t");
        let b = CloudEvent::new("/s", "t");
        assert!(a.validate().is_ok());
        assert!(a.id < b.id || a.id.len() == b.id.len());
    }

    #[test]
    fn reserved_names_cannot_be_extensions() {
        let mut e = CloudEvent::new("/s", "t");
        assert!(
            e.set_extension("type", ExtensionValue::Boolean(true))
                .is_err()
        );
        assert!(
            e.set_extension("tenant", ExtensionValue::String("a".into()))
                .is_ok()
        );
    }
}
