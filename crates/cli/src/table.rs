//! The admin commands' human output: a table when the answer is a list of objects.
//!
//! Columns come in reading order (what a row is about first, the event data last), times read
//! as "3 min ago" rather than epoch milliseconds, and an event's data is shown as compact JSON.

use serde_json::{Map, Value};

use crate::out;

/// Columns shown first, in this order, when a row has them: what the row is about, then
/// where an instance is and how it is; for a gateway route, what it matches, where it goes,
/// how busy and how healthy it is.
const LEADING: &[&str] = &[
    "name",
    "service",
    "stream",
    "group",
    "topic",
    "id",
    "status",
    "address",
    "port",
    "version",
    "methods",
    "match",
    "upstream",
    "req_per_s",
    "5xx_per_s",
    "breakers",
];
/// Columns shown last, in this order: bookkeeping, then the widest.
const TRAILING: &[&str] = &["create_index", "modify_index", "output", "data"];
/// Objects are left out of tables, except these (shown as compact JSON).
const SHOWN_OBJECTS: &[&str] = &["data"];
/// Widest a cell is printed; longer ones are cut with an ellipsis.
const MAX_WIDTH: usize = 60;

/// Prints `value` as one JSON document with `--json`, else as a table when it is (or holds
/// under `key`) an array of objects, else as JSON.
pub(crate) fn print(value: &Value, key: Option<&str>, json: bool) {
    if json {
        return out::json(value);
    }
    let rows = key.and_then(|k| value.get(k)).unwrap_or(value);
    match rows.as_array() {
        Some(rows) if rows.iter().all(Value::is_object) => {
            for line in render(rows, now_ms()) {
                out::line(line);
            }
        }
        _ => out::json(value),
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The table's lines, header first; `(none)` for no rows.
fn render(rows: &[Value], now_ms: i64) -> Vec<String> {
    let Some(first) = rows.first().and_then(Value::as_object) else {
        return vec!["(none)".to_owned()];
    };
    let columns = columns(first);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(c, &r[c], now_ms)).collect())
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            let header = header(&columns[i]).chars().count();
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .fold(header, usize::max)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let padded: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut lines = vec![line(columns.iter().map(|c| header(c)).collect())];
    lines.extend(cells.into_iter().map(line));
    lines
}

fn columns(first: &Map<String, Value>) -> Vec<String> {
    let shown = |k: &str, v: &Value| !v.is_object() || SHOWN_OBJECTS.contains(&k);
    let mut keys: Vec<&str> = first
        .iter()
        .filter(|(k, v)| shown(k, v))
        .map(|(k, _)| k.as_str())
        .collect();
    let rank = |k: &str| {
        let at = |list: &[&str]| list.iter().position(|l| *l == k);
        match (at(LEADING), at(TRAILING)) {
            (Some(i), _) => (0, i),
            (None, None) => (1, 0),
            (None, Some(i)) => (2, i),
        }
    };
    keys.sort_by_key(|k| rank(k));
    keys.into_iter().map(str::to_owned).collect()
}

/// `published_at_ms` reads `PUBLISHED`: the unit is gone once the value reads as a time.
fn header(column: &str) -> String {
    column
        .strip_suffix("_at_ms")
        .or_else(|| column.strip_suffix("_at"))
        .unwrap_or(column)
        .to_uppercase()
}

fn cell(column: &str, v: &Value, now_ms: i64) -> String {
    let text = match v {
        Value::String(s) if column.ends_with("_at") => {
            rfc3339_ms(s).map_or(s.clone(), |ms| ago(ms, now_ms))
        }
        Value::Number(n) if column.ends_with("_at_ms") => {
            n.as_i64().map_or(n.to_string(), |ms| ago(ms, now_ms))
        }
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a
            .iter()
            .map(|v| cell("", v, now_ms))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    cut(text)
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// How long ago `ms` (epoch milliseconds) was: `12 s ago`, `3 min ago`, `in 5 s`.
fn ago(ms: i64, now_ms: i64) -> String {
    let secs = (now_ms - ms) / 1000;
    let (n, unit) = match secs.unsigned_abs() {
        s if s < 60 => (s, "s"),
        s if s < 3600 => (s / 60, "min"),
        s if s < 86_400 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    match secs < 0 {
        true => format!("in {n} {unit}"),
        false => format!("{n} {unit} ago"),
    }
}

fn cut(text: String) -> String {
    match text.char_indices().nth(MAX_WIDTH) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_name_comes_first_and_times_read_as_ages() {
        let now = 1_700_000_000_000;
        let rows = [json!({
            "instances": 2, "name": "orders", "registered_at_ms": now - 180_000,
        })];
        let lines = render(&rows, now);
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "INSTANCES", "REGISTERED"]
        );
        assert!(
            lines[1].starts_with("orders") && lines[1].ends_with("3 min ago"),
            "{lines:?}"
        );
    }

    #[test]
    fn events_show_their_data_last_and_recorded_time() {
        let rows = [json!({
            "data": {"sku": "a-1"}, "metadata": {"x": 1}, "position": 7,
            "recorded_at": "2023-11-14T22:13:00Z", "stream": "order-42", "type": "Placed",
        })];
        let now = rfc3339_ms("2023-11-14T22:13:20Z").unwrap();
        let lines = render(&rows, now);
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["STREAM", "POSITION", "RECORDED", "TYPE", "DATA"]);
        assert!(
            lines[1].contains("20 s ago") && lines[1].ends_with(r#"{"sku":"a-1"}"#),
            "{lines:?}"
        );
    }

    #[test]
    fn ages_count_down_into_the_future_and_long_cells_are_cut() {
        assert_eq!(ago(10_000, 4_000), "in 6 s");
        assert_eq!(ago(0, 2 * 86_400_000), "2 d ago");
        assert_eq!(cut("x".repeat(70)).chars().count(), MAX_WIDTH + 1);
    }
}
