//! The compiled routing table: every route with its matcher, upstream and policies, sorted in
//! precedence order. A table is immutable; a reload builds a new one and swaps it in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_discovery::Discovery;

use crate::Error;
use crate::auth::{ApiKeys, RouteAuth, Validators};
use crate::cache::RouteCache;
use crate::config::{GatewayOptions, RewriteConfig, RouteConfig};
use crate::headers::Edits;
use crate::matcher::{Matcher, PathMatch, RequestView};
use crate::path::{NormalPath, encode_segments};
use crate::ratelimit::RouteLimiter;
use crate::template::{Params, Template};
use crate::transform::Transform;
use crate::upstream::Upstream;

/// How the forwarded path is built.
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Forward the normalised path.
    None,
    /// Remove these leading segments.
    Strip(Vec<String>),
    /// Replace the leading `from` segments with `to`.
    Replace {
        /// Segments removed.
        from: Vec<String>,
        /// Segments put in their place.
        to: Vec<String>,
    },
    /// Render a template from the route's parameters.
    Template(Template),
}

impl Rewrite {
    /// The encoded path to forward.
    pub fn apply(&self, path: &NormalPath, params: &Params) -> String {
        let segs = &path.segments;
        match self {
            Self::None => path.encoded(),
            Self::Strip(p) if segs.starts_with(p) => encode_segments(
                segs[p.len()..].iter().map(String::as_str),
                path.trailing_slash,
            ),
            Self::Replace { from, to } if segs.starts_with(from) => {
                let rest = segs[from.len()..].iter();
                encode_segments(
                    to.iter().chain(rest).map(String::as_str),
                    path.trailing_slash,
                )
            }
            Self::Strip(_) | Self::Replace { .. } => path.encoded(),
            Self::Template(t) => t.render(params, path.trailing_slash),
        }
    }
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// Name used in metrics, logs and the admin API.
    pub name: String,
    /// Match conditions.
    pub matcher: Matcher,
    /// Where requests go.
    pub upstream: Arc<Upstream>,
    /// Path rewriting.
    pub rewrite: Rewrite,
    /// Edits on the forwarded request's headers.
    pub request_headers: Edits,
    /// Edits on the response's headers.
    pub response_headers: Edits,
    /// Time allowed for the upstream's response head.
    pub timeout: Duration,
    /// Extra attempts for idempotent requests that failed to connect.
    pub retries: u32,
    /// Request-body limit (None = unlimited).
    pub max_body: Option<u64>,
    /// Rate limit.
    pub limiter: Option<RouteLimiter>,
    /// Authentication.
    pub auth: Option<RouteAuth>,
    /// Cross-origin resource sharing.
    pub cors: Option<crate::cors::Cors>,
    /// Response caching, when enabled.
    pub cache: Option<Arc<RouteCache>>,
    /// The JSON response transform, if any.
    pub(crate) transform: Option<Transform>,
    /// Metric handles.
    pub metrics: crate::metrics::RouteMetrics,
    /// The config this route was built from, for the admin API.
    pub config: RouteConfig,
    /// Every header any route sets from verified identity; client copies are always removed.
    pub identity_headers: Arc<[http::HeaderName]>,
}

/// Every route in precedence order, plus the upstreams they share.
#[derive(Debug)]
pub struct RouteTable {
    /// Routes, in the order they are tried.
    pub routes: Vec<Route>,
    /// Upstreams by name.
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// The JWKS sources of the table's validators (kept by the next table when unchanged).
    pub(crate) jwks: Vec<Arc<crate::jwks::Jwks>>,
}

impl RouteTable {
    /// Validates and compiles `opts`; the error names the first bad key.
    pub fn build(
        opts: &GatewayOptions,
        discovery: &dyn Discovery,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Self, Error> {
        Self::build_after(opts, discovery, metrics, None)
    }

    /// Like [`build`](Self::build), replacing `previous`: JWKS sources whose settings did not
    /// change are kept, with their keys.
    pub(crate) fn build_after(
        opts: &GatewayOptions,
        discovery: &dyn Discovery,
        metrics: &crate::metrics::Metrics,
        previous: Option<&RouteTable>,
    ) -> Result<Self, Error> {
        let mut upstreams = HashMap::new();
        for (i, u) in opts.upstreams.iter().enumerate() {
            let key = format!("upstreams[{i}]");
            let built = Upstream::build(u, &key, discovery, &opts.server)?;
            if upstreams.insert(u.name.clone(), Arc::new(built)).is_some() {
                return Err(Error::config(
                    format!("{key}.name"),
                    format!("duplicate upstream {:?}", u.name),
                ));
            }
        }
        let reuse = previous.map_or(&[][..], |p| &p.jwks[..]);
        let validators = crate::auth::build_validators(&opts.jwt, reuse)?;
        let jwks = validators
            .values()
            .filter_map(|v| v.jwks().cloned())
            .collect();
        let keys = Arc::new(ApiKeys::build(&opts.api_keys)?);
        reject_duplicate_route_names(opts)?;
        let mut ranked = Vec::with_capacity(opts.routes.len());
        for (i, cfg) in opts.routes.iter().enumerate() {
            let route = build_route(cfg, i, opts, (&upstreams, &validators, &keys), metrics)?;
            ranked.push((route.matcher.rank(i), route));
        }
        ranked.sort_by_key(|(rank, _)| *rank);
        let identity = identity_headers(ranked.iter().map(|(_, r)| r));
        for (_, r) in &mut ranked {
            r.identity_headers = identity.clone();
        }
        Ok(Self {
            routes: ranked.into_iter().map(|(_, r)| r).collect(),
            upstreams,
            jwks,
        })
    }

    /// The first route (in precedence order) matching the request.
    pub fn find(&self, req: &RequestView<'_>) -> Option<(&Route, Params)> {
        self.routes
            .iter()
            .find_map(|r| r.matcher.matches(req).map(|p| (r, p)))
    }
}

/// A route's name: its own, or `route-<index>`.
fn route_name(cfg: &RouteConfig, i: usize) -> String {
    cfg.name.clone().unwrap_or_else(|| format!("route-{i}"))
}

/// Route names key the cache, metrics and the admin API, so two routes may not share one
/// (a generated `route-<index>` included).
fn reject_duplicate_route_names(opts: &GatewayOptions) -> Result<(), Error> {
    let mut seen = std::collections::HashSet::new();
    for (i, cfg) in opts.routes.iter().enumerate() {
        let name = route_name(cfg, i);
        if !seen.insert(name.clone()) {
            return Err(Error::config(
                format!("routes[{i}].name"),
                format!("duplicate route name {name:?}"),
            ));
        }
    }
    Ok(())
}

/// The identity headers of every route, plus `X-Api-Key-Name`, without repeats.
fn identity_headers<'a>(routes: impl Iterator<Item = &'a Route>) -> Arc<[http::HeaderName]> {
    let mut all = vec![crate::auth::API_KEY_NAME];
    for h in routes
        .filter_map(|r| r.auth.as_ref())
        .flat_map(RouteAuth::identity_headers)
    {
        if !all.contains(h) {
            all.push(h.clone());
        }
    }
    all.into()
}

fn build_route(
    cfg: &RouteConfig,
    i: usize,
    opts: &GatewayOptions,
    (upstreams, validators, keys): (&HashMap<String, Arc<Upstream>>, &Validators, &Arc<ApiKeys>),
    metrics: &crate::metrics::Metrics,
) -> Result<Route, Error> {
    let key = format!("routes[{i}]");
    let matcher = Matcher::build(cfg, &key)?;
    let upstream = upstreams.get(&cfg.upstream).cloned().ok_or_else(|| {
        Error::config(
            format!("{key}.upstream"),
            format!("no upstream named {:?}", cfg.upstream),
        )
    })?;
    let rewrite = build_rewrite(&cfg.rewrite, &matcher, &key)?;
    crate::upgrade::check_config(&cfg.upgrade_protocols, &format!("{key}.upgrade_protocols"))?;
    let auth = match &cfg.auth {
        Some(a) => Some(RouteAuth::build(
            a,
            &format!("{key}.auth"),
            validators,
            keys,
        )?),
        None => None,
    };
    let limiter = match &cfg.rate_limit {
        Some(rl) => Some(RouteLimiter::build(
            rl,
            &format!("{key}.rate_limit"),
            auth.as_ref(),
        )?),
        None => None,
    };
    let cors = match &cfg.cors {
        Some(c) => Some(crate::cors::Cors::build(c, &format!("{key}.cors"))?),
        None => None,
    };
    let max_body = cfg.max_body_bytes.unwrap_or(opts.server.max_body_bytes);
    let name = route_name(cfg, i);
    let route_metrics = metrics.route(&name);
    let cache = match &cfg.cache {
        Some(c) => RouteCache::build(c, &format!("{key}.cache"), route_metrics.cache.clone())?,
        None => None,
    };
    let transform = match &cfg.transform {
        Some(t) => Some(Transform::build(t, &format!("{key}.transform"))?),
        None => None,
    };
    Ok(Route {
        cache: cache.map(Arc::new),
        transform,
        metrics: route_metrics,
        name,
        upstream,
        rewrite,
        request_headers: Edits::build(&cfg.request_headers, &format!("{key}.request_headers"))?,
        response_headers: Edits::build(&cfg.response_headers, &format!("{key}.response_headers"))?,
        timeout: cfg.timeout.unwrap_or(Duration::from_secs(30)),
        retries: cfg.retries,
        max_body: (max_body > 0).then_some(max_body),
        limiter,
        auth,
        cors,
        matcher,
        config: cfg.clone(),
        identity_headers: Arc::from([]),
    })
}

fn build_rewrite(cfg: &RewriteConfig, matcher: &Matcher, key: &str) -> Result<Rewrite, Error> {
    let segs = |p: &str, k: &str| {
        NormalPath::parse(p)
            .map(|n| n.segments)
            .map_err(|e| Error::config(format!("{key}.rewrite.{k}"), e.to_string()))
    };
    match (&cfg.strip_prefix, &cfg.replace_prefix, &cfg.template) {
        (None, None, None) => Ok(Rewrite::None),
        (Some(p), None, None) => Ok(Rewrite::Strip(segs(p, "strip_prefix")?)),
        (None, Some(p), None) => match &matcher.path {
            PathMatch::Prefix(from) => Ok(Rewrite::Replace {
                from: from.clone(),
                to: segs(p, "replace_prefix")?,
            }),
            PathMatch::Template(_) => Err(Error::config(
                format!("{key}.rewrite.replace_prefix"),
                "needs a route matched by `prefix`",
            )),
        },
        (None, None, Some(t)) => template_rewrite(t, matcher, key),
        _ => Err(Error::config(
            format!("{key}.rewrite"),
            "set at most one rewrite",
        )),
    }
}

fn template_rewrite(text: &str, matcher: &Matcher, key: &str) -> Result<Rewrite, Error> {
    let k = format!("{key}.rewrite.template");
    let t = Template::parse(text).map_err(|r| Error::config(&k, r))?;
    let PathMatch::Template(route_t) = &matcher.path else {
        return Err(Error::config(
            &k,
            "needs a route matched by a `path` template",
        ));
    };
    let known: Vec<&str> = route_t.param_names().collect();
    if let Some(missing) = t.param_names().find(|n| !known.contains(n)) {
        return Err(Error::config(
            &k,
            format!("parameter {{{missing}}} is not captured by the route's path"),
        ));
    }
    Ok(Rewrite::Template(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_discovery::StaticDiscovery;

    fn build(routes: &str) -> Result<RouteTable, Error> {
        let text =
            format!("[[upstreams]]\nname = \"u\"\nurls = [\"http://127.0.0.1:1\"]\n{routes}");
        let opts = GatewayOptions::from_toml(&text)?;
        RouteTable::build(
            &opts,
            &StaticDiscovery::new(),
            &crate::metrics::Metrics::default(),
        )
    }

    fn err_key(routes: &str) -> String {
        match build(routes).unwrap_err() {
            Error::Config { key, .. } => key,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn duplicate_route_names_are_refused_naming_the_second() {
        let twice = "[[routes]]\nname = \"api\"\nprefix = \"/a\"\nupstream = \"u\"\n\
                     [[routes]]\nname = \"api\"\nprefix = \"/b\"\nupstream = \"u\"\n";
        match build(twice).unwrap_err() {
            Error::Config { key, reason } => {
                assert_eq!(key, "routes[1].name");
                assert!(reason.contains("\"api\""), "{reason}");
            }
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn invalid_routes_name_the_offending_key() {
        let ok = "[[routes]]\nprefix = \"/\"\nupstream = \"u\"\n";
        let cases = [
            (
                "[[routes]]\npath = \"/a\"\nprefix = \"/a\"\nupstream = \"u\"",
                "routes[1]",
            ),
            (
                "[[routes]]\npath = \"/a/{*x}/b\"\nupstream = \"u\"",
                "routes[1].path",
            ),
            (
                "[[routes]]\npath = \"/a/{id}\"\nupstream = \"u\"\nrewrite = { template = \"/b/{name}\" }",
                "routes[1].rewrite.template",
            ),
            (
                "[[routes]]\npath = \"/a\"\nupstream = \"u\"\nrewrite = { replace_prefix = \"/b\" }",
                "routes[1].rewrite.replace_prefix",
            ),
            (
                "[[routes]]\nprefix = \"/a\"\nupstream = \"u\"\nrewrite = { strip_prefix = \"/a\", replace_prefix = \"/b\" }",
                "routes[1].rewrite",
            ),
            (
                "[[routes]]\nprefix = \"/a\"\nupstream = \"u\"\nmethods = [\"GE T\"]",
                "routes[1].methods[0]",
            ),
            (
                "[[routes]]\nprefix = \"/a\"\nupstream = \"u\"\nauth = { jwt = \"nope\" }",
                "routes[1].auth.jwt",
            ),
            (
                "[[routes]]\nprefix = \"/a\"\nupstream = \"u\"\nrate_limit = { requests = 0, per = \"second\" }",
                "routes[1].rate_limit.requests",
            ),
            (
                "[[routes]]\nprefix = \"/a\"\nupstream = \"u\"\ncache = { enabled = true, max_entry_bytes = 0 }",
                "routes[1].cache.max_entry_bytes",
            ),
            (
                "[[routes]]\nname = \"route-0\"\nprefix = \"/a\"\nupstream = \"u\"",
                "routes[1].name",
            ),
        ];
        for (route, key) in cases {
            assert_eq!(err_key(&format!("{ok}{route}")), key, "{route}");
        }
    }

    #[test]
    fn routes_are_ordered_by_the_documented_precedence() {
        let t = build(
            "[[routes]]\nname = \"prefix\"\nprefix = \"/a\"\nupstream = \"u\"\n\
             [[routes]]\nname = \"catch\"\npath = \"/a/{*r}\"\nupstream = \"u\"\n\
             [[routes]]\nname = \"param\"\npath = \"/a/{x}\"\nupstream = \"u\"\n\
             [[routes]]\nname = \"exact\"\npath = \"/a/b\"\nupstream = \"u\"\n\
             [[routes]]\nname = \"method\"\nprefix = \"/a\"\nmethods = [\"GET\"]\nupstream = \"u\"\n\
             [[routes]]\nname = \"urgent\"\nprefix = \"/\"\npriority = 1\nupstream = \"u\"",
        )
        .unwrap();
        let names: Vec<&str> = t.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["urgent", "exact", "param", "catch", "method", "prefix"]
        );
    }
}
