//! Turning a publish request into events: structured, batch and binary content modes
//! (CloudEvents HTTP protocol binding), with the per-event size limit.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flotilla_core::CloudEvent;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

use crate::Error;

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// Parses the body by its mode; every event must be at most `limit` bytes encoded.
pub(crate) fn events(
    headers: &HeaderMap,
    body: &[u8],
    limit: usize,
) -> Result<Vec<CloudEvent>, Error> {
    let ct = content_type(headers);
    if ct == STRUCTURED {
        check_size(body.len(), limit)?;
        return Ok(vec![
            CloudEvent::from_json_slice(body).map_err(flotilla_bus::Error::from)?,
        ]);
    }
    if ct == BATCH {
        let items: Vec<Value> = serde_json::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("batch body is not a JSON array: {e}")))?;
        return items
            .into_iter()
            .map(|v| {
                check_size(v.to_string().len(), limit)?;
                Ok(CloudEvent::from_json_value(v).map_err(flotilla_bus::Error::from)?)
            })
            .collect();
    }
    if headers.contains_key("ce-specversion") {
        check_size(body.len(), limit)?;
        return binary(headers, &ct, body).map(|e| vec![e]);
    }
    Err(Error::UnsupportedMediaType(format!(
        "{ct} (use {STRUCTURED}, {BATCH}, or binary mode with ce-* headers)"
    )))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn check_size(size: usize, limit: usize) -> Result<(), Error> {
    if size > limit {
        return Err(flotilla_bus::Error::TooLarge { size, limit }.into());
    }
    Ok(())
}

/// Binary mode: attributes in `ce-*` headers, the body is `data` as-is.
fn binary(headers: &HeaderMap, ct: &str, body: &[u8]) -> Result<CloudEvent, Error> {
    let mut map = Map::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| Error::BadRequest(format!("header {name} is not visible ASCII")))?;
        map.insert(attr.to_owned(), Value::String(value.to_owned()));
    }
    if !ct.is_empty() {
        map.insert("datacontenttype".into(), Value::String(ct.to_owned()));
    }
    if !body.is_empty() {
        let is_json = ct == "application/json" || ct.ends_with("+json");
        if is_json {
            let data: Value = serde_json::from_slice(body).map_err(|e| {
                Error::BadRequest(format!("body is not the JSON its type says: {e}"))
            })?;
            map.insert("data".into(), data);
        } else {
            map.insert("data_base64".into(), Value::String(B64.encode(body)));
        }
    }
    Ok(CloudEvent::from_json_value(Value::Object(map)).map_err(flotilla_bus::Error::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn binary_mode_reads_attributes_from_ce_headers() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "orders.created"),
            ("ce-tenant", "acme"),
            ("content-type", "application/json"),
        ]);
        let e = &events(&h, br#"{"a":1}"#, 1024).unwrap()[0];
        assert_eq!((e.id.as_str(), e.ty.as_str()), ("1", "orders.created"));
        assert_eq!(e.extension_str("tenant"), Some("acme"));
        assert_eq!(e.json_data(), Some(&serde_json::json!({"a": 1})));
    }

    #[test]
    fn oversized_events_and_unknown_modes_are_refused() {
        let h = headers(&[("content-type", STRUCTURED)]);
        let big = vec![b' '; 2048];
        assert!(matches!(
            events(&h, &big, 1024),
            Err(Error::Bus(flotilla_bus::Error::TooLarge { .. }))
        ));
        let h = headers(&[("content-type", "text/plain")]);
        assert!(matches!(
            events(&h, b"x", 1024),
            Err(Error::UnsupportedMediaType(_))
        ));
    }
}
