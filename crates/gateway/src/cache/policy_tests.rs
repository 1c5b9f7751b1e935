use super::*;
use http::HeaderValue;

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(at(secs))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn cc(v: &str) -> Directives {
    Directives::parse(&headers(&[("cache-control", v)]))
}

#[test]
fn directives_parse_case_insensitively_with_quoted_and_bad_values() {
    let d = cc("Public, MAX-AGE=\"60\", s-maxage=abc, no-cache=\"set-cookie\"");
    assert!(d.public && d.no_cache);
    assert_eq!(d.max_age, Some(60));
    assert_eq!(d.s_maxage, Some(0), "an invalid delta counts as stale");
    let first = cc("max-age=10, max-age=99");
    assert_eq!(first.max_age, Some(10), "the first occurrence wins");
    let req = cc("max-stale, min-fresh=5, only-if-cached");
    assert_eq!(req.max_stale, Some(None));
    assert_eq!(req.min_fresh, Some(5));
    assert!(req.only_if_cached);
    assert_eq!(cc("max-stale=7").max_stale, Some(Some(7)));
    let two_lines = headers(&[("cache-control", "private"), ("cache-control", "no-store")]);
    let d = Directives::parse(&two_lines);
    assert!(d.private && d.no_store);
}

fn exchange<'a>(
    method: &'a Method,
    req: &'a Directives,
    status: u16,
    resp_headers: &'a HeaderMap,
    resp: &'a Directives,
) -> Exchange<'a> {
    Exchange {
        method,
        request: req,
        authenticated: false,
        status: StatusCode::from_u16(status).unwrap(),
        headers: resp_headers,
        response: resp,
    }
}

#[test]
fn storability_follows_section_3() {
    let none = Directives::default();
    let empty = HeaderMap::new();
    let get = Method::GET;
    let max_age = cc("max-age=60");
    let ok = |m: &Method, req: &Directives, status, h: &HeaderMap, r: &Directives| {
        storable(&exchange(m, req, status, h, r))
    };
    assert_eq!(ok(&get, &none, 200, &empty, &none), Ok(()));
    assert_eq!(ok(&Method::HEAD, &none, 200, &empty, &none), Ok(()));
    assert_eq!(
        ok(&Method::POST, &none, 200, &empty, &max_age),
        Err(NotStored::Method)
    );
    for status in [206, 304, 101] {
        assert_eq!(
            ok(&get, &none, status, &empty, &max_age),
            Err(NotStored::Status)
        );
    }
    assert_eq!(ok(&get, &none, 302, &empty, &none), Err(NotStored::Status));
    assert_eq!(ok(&get, &none, 500, &empty, &none), Err(NotStored::Status));
    assert_eq!(
        ok(&get, &none, 302, &empty, &max_age),
        Ok(()),
        "explicit freshness"
    );
    let expires = headers(&[("expires", &date(T0))]);
    assert_eq!(ok(&get, &none, 503, &expires, &none), Ok(()));
    assert_eq!(
        ok(&get, &none, 404, &empty, &none),
        Ok(()),
        "heuristically cacheable"
    );
    assert_eq!(
        ok(&get, &cc("no-store"), 200, &empty, &max_age),
        Err(NotStored::NoStore)
    );
    assert_eq!(
        ok(&get, &none, 200, &empty, &cc("no-store, max-age=9")),
        Err(NotStored::NoStore)
    );
    assert_eq!(
        ok(&get, &none, 200, &empty, &cc("private, max-age=9")),
        Err(NotStored::Private)
    );
    let star = headers(&[("vary", "accept, *")]);
    assert_eq!(
        ok(&get, &none, 200, &star, &max_age),
        Err(NotStored::VaryStar)
    );
    let cookie = headers(&[("set-cookie", "s=1")]);
    assert_eq!(
        ok(&get, &none, 200, &cookie, &max_age),
        Err(NotStored::SetCookie)
    );
}

#[test]
fn must_understand_stores_only_understood_statuses_and_then_overrides_no_store() {
    let (none, empty, get) = (Directives::default(), HeaderMap::new(), Method::GET);
    let mu = cc("must-understand, no-store, max-age=60");
    let ok = |status| storable(&exchange(&get, &none, status, &empty, &mu));
    for status in [200, 301, 404, 410] {
        assert_eq!(
            ok(status),
            Ok(()),
            "{status}: understood, so no-store yields"
        );
    }
    for status in [299, 555, 418] {
        assert_eq!(ok(status), Err(NotStored::MustUnderstand), "{status}");
    }
    let asked = storable(&exchange(&get, &cc("no-store"), 200, &empty, &mu));
    assert_eq!(
        asked,
        Err(NotStored::NoStore),
        "the request's no-store still holds"
    );
}

#[test]
fn authenticated_requests_are_stored_only_when_the_response_allows_sharing() {
    let none = Directives::default();
    let empty = HeaderMap::new();
    let get = Method::GET;
    let check = |r: &Directives| {
        let mut x = exchange(&get, &none, 200, &empty, r);
        x.authenticated = true;
        storable(&x)
    };
    assert_eq!(check(&cc("max-age=60")), Err(NotStored::Authorization));
    assert_eq!(check(&none), Err(NotStored::Authorization));
    assert_eq!(check(&cc("public")), Ok(()));
    assert_eq!(check(&cc("s-maxage=5")), Ok(()));
    assert_eq!(check(&cc("must-revalidate, max-age=5")), Ok(()));
}

fn lifetime(status: u16, h: &HeaderMap, h11: &Heuristics) -> Duration {
    let d = Directives::parse(h);
    freshness_lifetime(StatusCode::from_u16(status).unwrap(), h, &d, at(T0), h11)
}

#[test]
fn freshness_prefers_s_maxage_then_max_age_then_expires() {
    let h = Heuristics::default();
    let all = headers(&[
        ("cache-control", "max-age=60, s-maxage=30"),
        ("date", &date(T0)),
        ("expires", &date(T0 + 600)),
    ]);
    assert_eq!(lifetime(200, &all, &h), Duration::from_secs(30));
    let no_s = headers(&[
        ("cache-control", "max-age=60"),
        ("date", &date(T0)),
        ("expires", &date(T0 + 600)),
    ]);
    assert_eq!(lifetime(200, &no_s, &h), Duration::from_secs(60));
    let expires = headers(&[("date", &date(T0 - 100)), ("expires", &date(T0 + 500))]);
    assert_eq!(
        lifetime(200, &expires, &h),
        Duration::from_secs(600),
        "Expires minus Date"
    );
    let bad = headers(&[("date", &date(T0)), ("expires", "0")]);
    assert_eq!(
        lifetime(200, &bad, &h),
        Duration::ZERO,
        "malformed Expires is expired"
    );
    let past = headers(&[("date", &date(T0)), ("expires", &date(T0 - 5))]);
    assert_eq!(lifetime(200, &past, &h), Duration::ZERO);
}

#[test]
fn heuristic_freshness_only_where_allowed_and_capped() {
    let h = Heuristics {
        default_ttl: None,
        max_heuristic: Duration::from_secs(3600),
    };
    let lm = |age: u64| headers(&[("date", &date(T0)), ("last-modified", &date(T0 - age))]);
    assert_eq!(
        lifetime(200, &lm(1000), &h),
        Duration::from_secs(100),
        "10%"
    );
    assert_eq!(
        lifetime(200, &lm(1_000_000), &h),
        Duration::from_secs(3600),
        "capped"
    );
    assert_eq!(
        lifetime(302, &lm(1000), &h),
        Duration::ZERO,
        "302 is not heuristic"
    );
    assert_eq!(
        lifetime(200, &HeaderMap::new(), &h),
        Duration::ZERO,
        "no Last-Modified"
    );
    let off = Heuristics::default();
    assert_eq!(lifetime(200, &lm(1000), &off), Duration::ZERO, "disabled");
    let ttl = Heuristics {
        default_ttl: Some(Duration::from_secs(42)),
        max_heuristic: Duration::ZERO,
    };
    assert_eq!(
        lifetime(200, &HeaderMap::new(), &ttl),
        Duration::from_secs(42)
    );
    assert_eq!(lifetime(500, &HeaderMap::new(), &ttl), Duration::ZERO);
    let explicit = headers(&[("cache-control", "max-age=7")]);
    assert_eq!(lifetime(200, &explicit, &ttl), Duration::from_secs(7));
}

#[test]
fn initial_age_takes_the_larger_of_apparent_and_corrected_age() {
    let apparent = headers(&[("date", &date(T0 - 10))]);
    assert_eq!(
        initial_age(&apparent, at(T0 - 1), at(T0)),
        Duration::from_secs(10)
    );
    let aged = headers(&[("date", &date(T0)), ("age", "30")]);
    assert_eq!(
        initial_age(&aged, at(T0 - 2), at(T0)),
        Duration::from_secs(32),
        "age + delay"
    );
    let future = headers(&[("date", &date(T0 + 50))]);
    assert_eq!(
        initial_age(&future, at(T0), at(T0)),
        Duration::ZERO,
        "clock skew clamps"
    );
    let stored = Freshness {
        response_time: at(T0),
        initial_age: Duration::from_secs(5),
        lifetime: Duration::from_secs(60),
        directives: Directives::default(),
    };
    assert_eq!(stored.age(at(T0 + 10)), Duration::from_secs(15));
    assert_eq!(ttl_secs(&stored, at(T0 + 10)), 45);
    assert_eq!(ttl_secs(&stored, at(T0 + 100)), -45);
}

#[test]
fn an_age_that_is_not_one_delta_seconds_counts_as_the_oldest() {
    let invalid: &[&[&str]] = &[
        &["7200,0"],
        &["0, 7200"],
        &["0, 0"],
        &["0", "0"],
        &["0", "7200"],
        &["abc"],
        &["-7200"],
        &["7200.0"],
        &["7200;foo=111"],
        &[""],
    ];
    for lines in invalid {
        let mut h = headers(&[("date", &date(T0))]);
        for line in *lines {
            h.append(header::AGE, HeaderValue::from_str(line).unwrap());
        }
        assert_eq!(
            initial_age(&h, at(T0), at(T0)),
            MAX_AGE_VALUE,
            "Age: {lines:?}"
        );
    }
    let fresh_for_an_hour = Freshness {
        response_time: at(T0),
        initial_age: MAX_AGE_VALUE,
        lifetime: Duration::from_secs(3600),
        directives: Directives::default(),
    };
    assert_eq!(
        usable(&fresh_for_an_hour, &Directives::default(), at(T0)),
        Usable::Revalidate
    );
    let valid = headers(&[("date", &date(T0)), ("age", " 30 ")]);
    assert_eq!(initial_age(&valid, at(T0), at(T0)), Duration::from_secs(30));
    let absent = headers(&[("date", &date(T0))]);
    assert_eq!(initial_age(&absent, at(T0), at(T0)), Duration::ZERO);
}

#[test]
fn a_huge_age_is_capped_at_two_to_the_31_seconds_without_overflow() {
    for huge in [
        "18446744073709551615",
        "99999999999999999999999",
        "4294967296",
    ] {
        let h = headers(&[("date", &date(T0)), ("age", huge)]);
        assert_eq!(
            initial_age(&h, at(T0 - 2), at(T0)),
            MAX_AGE_VALUE + Duration::from_secs(2),
            "Age: {huge}"
        );
    }
    let oldest = Freshness {
        response_time: at(0),
        initial_age: Duration::MAX,
        lifetime: Duration::from_secs(60),
        directives: Directives::default(),
    };
    assert_eq!(oldest.age(at(T0)), Duration::MAX, "saturates");
    assert_eq!(
        usable(&oldest, &Directives::default(), at(T0)),
        Usable::Revalidate
    );
}

#[test]
fn request_max_stale_is_capped_by_the_route() {
    let none = Duration::ZERO;
    let minute = Duration::from_secs(60);
    assert_eq!(cap_max_stale(Some(None), none), None, "off by default");
    assert_eq!(cap_max_stale(Some(Some(5)), none), None);
    assert_eq!(cap_max_stale(Some(None), minute), Some(Some(60)));
    assert_eq!(cap_max_stale(Some(Some(5)), minute), Some(Some(5)));
    assert_eq!(cap_max_stale(Some(Some(600)), minute), Some(Some(60)));
    assert_eq!(cap_max_stale(None, minute), None);
    let s = stored(10, "max-age=10");
    let capped = Directives {
        max_stale: cap_max_stale(Some(None), minute),
        ..Directives::default()
    };
    assert_eq!(usable(&s, &capped, at(T0 + 70)), Usable::StaleAccepted);
    assert_eq!(usable(&s, &capped, at(T0 + 71)), Usable::Revalidate);
}

#[test]
fn never_fresh_responses_are_worth_storing_only_with_a_validator() {
    assert!(!worth_storing(Duration::ZERO, &headers(&[])));
    assert!(worth_storing(
        Duration::ZERO,
        &headers(&[("etag", "\"a\"")])
    ));
    assert!(worth_storing(
        Duration::ZERO,
        &headers(&[("last-modified", &date(T0))])
    ));
    assert!(worth_storing(Duration::from_secs(1), &headers(&[])));
}

fn stored(lifetime: u64, resp: &str) -> Freshness {
    Freshness {
        response_time: at(T0),
        initial_age: Duration::ZERO,
        lifetime: Duration::from_secs(lifetime),
        directives: cc(resp),
    }
}

#[test]
fn usability_follows_freshness_and_request_directives() {
    let none = Directives::default();
    let s = stored(60, "max-age=60");
    assert_eq!(usable(&s, &none, at(T0 + 59)), Usable::Fresh);
    assert_eq!(usable(&s, &none, at(T0 + 60)), Usable::Revalidate);
    assert_eq!(usable(&s, &cc("no-cache"), at(T0)), Usable::Revalidate);
    assert_eq!(usable(&s, &cc("max-age=0"), at(T0)), Usable::Revalidate);
    assert_eq!(
        usable(&s, &cc("max-age=10"), at(T0 + 11)),
        Usable::Revalidate
    );
    assert_eq!(usable(&s, &cc("max-age=10"), at(T0 + 10)), Usable::Fresh);
    assert_eq!(
        usable(&s, &cc("min-fresh=30"), at(T0 + 31)),
        Usable::Revalidate
    );
    assert_eq!(usable(&s, &cc("min-fresh=30"), at(T0 + 30)), Usable::Fresh);
    let no_cache = stored(60, "no-cache, max-age=60");
    assert_eq!(usable(&no_cache, &none, at(T0)), Usable::Revalidate);
}

#[test]
fn stale_responses_are_served_only_where_allowed() {
    let none = Directives::default();
    let swr = stored(10, "max-age=10, stale-while-revalidate=30");
    assert_eq!(
        usable(&swr, &none, at(T0 + 20)),
        Usable::StaleWhileRevalidate
    );
    assert_eq!(
        usable(&swr, &none, at(T0 + 40)),
        Usable::Revalidate,
        "past the window"
    );
    let strict = stored(10, "max-age=10, stale-while-revalidate=30, must-revalidate");
    assert_eq!(usable(&strict, &none, at(T0 + 20)), Usable::Revalidate);
    let proxy = stored(
        10,
        "max-age=10, stale-while-revalidate=30, proxy-revalidate",
    );
    assert_eq!(usable(&proxy, &none, at(T0 + 20)), Usable::Revalidate);
    let shared = stored(10, "s-maxage=10, stale-while-revalidate=30");
    assert_eq!(usable(&shared, &none, at(T0 + 20)), Usable::Revalidate);
    let plain = stored(10, "max-age=10");
    assert_eq!(
        usable(&plain, &cc("max-stale"), at(T0 + 999)),
        Usable::StaleAccepted
    );
    assert_eq!(
        usable(&plain, &cc("max-stale=5"), at(T0 + 15)),
        Usable::StaleAccepted
    );
    assert_eq!(
        usable(&plain, &cc("max-stale=5"), at(T0 + 16)),
        Usable::Revalidate
    );
    let must = stored(10, "max-age=10, must-revalidate");
    assert_eq!(
        usable(&must, &cc("max-stale"), at(T0 + 11)),
        Usable::Revalidate
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn directive() -> impl Strategy<Value = String> {
        let names = prop::sample::select(vec![
            "max-age",
            "s-maxage",
            "no-cache",
            "no-store",
            "private",
            "public",
            "must-revalidate",
            "stale-while-revalidate",
            "max-stale",
            "min-fresh",
            "x-unknown",
        ]);
        (names, prop::option::of("[0-9a-z\"]{0,6}")).prop_map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n.to_owned(),
        })
    }

    fn cache_control() -> impl Strategy<Value = String> {
        prop::collection::vec(directive(), 0..6).prop_map(|d| d.join(", "))
    }

    proptest! {
        #[test]
        fn parsing_never_panics_on_printable_text(text in "[ -~]{0,64}") {
            if let Ok(v) = HeaderValue::from_str(&text) {
                let mut h = HeaderMap::new();
                h.insert(header::CACHE_CONTROL, v);
                let _ = Directives::parse(&h);
            }
        }

        #[test]
        fn a_response_usable_fresh_later_was_usable_fresh_earlier(
            resp in cache_control(),
            req in cache_control(),
            lifetime in 0u64..1000,
            initial in 0u64..100,
            t1 in 0u64..2000,
            dt in 0u64..2000,
        ) {
            let stored = Freshness {
                response_time: at(T0),
                initial_age: Duration::from_secs(initial),
                lifetime: Duration::from_secs(lifetime),
                directives: cc(&resp),
            };
            let req = cc(&req);
            if usable(&stored, &req, at(T0 + t1 + dt)) == Usable::Fresh {
                prop_assert_eq!(usable(&stored, &req, at(T0 + t1)), Usable::Fresh);
            }
            let ttl = ttl_secs(&stored, at(T0 + t1));
            prop_assert_eq!(ttl, lifetime as i64 - (initial + t1) as i64);
        }

        #[test]
        fn private_and_no_store_responses_are_never_storable(
            resp in cache_control(),
            status in 200u16..600,
            authenticated in any::<bool>(),
        ) {
            let d = cc(&resp);
            let h = HeaderMap::new();
            let x = Exchange {
                method: &Method::GET,
                request: &Directives::default(),
                authenticated,
                status: StatusCode::from_u16(status).unwrap(),
                headers: &h,
                response: &d,
            };
            if d.private || d.no_store {
                prop_assert!(storable(&x).is_err());
            }
            if authenticated && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
                prop_assert!(storable(&x).is_err());
            }
        }
    }
}
