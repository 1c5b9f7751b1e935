//! A strict reader of the Prometheus text exposition format (and the OpenMetrics text format
//! prometheus-client writes), for asserting that `/metrics` output parses and for reading
//! sample values in tests.

use std::collections::BTreeMap;

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with any `_total`, `_bucket` suffix).
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Parses exposition text, refusing anything malformed with the line number.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() || line.starts_with('#') {
            if line.starts_with("# ") || line.is_empty() || line == "# EOF" {
                continue;
            }
            return Err(format!("line {n}: comment without a space: {line:?}"));
        }
        samples.push(parse_sample(line).map_err(|e| format!("line {n}: {e}: {line:?}"))?);
    }
    Ok(samples)
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return Err("no value".into()),
    };
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = if let Some(body) = rest.strip_prefix('{') {
        let end = body.rfind('}').ok_or("unclosed labels")?;
        (parse_labels(&body[..end])?, &body[end + 1..])
    } else {
        (BTreeMap::new(), rest)
    };
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("label without '='")?;
        let key = rest[..eq].trim();
        if !valid_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let after = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let (value, len) = read_quoted(after)?;
        out.insert(key.to_owned(), value);
        rest = after[len..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Ok(out)
}

/// Reads up to the closing quote; returns the unescaped value and bytes consumed (with quote).
fn read_quoted(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (escaped, c) {
            (true, 'n') => (out.push('\n'), escaped = false).1,
            (true, c) => (out.push(c), escaped = false).1,
            (false, '\\') => escaped = true,
            (false, '"') => return Ok((out, i + 1)),
            (false, c) => out.push(c),
        }
    }
    Err("unterminated label value".into())
}

/// The sum of all samples named `name` whose labels include every pair in `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Runs Prometheus's own linter, `promtool check metrics`, on an exposition in the text format
/// 0.0.4: `None` when promtool is not installed (a recorded skip, see [`crate::tool`]),
/// otherwise its verdict, with every problem it names.
pub fn promtool_check(text: &str, suite: &str) -> Option<Result<(), String>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let promtool = crate::tool("promtool", suite)?;
    let run = || -> std::io::Result<std::process::Output> {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes())?;
        }
        child.wait_with_output()
    };
    Some(match run() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "promtool check metrics: {}{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("cannot run promtool: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_values() {
        let text =
            "# HELP x help\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"z\"} 3\ny 1.5e3\n# EOF\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["b"], "q\"z");
        assert_eq!(sum(&s, "x_total", &[("a", "1")]), 3.0);
        assert_eq!(s[1].value, 1500.0);
    }

    #[test]
    fn refuses_malformed_lines() {
        assert!(parse("x{a=1} 2").is_err());
        assert!(parse("9x 2").is_err());
        assert!(parse("x two").is_err());
        assert!(parse("#bad").is_err());
    }
}
