//! Which `Upgrade` requests the gateway passes through. An upgraded connection is spliced
//! byte for byte, so whatever travels over it later never meets routing, auth, rate limits or
//! logs. That is acceptable for WebSocket (one conversation with one route's upstream) and for
//! protocols a route names; it is not for `h2c`, whose upgraded connection would carry later
//! requests for any path straight to that upstream (and RFC 9113 §3.1 deprecates it).

use http::HeaderMap;
use http::header::{self, HeaderValue};

use crate::Error;

/// Always allowed: RFC 6455's handshake.
const WEBSOCKET: &str = "websocket";

/// Refused even when configured: it would tunnel requests past the gateway.
const H2C: &str = "h2c";

/// Validates a route's `upgrade_protocols` (config key `key`).
pub(crate) fn check_config(protocols: &[String], key: &str) -> Result<(), Error> {
    for (i, p) in protocols.iter().enumerate() {
        let bad = |why: &str| Error::config(format!("{key}[{i}]"), format!("{p:?} {why}"));
        if p.eq_ignore_ascii_case(H2C) {
            return Err(bad(
                "would carry later requests past the gateway's routing and auth",
            ));
        }
        if p.is_empty() || HeaderValue::from_str(p).is_err() || p.contains([',', ' ']) {
            return Err(bad("is not a protocol name"));
        }
    }
    Ok(())
}

/// Whether every protocol the client offers in `Upgrade` is `websocket` or one of
/// `configured`; a list mixing an allowed protocol with another is refused whole, so the
/// upstream can never pick the one the route does not allow.
pub(crate) fn allowed(headers: &HeaderMap, configured: &[String]) -> bool {
    let mut offered = headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or(",").split(','))
        .map(|p| p.trim().split('/').next().unwrap_or_default())
        .peekable();
    offered.peek().is_some()
        && offered.all(|name| {
            name.eq_ignore_ascii_case(WEBSOCKET)
                || configured.iter().any(|c| c.eq_ignore_ascii_case(name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn websocket_and_configured_protocols_only() {
        let configured = ["x-tunnel".to_owned()];
        assert!(allowed(&upgrade("websocket"), &[]));
        assert!(allowed(&upgrade("WebSocket"), &[]));
        assert!(allowed(&upgrade("X-Tunnel/2"), &configured));
        assert!(!allowed(&upgrade("h2c"), &configured));
        assert!(!allowed(&upgrade("websocket, h2c"), &configured));
        assert!(!allowed(&upgrade(""), &configured));
        assert!(!allowed(&HeaderMap::new(), &configured));
    }

    #[test]
    fn h2c_and_malformed_names_are_refused_in_config() {
        let key = "routes[0].upgrade_protocols";
        assert!(check_config(&["x-tunnel".into()], key).is_ok());
        for bad in ["h2c", "H2C", "", "a, b"] {
            let err = check_config(&[bad.into()], key).unwrap_err();
            assert!(
                err.to_string().contains("routes[0].upgrade_protocols[0]"),
                "{err}"
            );
        }
    }
}
