//! The two exposition formats `/metrics` answers in, chosen by the scraper's `Accept` header.
//!
//! prometheus-client writes only OpenMetrics. The Prometheus text format 0.0.4 — what most
//! scrapers and tools (`promtool check metrics`, older Prometheus, many agents) read, and what
//! a client that states no preference gets — differs from it in a few mechanical ways, which
//! [`to_text_004`] rewrites line by line rather than re-encoding the metrics:
//! a counter family is named after its `_total` samples, `info` becomes a `gauge` named after
//! its `_info` sample, `unknown` is `untyped`, and there are no `# UNIT` lines, no exemplars
//! and no `# EOF`.

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4, the default.
    Text,
    /// OpenMetrics 1.0.0 text, for scrapers that ask for it.
    OpenMetrics,
}

/// The content type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics when it ranks
    /// `application/openmetrics-text` above the text format (as Prometheus does), the text
    /// format otherwise — also when the header is absent or names neither, since a scraper is
    /// better served by a format it may read than by a 406.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, v)| v.trim().parse().unwrap_or(0.0));
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics > text {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => TEXT_CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Rewrites OpenMetrics text, as prometheus-client writes it, into the text format 0.0.4.
pub(crate) fn to_text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // prometheus-client writes a family's TYPE right after its HELP; the type decides
            // the name both lines carry.
            let ty = lines.peek().and_then(|next| family_type(next, name));
            let (name, _) = renamed(name, ty.unwrap_or("gauge"));
            push_line(&mut out, &format!("# HELP {name} {help}"));
        } else if let Some((name, ty)) =
            line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' '))
        {
            let (name, ty) = renamed(name, ty);
            push_line(&mut out, &format!("# TYPE {name} {ty}"));
        } else if line.starts_with('#') {
            push_line(&mut out, line);
        } else {
            push_line(&mut out, without_exemplar(line));
        }
    }
    out
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

/// The type a `# TYPE` line gives family `name`, if `line` is that line.
fn family_type<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (n, ty) = line.strip_prefix("# TYPE ")?.split_once(' ')?;
    (n == name).then_some(ty)
}

/// A family's 0.0.4 name and type, from its OpenMetrics name and type.
fn renamed(name: &str, ty: &str) -> (String, &'static str) {
    match ty {
        "counter" => (format!("{name}_total"), "counter"),
        "info" => (format!("{name}_info"), "gauge"),
        "gauge" => (name.to_owned(), "gauge"),
        "histogram" => (name.to_owned(), "histogram"),
        "summary" => (name.to_owned(), "summary"),
        // `unknown`, and OpenMetrics types 0.0.4 has no word for.
        _ => (name.to_owned(), "untyped"),
    }
}

/// A sample line without its exemplar (` # {labels} value [timestamp]` after the value),
/// which 0.0.4 cannot express. The `#` is searched for only after the label set, whose quoted
/// values may contain anything.
fn without_exemplar(line: &str) -> &str {
    let labels_end = match line.find(['{', ' ']) {
        Some(open) if line[open..].starts_with('{') => {
            closing_brace(line, open).map_or(open, |c| c + 1)
        }
        Some(space) => space,
        None => return line,
    };
    match line[labels_end..].find(" # ") {
        Some(at) => &line[..labels_end + at],
        None => line,
    }
}

/// The index of the `}` closing the label set opened at `open`, skipping quoted values.
fn closing_brace(line: &str, open: usize) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(open + i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_the_format() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        assert_eq!(
            Format::from_accept(Some("text/plain;version=0.0.4")),
            Format::Text
        );
        assert_eq!(Format::from_accept(Some("application/json")), Format::Text);
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
            version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::from_accept(Some("Application/OpenMetrics-Text; q=0.2, text/plain")),
            Format::Text
        );
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn openmetrics_is_rewritten_as_text_004() {
        let om = "# HELP http_requests HTTP requests.\n\
                  # TYPE http_requests counter\n\
                  http_requests_total{route=\"/a # {b}\"} 3 # {trace_id=\"x\"} 1.0\n\
                  # HELP build Build.\n\
                  # TYPE build info\n\
                  build_info{version=\"1\"} 1\n\
                  # HELP took_seconds Time.\n\
                  # TYPE took_seconds histogram\n\
                  # UNIT took_seconds seconds\n\
                  took_seconds_bucket{le=\"+Inf\"} 1 # {id=\"e\"} 0.2\n\
                  # HELP odd Odd.\n\
                  # TYPE odd unknown\n\
                  odd 2\n\
                  # EOF\n";
        let expected = "# HELP http_requests_total HTTP requests.\n\
                        # TYPE http_requests_total counter\n\
                        http_requests_total{route=\"/a # {b}\"} 3\n\
                        # HELP build_info Build.\n\
                        # TYPE build_info gauge\n\
                        build_info{version=\"1\"} 1\n\
                        # HELP took_seconds Time.\n\
                        # TYPE took_seconds histogram\n\
                        took_seconds_bucket{le=\"+Inf\"} 1\n\
                        # HELP odd Odd.\n\
                        # TYPE odd untyped\n\
                        odd 2\n";
        assert_eq!(to_text_004(om), expected);
    }

    #[test]
    fn unlabelled_samples_lose_their_exemplar_only() {
        assert_eq!(without_exemplar("c_total 1 # {a=\"b\"} 1"), "c_total 1");
        assert_eq!(without_exemplar("g 2.5"), "g 2.5");
        assert_eq!(without_exemplar("broken{a=\"b 1"), "broken{a=\"b 1");
    }
}
