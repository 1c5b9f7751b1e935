//! Header handling per RFC 9110: hop-by-hop removal (including the names listed in
//! `Connection`), `Forwarded` / `X-Forwarded-*` / `Via`, and configured header edits.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::Error;
use crate::config::HeaderEdits;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1, plus the
/// de-facto `Proxy-Connection` and `Keep-Alive`, and `HTTP2-Settings`, which belongs to an
/// `h2c` upgrade of this connection only, RFC 9113 §3.1).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers and every header named in `Connection`. `Upgrade` is removed
/// too unless `keep_upgrade` (a WebSocket handshake being passed through).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of them: one pass over the names present (a handful) costs
    // less than the eleven hashed removals it saves, on the request and on the response.
    let any = headers
        .keys()
        .any(|n| n == header::UPGRADE || HOP_BY_HOP.contains(n));
    if !any {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        if keep_upgrade && (n == header::UPGRADE || n == header::CONNECTION) {
            continue;
        }
        headers.remove(n);
    }
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// What this hop knows about the client connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    /// The peer address of the client connection.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub proto: &'a str,
    /// The `Host` the client asked for, if any.
    pub host: Option<&'a HeaderValue>,
    /// Whether the client is a trusted proxy whose forwarding headers are kept.
    pub trusted: bool,
}

/// Adds this hop's `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`
/// and `Via`. From a trusted client the earlier hops are kept: the lists are appended to and
/// an earlier proxy's proto and host win. From any other client, `Forwarded` and every
/// `X-Forwarded-*` it sent are dropped first, so the upstream sees only what the gateway saw.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: ClientInfo<'_>,
    version: http::Version,
    via: &str,
) {
    if !client.trusted {
        drop_forwarding(headers);
    }
    let mut ip_buf = [0u8; 48];
    let ip = format_ip(client.peer.ip(), &mut ip_buf);
    let v6 = client.peer.is_ipv6();
    let host = client.host.and_then(|h| h.to_str().ok()).filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    });
    let mut fwd: [&str; 9] = ["for=", "", ip, "", ";proto=", client.proto, "", "", ""];
    if v6 {
        (fwd[1], fwd[3]) = ("\"[", "]\"");
    }
    if let Some(h) = host {
        (fwd[6], fwd[7], fwd[8]) = (";host=\"", h, "\"");
    }
    append_list(headers, header::FORWARDED, &fwd);
    append_list(headers, X_FORWARDED_FOR, &[ip]);
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if client.proto == "https" {
                "https"
            } else {
                "http"
            }),
        );
    }
    if let (false, Some(h)) = (headers.contains_key(X_FORWARDED_HOST), client.host) {
        headers.insert(X_FORWARDED_HOST, h.clone());
    }
    let v = match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        _ => "1.1",
    };
    append_list(headers, header::VIA, &[v, " ", via]);
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `ip` written into `buf` (long enough for any IPv6 address), without a heap allocation.
fn format_ip(ip: std::net::IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let written = write!(cursor, "{ip}").map(|()| cursor.position() as usize);
    // An address always fits; an empty string is the harmless answer if one ever did not.
    std::str::from_utf8(&buf[..written.unwrap_or(0)]).unwrap_or_default()
}

/// Headers other proxies and CDNs set for the client's address, which upstreams commonly
/// trust as such; only a trusted proxy's copies are kept.
const CLIENT_ADDRESS: [&str; 5] = [
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
];

/// Removes `Forwarded`, every `X-Forwarded-*` header and the [`CLIENT_ADDRESS`] headers.
fn drop_forwarding(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            *n == header::FORWARDED
                || n.as_str().starts_with("x-forwarded-")
                || CLIENT_ADDRESS.contains(&n.as_str())
        })
        .cloned()
        .collect();
    for n in forged {
        headers.remove(n);
    }
}

/// Appends `item` (given in pieces) to the comma-separated list in `name`, building the new
/// value with a single allocation of its exact size.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &[&str]) {
    let prev = headers
        .get(&name)
        .filter(|p| !p.is_empty() && p.to_str().is_ok())
        .map(HeaderValue::as_bytes);
    let len = prev.map_or(0, |p| p.len() + 2) + item.iter().map(|p| p.len()).sum::<usize>();
    let mut joined = Vec::with_capacity(len);
    if let Some(p) = prev {
        joined.extend_from_slice(p);
        joined.extend_from_slice(b", ");
    }
    for piece in item {
        joined.extend_from_slice(piece.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        headers.insert(name, v);
    }
}

/// Header edits compiled from config.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    add: Vec<(HeaderName, HeaderValue)>,
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl Edits {
    /// Compiles `cfg` at config key `key`.
    pub fn build(cfg: &HeaderEdits, key: &str) -> Result<Self, Error> {
        let pair = |section: &str, (n, v): (&String, &String)| {
            let k = format!("{key}.{section}.{n}");
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| Error::config(&k, "not a header name"))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| Error::config(&k, "not a header value"))?;
            Ok::<_, Error>((name, value))
        };
        let remove = cfg
            .remove
            .iter()
            .enumerate()
            .map(|(i, n)| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| Error::config(format!("{key}.remove[{i}]"), "not a header name"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            add: cfg
                .add
                .iter()
                .map(|p| pair("add", p))
                .collect::<Result<_, _>>()?,
            set: cfg
                .set
                .iter()
                .map(|p| pair("set", p))
                .collect::<Result<_, _>>()?,
            remove,
        })
    }

    /// Applies remove, then set, then add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-keep"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed_and_other_headers_stay() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h, false);
            let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, vec!["x-keep"], "{name}");
        }
        let mut plain = HeaderMap::new();
        plain.insert(header::HOST, HeaderValue::from_static("a"));
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn forwarding_headers_append_to_earlier_hops() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let host = HeaderValue::from_static("api.example.com");
        let client = ClientInfo {
            peer: "10.1.2.3:5555".parse().unwrap(),
            proto: "http",
            host: Some(&host),
            trusted: true,
        };
        add_forwarding(&mut h, client, http::Version::HTTP_11, "flotilla");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.2.3");
        assert_eq!(
            h["forwarded"],
            "for=10.1.2.3;proto=http;host=\"api.example.com\""
        );
        assert_eq!(h["via"], "1.1 flotilla");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn an_untrusted_client_cannot_forge_forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-port", HeaderValue::from_static("443"));
        h.insert("forwarded", HeaderValue::from_static("for=203.0.113.9"));
        let host = HeaderValue::from_static("api.example.com");
        let client = ClientInfo {
            peer: "10.1.2.3:5555".parse().unwrap(),
            proto: "http",
            host: Some(&host),
            trusted: false,
        };
        add_forwarding(&mut h, client, http::Version::HTTP_11, "flotilla");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("x-forwarded-port"));
        assert_eq!(
            h["forwarded"],
            "for=10.1.2.3;proto=http;host=\"api.example.com\""
        );
    }

    #[test]
    fn edits_remove_then_set_then_add() {
        let cfg = HeaderEdits {
            add: [("x-a".to_string(), "2".to_string())].into(),
            set: [("x-b".to_string(), "new".to_string())].into(),
            remove: vec!["x-c".into()],
        };
        let e = Edits::build(&cfg, "routes[0].request_headers").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("old"));
        h.insert("x-c", HeaderValue::from_static("gone"));
        e.apply(&mut h);
        assert_eq!(h.get_all("x-a").iter().count(), 2);
        assert_eq!(h["x-b"], "new");
        assert!(!h.contains_key("x-c"));
    }
}
