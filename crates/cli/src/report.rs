//! Error messages as the user reads them: each cause once, plain quoting.

/// `e` and its causes joined by `: `, leaving out a cause whose text the message already
/// holds. Errors often quote their source in their own message and also return it as
/// `source()`; printing both says "Address already in use (os error 98): Address already in
/// use (os error 98)".
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

/// A configuration error naming its key and where the bad value came from, without the
/// nested backticks figment puts around a list of choices (``expected `one of `a`, `b```).
pub(crate) fn config_error(e: &flotilla::ConfigError) -> String {
    let origin = e
        .origin
        .as_ref()
        .map(|o| format!(" (from {o})"))
        .unwrap_or_default();
    format!("config key {}: {}{origin}", e.key, unnest(&e.message))
}

/// ``expected `X` `` stays; ``expected `one of `a`, `b``` becomes ``expected one of `a`, `b```.
fn unnest(message: &str) -> String {
    let Some((head, rest)) = message.split_once("expected `") else {
        return message.to_owned();
    };
    match rest.strip_suffix('`') {
        Some(inner) if inner.contains('`') => format!("{head}expected {inner}"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:80: {0}")]
    struct Bind(#[source] std::io::Error);

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(Bind(io)).context("cannot start the gateway");
        assert_eq!(
            chain(&e),
            "cannot start the gateway: cannot listen on 127.0.0.1:80: Address already in use"
        );
    }

    #[test]
    fn config_errors_quote_without_nesting_backticks() {
        let e = flotilla::ConfigError {
            key: "(root)".into(),
            message: "unknown field: found `url`, expected `one of `server`, `storage``".into(),
            origin: Some("FLOTILLA_URL".into()),
        };
        assert_eq!(
            config_error(&e),
            "config key (root): unknown field: found `url`, expected one of `server`, \
             `storage` (from FLOTILLA_URL)"
        );
    }
}
