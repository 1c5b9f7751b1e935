//! The request's authority, validated before routing: RFC 9112 §3.2 has a server answer 400 to
//! an HTTP/1.1 request without `Host`, with more than one, or with an invalid one, and RFC
//! 9113 §8.3.1 forbids userinfo in `:authority` and a `Host` that names another authority.
//! A request that passes is routed, cached and forwarded by the lowercase `host[:port]`.

use http::header::{HOST, HeaderMap};
use http::{Uri, Version};

use crate::Error;

/// The lowercase authority (`host[:port]`, empty when the request names none) of a request
/// whose `Host` / target authority is valid, or the 400 that names what is wrong.
pub(crate) fn validated(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<String, Error> {
    let bad = |what: String| Error::BadRequest(what);
    let mut hosts = headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(bad("more than one Host header".into())),
        (Some(v), None) => Some(v.to_str().map_err(|_| bad("Host is not ASCII".into()))?),
        (None, None) => None,
    };
    if let Some(h) = host {
        check(h.trim()).map_err(|why| bad(format!("invalid Host {h:?}: {why}")))?;
    } else if version == Version::HTTP_11 {
        // Even beside an absolute-form target, which names the authority itself.
        return Err(bad("a Host header is required in HTTP/1.1".into()));
    }
    let Some(target) = uri.authority().map(|a| a.as_str()) else {
        return match (host, version) {
            (Some(h), _) => Ok(h.trim().to_ascii_lowercase()),
            (None, Version::HTTP_10 | Version::HTTP_09) => Ok(String::new()),
            (None, _) => Err(bad("a Host header or :authority is required".into())),
        };
    };
    check(target).map_err(|why| bad(format!("invalid Host (request target) {target:?}: {why}")))?;
    // An absolute-form HTTP/1.1 target wins over `Host` (RFC 9112 §3.2.2); in HTTP/2 both
    // name the same authority or the request is malformed.
    if let (Some(h), Version::HTTP_2) = (host, version)
        && !h.trim().eq_ignore_ascii_case(target)
    {
        return Err(bad(format!(
            "Host {h:?} differs from :authority {target:?}"
        )));
    }
    Ok(target.to_ascii_lowercase())
}

/// RFC 9112 §3.2: `Host = uri-host [ ":" port ]`, with `uri-host` an IP literal in brackets,
/// an IPv4 address or a reg-name (RFC 3986 §3.2.2). Userinfo is not part of it. An empty value
/// is allowed: it is how a client says the target has no authority.
fn check(authority: &str) -> Result<(), &'static str> {
    if authority.contains('@') {
        return Err("userinfo is not allowed");
    }
    let (host, port) = split_port(authority)?;
    if let Some(p) = port
        && !p.is_empty()
        && (!p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return Err("the port is not a number from 0 to 65535");
    }
    if let Some(literal) = host.strip_prefix('[') {
        let inner = literal.strip_suffix(']').ok_or("an unclosed IP literal")?;
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| "not an IPv6 address");
    }
    if host.bytes().all(reg_name_byte) {
        Ok(())
    } else {
        Err("a character not allowed in a host name")
    }
}

/// `host` and the text after its port colon, if any.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if authority.starts_with('[') {
        return Ok(match authority.rfind("]:") {
            Some(i) => (&authority[..=i], Some(&authority[i + 2..])),
            None => (authority, None),
        });
    }
    Ok(match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    })
}

/// unreserved / pct-encoded / sub-delims (RFC 3986 §3.2.2).
fn reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_host(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn origin_form(values: &[&str]) -> Result<String, Error> {
        validated(
            Version::HTTP_11,
            &Uri::from_static("/x"),
            &with_host(values),
        )
    }

    #[test]
    fn valid_hosts_are_lowercased() {
        for (host, want) in [
            ("API.test:8080", "api.test:8080"),
            ("[::1]:80", "[::1]:80"),
            ("[::1]", "[::1]"),
            ("10.0.0.1", "10.0.0.1"),
            ("a:", "a:"),
            ("", ""),
        ] {
            assert_eq!(origin_form(&[host]).unwrap(), want, "{host}");
        }
    }

    #[test]
    fn invalid_hosts_are_refused_with_the_value_named() {
        for host in [
            "a b", "a/b", "u@a", "a:99999", "a:8o", "[::1", "[nope]:1", "a:1:2",
        ] {
            let err = origin_form(&[host]).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{host:?}")),
                "{host}: {err}"
            );
        }
        assert!(origin_form(&[]).is_err(), "HTTP/1.1 needs Host");
        let absolute = Uri::from_static("http://a.test/x");
        let no_host = validated(Version::HTTP_11, &absolute, &HeaderMap::new());
        assert!(no_host.is_err(), "even beside an absolute-form target");
        assert!(origin_form(&["a", "a"]).is_err(), "one Host only");
    }

    #[test]
    fn http_1_0_may_omit_host_and_http_2_must_agree_with_authority() {
        let none = HeaderMap::new();
        let origin = Uri::from_static("/x");
        assert_eq!(validated(Version::HTTP_10, &origin, &none).unwrap(), "");
        let h2 = Uri::from_static("http://A.test/x");
        assert_eq!(validated(Version::HTTP_2, &h2, &none).unwrap(), "a.test");
        assert_eq!(
            validated(Version::HTTP_2, &h2, &with_host(&["a.TEST"])).unwrap(),
            "a.test"
        );
        assert!(validated(Version::HTTP_2, &h2, &with_host(&["b.test"])).is_err());
        let userinfo = Uri::from_static("http://u@a.test/x");
        assert!(validated(Version::HTTP_2, &userinfo, &none).is_err());
    }
}
