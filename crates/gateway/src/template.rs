//! Path templates: `/users/{id}/orders/{*rest}`. Literal segments match exactly (after
//! normalisation), `{name}` matches one segment, a final `{*name}` matches the rest (possibly
//! nothing). The same syntax builds rewritten paths from captured parameters.

use crate::path::{NormalPath, encode_segments};

/// One template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal this text.
    Literal(String),
    /// Captures one segment.
    Param(String),
    /// Captures every remaining segment (last only).
    CatchAll(String),
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The segments in order.
    pub segments: Vec<Segment>,
}

/// Captured parameters, in template order.
pub type Params = Vec<(String, String)>;

impl Template {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let norm = NormalPath::parse(text).map_err(|e| e.to_string())?;
        if norm.encoded() != text && !text.contains('{') {
            return Err(format!(
                "{text:?} is not in normal form (expected {:?})",
                norm.encoded()
            ));
        }
        let mut segments = Vec::new();
        let mut names = Vec::new();
        let count = norm.segments.len();
        for (i, seg) in norm.segments.into_iter().enumerate() {
            let parsed = parse_segment(&seg)?;
            if let Segment::Param(n) | Segment::CatchAll(n) = &parsed {
                if names.contains(n) {
                    return Err(format!("parameter {{{n}}} appears twice"));
                }
                names.push(n.clone());
            }
            if matches!(parsed, Segment::CatchAll(_)) && i + 1 != count {
                return Err("a catch-all {*name} must be the last segment".into());
            }
            segments.push(parsed);
        }
        Ok(Self { segments })
    }

    /// Whether the template is a plain literal path.
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether the template ends in a catch-all.
    pub fn has_catch_all(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::CatchAll(_)))
    }

    /// Number of literal segments (more is more specific).
    pub fn literal_count(&self) -> usize {
        let lit = |s: &&Segment| matches!(s, Segment::Literal(_));
        self.segments.iter().filter(lit).count()
    }

    /// The names of every parameter.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::CatchAll(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches decoded path segments, returning captured parameters.
    pub fn matches(&self, path: &[String]) -> Option<Params> {
        let mut params = Params::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Literal(l) => (path.get(i)? == l).then_some(())?,
                Segment::Param(n) => params.push((n.clone(), path.get(i)?.clone())),
                Segment::CatchAll(n) => {
                    params.push((n.clone(), path.get(i..).unwrap_or_default().join("/")));
                    return Some(params);
                }
            }
        }
        (path.len() == self.segments.len()).then_some(params)
    }

    /// Builds an encoded path by substituting `params`; a catch-all value may contain `/`.
    pub fn render(&self, params: &Params, trailing: bool) -> String {
        let lookup = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let mut parts: Vec<&str> = Vec::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => parts.push(l),
                Segment::Param(n) => parts.push(lookup(n).unwrap_or_default()),
                Segment::CatchAll(n) => {
                    let rest = lookup(n).unwrap_or_default();
                    parts.extend(rest.split('/').filter(|s| !s.is_empty()));
                }
            }
        }
        encode_segments(parts.into_iter().filter(|s| !s.is_empty()), trailing)
    }
}

fn parse_segment(seg: &str) -> Result<Segment, String> {
    let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        if seg.contains(['{', '}']) {
            return Err(format!(
                "segment {seg:?} mixes literal text and a parameter"
            ));
        }
        return Ok(Segment::Literal(seg.to_owned()));
    };
    let (catch_all, name) = match inner.strip_prefix('*') {
        Some(n) => (true, n),
        None => (false, inner),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "parameter name {name:?} must be letters, digits or `_`"
        ));
    }
    Ok(if catch_all {
        Segment::CatchAll(name.into())
    } else {
        Segment::Param(name.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segs(p: &str) -> Vec<String> {
        NormalPath::parse(p).unwrap().segments
    }

    #[test]
    fn params_and_catch_all_capture() {
        let t = Template::parse("/users/{id}/files/{*rest}").unwrap();
        let p = t.matches(&segs("/users/42/files/a/b.txt")).unwrap();
        assert_eq!(
            p,
            vec![
                ("id".into(), "42".into()),
                ("rest".into(), "a/b.txt".into())
            ]
        );
        assert_eq!(t.matches(&segs("/users/42/files")).unwrap()[1].1, "");
        assert!(t.matches(&segs("/users/42")).is_none());
    }

    #[test]
    fn exact_templates_match_only_themselves() {
        let t = Template::parse("/health").unwrap();
        assert!(t.is_exact());
        assert!(t.matches(&segs("/health")).is_some());
        assert!(t.matches(&segs("/health/x")).is_none());
        assert!(t.matches(&segs("/")).is_none());
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(
            Template::parse("/a/{*rest}/b")
                .unwrap_err()
                .contains("last")
        );
        assert!(
            Template::parse("/a/{id}/{id}")
                .unwrap_err()
                .contains("twice")
        );
        assert!(Template::parse("/a/x{id}").unwrap_err().contains("mixes"));
        assert!(Template::parse("/a/{}").is_err());
        assert!(Template::parse("/a/../b").is_err());
        assert!(Template::parse("users").is_err());
    }

    #[test]
    fn render_substitutes_and_encodes() {
        let t = Template::parse("/v2/{id}/{*rest}").unwrap();
        let p = vec![("id".into(), "a b".into()), ("rest".into(), "x/y".into())];
        assert_eq!(t.render(&p, false), "/v2/a%20b/x/y");
    }

    proptest! {
        #[test]
        fn a_param_template_matches_every_path_of_its_length(
            parts in proptest::collection::vec("[a-z0-9]{1,5}", 1..6)
        ) {
            let tpl: String = parts.iter().enumerate().map(|(i, _)| format!("/{{p{i}}}")).collect();
            let t = Template::parse(&tpl).unwrap();
            let got = t.matches(&parts).unwrap();
            let values: Vec<String> = got.into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(values, parts.clone());
            let mut longer = parts.clone();
            longer.push("x".into());
            prop_assert!(t.matches(&longer).is_none());
        }

        #[test]
        fn a_literal_template_matches_exactly_its_own_path(
            a in proptest::collection::vec("[a-z]{1,4}", 0..5),
            b in proptest::collection::vec("[a-z]{1,4}", 0..5),
        ) {
            let path = |v: &Vec<String>| if v.is_empty() { "/".to_string() } else {
                v.iter().map(|s| format!("/{s}")).collect()
            };
            let t = Template::parse(&path(&a)).unwrap();
            prop_assert_eq!(t.matches(&b).is_some(), a == b);
        }

        #[test]
        fn catch_all_rest_rebuilds_the_suffix(
            prefix in proptest::collection::vec("[a-z]{1,4}", 0..3),
            rest in proptest::collection::vec("[a-z]{1,4}", 0..4),
        ) {
            let tpl: String = prefix.iter().map(|s| format!("/{s}")).collect::<String>() + "/{*rest}";
            let t = Template::parse(&tpl).unwrap();
            let mut path = prefix.clone();
            path.extend(rest.iter().cloned());
            let got = t.matches(&path).unwrap();
            prop_assert_eq!(&got[0].1, &rest.join("/"));
        }
    }
}
