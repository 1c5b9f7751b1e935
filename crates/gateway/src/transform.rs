//! Response transforms: a configured field selection, removal and renaming applied to JSON
//! response bodies, for routes that expose an upstream's answer to clients who should see less
//! of it, or under other names.
//!
//! A transform needs the whole body, so a route with one buffers its JSON answers up to a
//! limit. It only touches successful (2xx) answers whose content type is JSON; an answer that
//! says it is JSON but does not parse, or is larger than the limit, is refused with 502 rather
//! than passed through, because a transform is often how an operator keeps fields private.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{HeaderValue, Response};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;
use crate::problem::Body;

/// `[routes.transform]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformConfig {
    /// Fields to keep, as dotted paths (`id`, `address.city`); everything else is dropped.
    /// Empty keeps every field.
    pub select: Vec<String>,
    /// Fields to drop, as dotted paths; applied after `select`.
    pub remove: Vec<String>,
    /// Top-level fields to rename, `old = "new"`; applied last.
    pub rename: BTreeMap<String, String>,
    /// Largest response body the transform buffers, in bytes; default 1 MiB.
    pub max_body_bytes: Option<u64>,
}

/// The default buffering limit of a transform.
pub(crate) const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// A validated transform.
#[derive(Debug, Clone)]
pub(crate) struct Transform {
    select: Vec<Vec<String>>,
    remove: Vec<Vec<String>>,
    rename: Vec<(String, String)>,
    pub(crate) max_body: u64,
}

impl Transform {
    /// Validates `cfg`; `key` is its dotted path for errors (`routes[1].transform`).
    pub(crate) fn build(cfg: &TransformConfig, key: &str) -> Result<Self, Error> {
        let paths = |list: &[String], field: &str| {
            list.iter()
                .enumerate()
                .map(|(i, p)| path(p).map_err(|r| Error::config(format!("{key}.{field}[{i}]"), r)))
                .collect::<Result<Vec<_>, _>>()
        };
        let select = paths(&cfg.select, "select")?;
        let remove = paths(&cfg.remove, "remove")?;
        let mut rename = Vec::with_capacity(cfg.rename.len());
        for (from, to) in &cfg.rename {
            if from.is_empty() || to.is_empty() || from.contains('.') || to.contains('.') {
                return Err(Error::config(
                    format!("{key}.rename.{from}"),
                    "rename maps a top-level field name to another (no dots, not empty)",
                ));
            }
            rename.push((from.clone(), to.clone()));
        }
        if select.is_empty() && remove.is_empty() && rename.is_empty() {
            return Err(Error::config(
                key,
                "a transform needs at least one of select, remove or rename",
            ));
        }
        let max_body = cfg.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if max_body == 0 {
            return Err(Error::config(
                format!("{key}.max_body_bytes"),
                "must be at least 1",
            ));
        }
        Ok(Self {
            select,
            remove,
            rename,
            max_body,
        })
    }

    /// Applies the transform to a document; an array applies it to each of its elements.
    pub(crate) fn apply(&self, doc: Value) -> Value {
        match doc {
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.one(v)).collect()),
            other => self.one(other),
        }
    }

    fn one(&self, doc: Value) -> Value {
        let Value::Object(mut obj) = doc else {
            return doc;
        };
        if !self.select.is_empty() {
            let mut kept = Map::new();
            for p in &self.select {
                copy_path(&obj, &mut kept, p);
            }
            obj = kept;
        }
        for p in &self.remove {
            remove_path(&mut obj, p);
        }
        for (from, to) in &self.rename {
            if let Some(v) = obj.remove(from) {
                obj.insert(to.clone(), v);
            }
        }
        Value::Object(obj)
    }
}

fn path(raw: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = raw.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!(
            "{raw:?} is not a dotted field path (`id`, `address.city`)"
        ));
    }
    Ok(parts)
}

/// Copies the value at `path` in `from` into the same place in `to`, creating the objects on
/// the way; a path that does not exist copies nothing.
fn copy_path(from: &Map<String, Value>, to: &mut Map<String, Value>, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    let Some(value) = from.get(head) else {
        return;
    };
    if rest.is_empty() {
        to.insert(head.clone(), value.clone());
        return;
    }
    let Value::Object(inner) = value else {
        return;
    };
    let slot = to
        .entry(head.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(target) = slot {
        copy_path(inner, target, rest);
    }
}

fn remove_path(obj: &mut Map<String, Value>, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            obj.remove(last);
        }
        [head, rest @ ..] => {
            if let Some(Value::Object(inner)) = obj.get_mut(head) {
                remove_path(inner, rest);
            }
        }
    }
}

/// Transforms a successful JSON answer; anything else passes through untouched. The answer
/// to a HEAD request has no body to transform, so only its now-wrong length and validator
/// are dropped. A partial answer (206) is refused: a slice of the document cannot be
/// transformed, and passing it through would reveal the fields the transform hides.
pub(crate) async fn apply_to_response(
    t: &Transform,
    head_only: bool,
    resp: Response<Body>,
) -> Result<Response<Body>, Error> {
    if resp.status() == http::StatusCode::PARTIAL_CONTENT {
        return Err(Error::Upstream(
            "partial content on a route with a response transform".into(),
        ));
    }
    let json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if !resp.status().is_success() || !json {
        return Ok(resp);
    }
    let (mut parts, body) = resp.into_parts();
    // The representation changes, so the upstream's validator no longer describes it.
    parts.headers.remove(ETAG);
    if head_only {
        parts.headers.remove(CONTENT_LENGTH);
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = read_limited(body, t.max_body).await?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Upstream(format!("answer labelled JSON does not parse: {e}")))?;
    let out = Bytes::from(
        serde_json::to_vec(&t.apply(doc))
            .map_err(|e| Error::Internal(format!("cannot encode a transformed answer: {e}")))?,
    );
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    let body = Full::new(out).map_err(unreachable_error).boxed();
    Ok(Response::from_parts(parts, body))
}

/// Reads a whole body of at most `limit` bytes.
async fn read_limited(mut body: Body, limit: u64) -> Result<Bytes, Error> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Upstream(format!("answer body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(Error::Upstream(format!(
                    "answer longer than the transform's max_body_bytes ({limit})"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn unreachable_error(never: std::convert::Infallible) -> crate::problem::BoxError {
    match never {}
}

/// Whether a `Content-Type` value is JSON (`application/json`, `application/*+json`).
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn transform(toml_text: &str) -> Transform {
        let cfg: TransformConfig = toml::from_str(toml_text).unwrap();
        Transform::build(&cfg, "routes[0].transform").unwrap()
    }

    #[test]
    fn select_keeps_only_the_named_fields_including_nested_ones() {
        let t = transform(r#"select = ["id", "address.city", "missing.field"]"#);
        let out = t.apply(json!({
            "id": 7, "password_hash": "x",
            "address": {"city": "Oslo", "street": "Karl Johans gate 1"}
        }));
        assert_eq!(out, json!({"id": 7, "address": {"city": "Oslo"}}));
    }

    #[test]
    fn remove_and_rename_apply_after_select_and_to_every_array_element() {
        let t = transform(
            r#"
            remove = ["internal", "meta.trace"]
            rename = { name = "full_name" }
            "#,
        );
        let out = t.apply(json!([
            {"name": "Ada", "internal": 1, "meta": {"trace": "t", "v": 2}},
            {"name": "Grace"},
            "not an object"
        ]));
        assert_eq!(
            out,
            json!([
                {"full_name": "Ada", "meta": {"v": 2}},
                {"full_name": "Grace"},
                "not an object"
            ])
        );
    }

    #[test]
    fn bad_configurations_name_the_key() {
        let err = |text: &str| {
            let cfg: TransformConfig = toml::from_str(text).unwrap();
            Transform::build(&cfg, "routes[3].transform")
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"select = ["a..b"]"#).contains("routes[3].transform.select[0]"));
        assert!(err(r#"rename = { "a.b" = "c" }"#).contains("routes[3].transform.rename.a.b"));
        assert!(err("").contains("at least one of select, remove or rename"));
        assert!(err("select = [\"a\"]\nmax_body_bytes = 0").contains("max_body_bytes"));
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/html"));
        assert!(!is_json("application/jsonp"));
    }
}
