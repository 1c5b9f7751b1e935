//! Keeping secrets out of messages and logs.
//!
//! Connection URLs carry passwords (`amqp://user:secret@host`), and client libraries often
//! repeat the URL, or parts of it, in their own error text. Every backend reports connect
//! failures through these two functions so a password never reaches a log line, an error
//! message or an HTTP answer.

/// What a password is replaced with.
pub const MASK: &str = "***";

/// `url` with the password of its userinfo (`user:password@`) replaced by [`MASK`]; URLs
/// without a password come back unchanged.
///
/// ```
/// use flotilla_core::redact::url;
/// assert_eq!(url("amqp://guest:s3cret@h:5672/%2f"), "amqp://guest:***@h:5672/%2f");
/// assert_eq!(url("nats://h:4222"), "nats://h:4222");
/// ```
pub fn url(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}{MASK}{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// `text` (typically a client library's error message about `url`) with every occurrence of
/// `url`'s password replaced by [`MASK`], whether the library quoted the whole URL or only
/// parts of it.
///
/// ```
/// use flotilla_core::redact::text_about;
/// let msg = "bad URI amqp://u:pw9@h/: auth failed for pw9";
/// assert_eq!(text_about(msg, "amqp://u:pw9@h/"), "bad URI amqp://u:***@h/: auth failed for ***");
/// ```
pub fn text_about(text: &str, url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => text.replace(&url[start..end], MASK),
        None => text.to_owned(),
    }
}

/// Byte range of the password in `url`'s userinfo, if it has a non-empty one.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_len].rfind('@')?;
    let colon = rest[..at].find(':')?;
    (colon + 1 < at).then_some((authority_start + colon + 1, authority_start + at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_everything_else_kept() {
        assert_eq!(url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(url("redis://:secret@h:6379"), "redis://:***@h:6379");
        assert_eq!(url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
        assert_eq!(url("not a url"), "not a url");
        assert_eq!(url("amqp://u:p%40ss@h/"), "amqp://u:***@h/");
    }

    #[test]
    fn a_password_with_an_at_sign_is_masked_whole() {
        assert_eq!(url("amqp://u:p@ss@h/"), "amqp://u:***@h/");
    }

    #[test]
    fn text_about_a_url_without_password_is_unchanged() {
        assert_eq!(text_about("failed: x", "nats://h:4222"), "failed: x");
    }
}
