//! The small template language of HTTP paths and bodies: `{{data.order_id}}`,
//! `{{steps.reserve.result.id}}`, `{{steps.reserve.key}}`, `{{saga.id}}`.
//!
//! A placeholder is a dotted path into the saga's context; nothing else (no expressions, no
//! loops), so a definition cannot run code. In a path a value is percent-encoded as one
//! segment, so it cannot add segments or a query. In a body, a string that is exactly one
//! placeholder becomes the value itself (a number stays a number); placeholders inside longer
//! strings are replaced by the value's text.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// Everything but RFC 3986's unreserved characters is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text kept as is.
    Text(&'a str),
    /// A placeholder's path, split on dots.
    Var(Vec<&'a str>),
}

/// Splits `t` into text and placeholders; errors say what is malformed.
pub fn parse(t: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("{t:?} opens a placeholder that is never closed"))?;
        parts.push(Part::Var(path(after[..close].trim(), t)?));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

fn path<'a>(p: &'a str, t: &str) -> Result<Vec<&'a str>, String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let segs: Vec<&str> = p.split('.').collect();
    if !segs.iter().all(|s| ok(s)) {
        return Err(format!(
            "{t:?}: placeholder {p:?} must be a dotted path of letters, digits, '_' and '-'"
        ));
    }
    let known = matches!(segs.as_slice(), ["data", ..] | ["saga", "id" | "name"])
        || matches!(
            segs.as_slice(),
            ["steps", _, "result", ..] | ["steps", _, "key"]
        );
    if !known {
        return Err(format!(
            "{t:?}: placeholder {p:?} must start with data., saga.id, saga.name, \
             steps.<step>.result or steps.<step>.key"
        ));
    }
    Ok(segs)
}

/// Every placeholder path in `t` (for validation).
pub fn vars(t: &str) -> Result<Vec<Vec<&str>>, String> {
    Ok(parse(t)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Text(_) => None,
        })
        .collect())
}

/// Every template string inside a JSON body.
pub fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn lookup<'c>(ctx: &'c Value, var: &[&str]) -> Result<&'c Value, String> {
    var.iter()
        .try_fold(ctx, |v, key| match v {
            Value::Object(o) => o.get(*key),
            Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
        .ok_or_else(|| format!("{{{{{}}}}} has no value", var.join(".")))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders a path template, each value encoded as one path segment.
pub fn render_path(t: &str, ctx: &Value) -> Result<String, String> {
    parse(t)?.into_iter().try_fold(String::new(), |mut out, p| {
        match p {
            Part::Text(s) => out.push_str(s),
            Part::Var(v) => out.extend(utf8_percent_encode(&text(lookup(ctx, &v)?), SEGMENT)),
        }
        Ok(out)
    })
}

/// Renders every string of a JSON body.
pub fn render_value(v: &Value, ctx: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => render_string(s, ctx)?,
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value(x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_value(x, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn render_string(s: &str, ctx: &Value) -> Result<Value, String> {
    let parts = parse(s)?;
    if let [Part::Var(v)] = parts.as_slice() {
        return lookup(ctx, v).cloned();
    }
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Var(v) => out.push_str(&text(lookup(ctx, &v)?)),
        }
    }
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"data": {"order_id": "o/1 ?x", "amount": 42, "items": [{"sku": "a"}]},
               "steps": {"reserve": {"result": {"id": "r-7"}, "key": "k"}}})
    }

    #[test]
    fn path_values_are_encoded_as_one_segment() {
        let p = render_path(
            "/orders/{{data.order_id}}/r/{{ steps.reserve.result.id }}",
            &ctx(),
        );
        assert_eq!(p.unwrap(), "/orders/o%2F1%20%3Fx/r/r-7");
    }

    #[test]
    fn a_lone_placeholder_keeps_the_json_type() {
        let body = json!({"amount": "{{data.amount}}", "note": "order {{data.amount}}",
                          "sku": "{{data.items.0.sku}}"});
        let out = render_value(&body, &ctx()).unwrap();
        assert_eq!(out, json!({"amount": 42, "note": "order 42", "sku": "a"}));
    }

    #[test]
    fn missing_values_and_bad_placeholders_are_errors() {
        assert!(
            render_path("/{{data.nope}}", &ctx())
                .unwrap_err()
                .contains("data.nope")
        );
        assert!(parse("/{{data.x").unwrap_err().contains("never closed"));
        assert!(
            parse("{{env.HOME}}")
                .unwrap_err()
                .contains("must start with")
        );
        assert!(parse("{{data.a b}}").unwrap_err().contains("dotted path"));
    }
}
