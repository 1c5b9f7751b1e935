//! The W3C `tracestate` header (trace-context level 2, §3.3): vendor entries that travel with
//! `traceparent`.
//!
//! Every header line of a request is one piece of a single list; the pieces are combined in
//! order. An entry that breaks the grammar, or more than 32 entries, makes the whole list
//! invalid and it is dropped, never partly passed on. A duplicated key keeps its first value.
//! A list over 512 characters is cut the way the spec allows: entries over 128 characters go
//! first, then entries from the end.

use std::fmt;

/// Most entries a list may have before it is refused whole.
pub const MAX_MEMBERS: usize = 32;
/// Longest list passed on; longer ones are trimmed.
pub const MAX_LEN: usize = 512;
/// Entries longer than this are the first dropped from a list that is too long.
const LARGE_MEMBER: usize = 128;
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 256;

/// A validated `tracestate` list, kept in its header form (`key=value,key=value`) so passing it
/// on costs a copy and no formatting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceState(String);

impl TraceState {
    /// Combines every `tracestate` header line of a request into one list. `None` when there
    /// is none, when the list is empty, or when it is invalid.
    pub fn from_headers<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut members: Vec<&str> = Vec::new();
        for line in lines {
            for member in line.split(',').map(trim_ows).filter(|m| !m.is_empty()) {
                let key = member_key(member)?;
                if members.len() == MAX_MEMBERS {
                    return None;
                }
                if !members.iter().any(|m| member_key(m) == Some(key)) {
                    members.push(member);
                }
            }
        }
        Self::from_members(trim_to_limit(members))
    }

    /// Parses one header value.
    pub fn parse(value: &str) -> Option<Self> {
        Self::from_headers([value])
    }

    fn from_members(members: Vec<&str>) -> Option<Self> {
        (!members.is_empty()).then(|| Self(members.join(",")))
    }

    /// The list in header form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value of `key`, if the list has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .split(',')
            .find_map(|m| m.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Optional white space around list members (RFC 9110 OWS: spaces and tabs).
pub(crate) fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// The key of a well-formed member, `None` when the member breaks the grammar.
fn member_key(member: &str) -> Option<&str> {
    let (key, value) = member.split_once('=')?;
    (valid_key(key) && valid_value(value)).then_some(key)
}

/// `key = ( lcalpha / DIGIT ) 0*255 ( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" )`.
fn valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let lower_or_digit = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match bytes.split_first() {
        Some((first, rest)) => {
            key.len() <= MAX_KEY
                && lower_or_digit(*first)
                && rest
                    .iter()
                    .all(|&b| lower_or_digit(b) || b"_-*/@".contains(&b))
        }
        None => false,
    }
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII but `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    let chr = |b: &u8| (0x20..=0x7e).contains(b) && *b != b',' && *b != b'=';
    !value.is_empty()
        && value.len() <= MAX_VALUE
        && value.as_bytes().iter().all(chr)
        && !value.ends_with(' ')
}

/// Drops entries until the list fits [`MAX_LEN`]: large entries first, then from the end.
fn trim_to_limit(mut members: Vec<&str>) -> Vec<&str> {
    let len = |m: &[&str]| m.iter().map(|s| s.len()).sum::<usize>() + m.len().saturating_sub(1);
    if len(&members) <= MAX_LEN {
        return members;
    }
    while len(&members) > MAX_LEN {
        match members.iter().rposition(|m| m.len() > LARGE_MEMBER) {
            Some(i) => members.remove(i),
            None => break,
        };
    }
    while len(&members) > MAX_LEN {
        members.pop();
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn combined(lines: &[&str]) -> Option<String> {
        TraceState::from_headers(lines.iter().copied()).map(|s| s.to_string())
    }

    #[test]
    fn lines_are_combined_in_order_and_white_space_trimmed() {
        assert_eq!(
            combined(&["foo=1 \t , \t bar=2", "", "\t baz=3 \t"]).as_deref(),
            Some("foo=1,bar=2,baz=3")
        );
    }

    #[test]
    fn an_empty_list_is_no_list() {
        assert_eq!(combined(&[""]), None);
        assert_eq!(combined(&[" , ,"]), None);
        assert_eq!(combined(&[]), None);
    }

    #[test]
    fn one_bad_member_drops_the_whole_list() {
        for bad in [
            "foo =1",
            "FOO=1",
            "foo.bar=1",
            "@foo=1,bar=2",
            "foo=bar=baz",
            "foo=,bar=3",
            "foo",
            "foo=a\u{7f}",
        ] {
            assert_eq!(combined(&["ok=1", bad]), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_follow_the_level_2_grammar() {
        for good in [
            "foo@=1",
            "foo@@bar=1",
            "foo@bar@baz=1",
            "0ab_-*/@x=1",
            "t@vvvvvvvvvvvvvvv=1",
        ] {
            assert_eq!(combined(&[good]).as_deref(), Some(good));
        }
        let longest = format!("{}=1", "z".repeat(256));
        assert!(combined(&[&longest]).is_some());
        let too_long = format!("{}=1", "z".repeat(257));
        assert_eq!(combined(&["foo=1", &too_long]), None);
    }

    #[test]
    fn values_take_every_printable_but_comma_and_equals() {
        let value: String = (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .collect();
        let member = format!("k={value}");
        assert_eq!(
            TraceState::parse(&member).unwrap().get("k"),
            Some(value.as_str())
        );
        assert_eq!(
            combined(&["k=ends in space "]).as_deref(),
            Some("k=ends in space")
        );
    }

    #[test]
    fn thirty_two_members_pass_and_thirty_three_drop_the_list() {
        let members = |n: usize| (1..=n).map(|i| format!("k{i}=v")).collect::<Vec<_>>();
        let ok = members(32).join(",");
        assert_eq!(TraceState::parse(&ok).unwrap().as_str(), ok);
        assert_eq!(TraceState::parse(&members(33).join(",")), None);
    }

    #[test]
    fn a_duplicated_key_keeps_its_first_value() {
        assert_eq!(combined(&["foo=1", "foo=2"]).as_deref(), Some("foo=1"));
        assert_eq!(combined(&["foo=1,foo=1"]).as_deref(), Some("foo=1"));
    }

    #[test]
    fn long_lists_lose_large_members_first_then_the_tail() {
        let large = format!("big={}", "x".repeat(200));
        let small: Vec<String> = (0..30)
            .map(|i| format!("k{i:02}={}", "v".repeat(20)))
            .collect();
        let mut lines = vec![large.as_str()];
        lines.extend(small.iter().map(String::as_str));
        let kept = TraceState::from_headers(lines).unwrap();
        assert!(kept.get("big").is_none());
        assert!(kept.as_str().len() <= MAX_LEN);
        assert_eq!(kept.get("k00").map(str::len), Some(20));
        assert!(kept.get("k29").is_none());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_output_reparses(s in ".{0,600}") {
            if let Some(state) = TraceState::parse(&s) {
                prop_assert!(state.as_str().len() <= MAX_LEN);
                prop_assert_eq!(TraceState::parse(state.as_str()), Some(state.clone()));
            }
        }
    }
}
