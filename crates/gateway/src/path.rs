//! Request-path normalisation, done once before matching so that what is matched is exactly
//! what is forwarded: a route cannot be bypassed with `/a/../admin`, `/%61dmin` or `//admin`.
//!
//! Rules: percent-escapes are decoded per segment; an escape that decodes to `/`, `\` or NUL,
//! a malformed escape and a segment that is not UTF-8 are refused; empty segments (`//`) are
//! merged; `.` and `..` (also when escaped) are resolved as RFC 3986 §5.2.4 says, never
//! climbing above the root. The forwarded path is re-encoded from the decoded segments.

use crate::Error;

/// A normalised path: decoded segments, and whether the original ended with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// Decoded segments, none empty, none `.` or `..`.
    pub segments: Vec<String>,
    /// Whether the path ends with a slash (`/users/` rather than `/users`).
    pub trailing_slash: bool,
}

impl NormalPath {
    /// Normalises the path part of a request target (no query).
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if !raw.starts_with('/') {
            return Err(Error::BadPath("the path must start with `/`".into()));
        }
        let mut segments: Vec<String> = Vec::new();
        let mut trailing_slash = false;
        for raw_seg in raw[1..].split('/') {
            let seg = decode_segment(raw_seg)?;
            trailing_slash = false;
            match seg.as_str() {
                "" => trailing_slash = true,
                "." => trailing_slash = true,
                ".." => {
                    segments.pop();
                    trailing_slash = true;
                }
                _ => segments.push(seg),
            }
        }
        if segments.is_empty() {
            trailing_slash = false;
        }
        Ok(Self {
            segments,
            trailing_slash,
        })
    }

    /// The path re-encoded for forwarding (`/` for the root).
    pub fn encoded(&self) -> String {
        encode_segments(
            self.segments.iter().map(String::as_str),
            self.trailing_slash,
        )
    }
}

/// Joins decoded segments into an encoded path.
pub fn encode_segments<'a>(segments: impl Iterator<Item = &'a str>, trailing: bool) -> String {
    let mut out = String::with_capacity(64);
    for seg in segments {
        out.push('/');
        encode_into(seg, &mut out);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

fn decode_segment(raw: &str) -> Result<String, Error> {
    if !raw.contains('%') {
        // A raw NUL is refused like an encoded one: a template or path holding it would
        // otherwise be accepted once and refused in its own normal form.
        if raw.contains(['\\', '\0']) {
            return Err(Error::BadPath("backslash or NUL in path".into()));
        }
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_val(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_val(*b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Error::BadPath("malformed percent-escape".into()));
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) {
        return Err(Error::BadPath(
            "encoded slash, backslash or NUL in path".into(),
        ));
    }
    String::from_utf8(out).map_err(|_| Error::BadPath("path is not UTF-8".into()))
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes everything outside RFC 3986 `pchar` (minus `%`, which is always encoded).
fn encode_into(seg: &str, out: &mut String) {
    for &b in seg.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(s: &str) -> String {
        NormalPath::parse(s).unwrap().encoded()
    }

    /// Found by the `gateway_path` fuzz target: a raw NUL was accepted, its normal form
    /// (`%00`) refused.
    #[test]
    fn a_raw_nul_is_refused_like_an_encoded_one() {
        assert!(NormalPath::parse("/v1/a\0b").is_err());
        assert!(NormalPath::parse("/v1/a%00b").is_err());
    }

    #[test]
    fn dot_segments_and_empty_segments_are_resolved() {
        assert_eq!(norm("/a/b/../c"), "/a/c");
        assert_eq!(norm("/a/./b"), "/a/b");
        assert_eq!(norm("/../../admin"), "/admin");
        assert_eq!(norm("//admin//x"), "/admin/x");
        assert_eq!(norm("/a/%2e%2E/admin"), "/admin");
        assert_eq!(norm("/users/"), "/users/");
        assert_eq!(norm("/"), "/");
        assert_eq!(norm("/a/.."), "/");
    }

    #[test]
    fn escapes_are_decoded_then_re_encoded_canonically() {
        assert_eq!(norm("/%61dmin"), "/admin");
        assert_eq!(norm("/a%20b"), "/a%20b");
        assert_eq!(norm("/caf%C3%A9"), "/caf%C3%A9");
    }

    #[test]
    fn encoded_slashes_backslashes_nul_and_bad_escapes_are_refused() {
        for bad in [
            "/a%2Fb", "/a%2fb", "/a%5Cb", "/a\\b", "/a%00", "/a%zz", "/a%2", "/%FF", "x",
        ] {
            assert!(NormalPath::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent(s in "(/[a-zA-Z0-9%._~ -]{0,6}){0,6}") {
            if let Ok(p) = NormalPath::parse(&s) {
                let once = p.encoded();
                let twice = NormalPath::parse(&once).unwrap();
                prop_assert_eq!(twice.encoded(), once);
            }
        }

        #[test]
        fn normal_paths_never_contain_dot_segments(s in "(/(\\.|\\.\\.|%2e|%2E%2e|[a-z]{1,3})){0,8}/?") {
            let p = NormalPath::parse(&format!("/{s}")).unwrap();
            prop_assert!(p.segments.iter().all(|x| x != "." && x != ".." && !x.is_empty()));
            let enc = p.encoded();
            prop_assert!(!enc.contains("/./") && !enc.contains("/../") && !enc.contains("//"));
        }
    }
}
