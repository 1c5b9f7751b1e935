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
            .enumerate()
            .map(|(i, v)| {
                check_size(v.to_string().len(), limit)?;
                CloudEvent::from_json_value(v)
                    .map_err(|e| Error::from(flotilla_bus::Error::from(e)).at("batch", i))
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

/// Binary mode: attributes in `ce-*` headers, the body is the event's data.
fn binary(headers: &HeaderMap, ct: &str, body: &[u8]) -> Result<CloudEvent, Error> {
    let mut map = Map::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let decoded = Value::String(header_attribute(name, value)?);
        if map.insert(attr.to_owned(), decoded).is_some() {
            // Which of two values the sender meant cannot be known; neither is guessed.
            return Err(Error::BadRequest(format!("header {name} is given twice")));
        }
    }
    // The whole header, parameters and all: `charset` and friends are part of the data's type.
    if let Some(value) = headers.get(CONTENT_TYPE) {
        let full_type = value.to_str().map_err(|_| {
            Error::BadRequest(format!("header {CONTENT_TYPE} is not visible ASCII"))
        })?;
        if !full_type.trim().is_empty() {
            let full_type = Value::String(full_type.trim().to_owned());
            map.insert("datacontenttype".into(), full_type);
        }
    }
    if !body.is_empty() {
        let (member, data) = data(ct, body)?;
        map.insert(member.into(), data);
    }
    Ok(CloudEvent::from_json_value(Value::Object(map)).map_err(flotilla_bus::Error::from)?)
}

/// A `ce-*` header's attribute value: visible ASCII, percent-decoded into UTF-8 (the HTTP
/// binding, §3.1.3.2, has senders percent-encode space, `"`, `%` and anything outside ASCII).
fn header_attribute(name: &http::HeaderName, value: &http::HeaderValue) -> Result<String, Error> {
    let value = value
        .to_str()
        .map_err(|_| Error::BadRequest(format!("header {name} is not visible ASCII")))?;
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| {
            Error::BadRequest(format!(
                "header {name}: {value:?} is not UTF-8 once percent-decoded"
            ))
        })
}

/// The member a binary-mode body is kept in, and its value. JSON types are parsed; any other
/// body is text when its bytes are UTF-8 (the JSON event format keeps text in `data` as a
/// string), except where its type declares arbitrary bytes; the rest is `data_base64`.
fn data(ct: &str, body: &[u8]) -> Result<(&'static str, Value), Error> {
    if ct == "application/json" || ct.ends_with("+json") {
        let data = serde_json::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("body is not the JSON its type says: {e}")))?;
        return Ok(("data", data));
    }
    match std::str::from_utf8(body) {
        Ok(text) if ct != "application/octet-stream" => {
            Ok(("data", Value::String(text.to_owned())))
        }
        _ => Ok(("data_base64", Value::String(B64.encode(body)))),
    }
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
