//! The response cache's reading of untrusted headers: `Cache-Control`, `Vary`, `Age`,
//! `ETag`, `Last-Modified` and the client's conditional headers, from request and response.
#![no_main]

use flotilla_gateway::cache::conditional::{self, ClientConditions};
use flotilla_gateway::cache::key::{vary_matches, vary_names, vary_values};
use flotilla_gateway::cache::policy::Directives;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// `name: value` lines; the request's and the response's heads are split by an empty line.
fn heads(data: &[u8]) -> (HeaderMap, HeaderMap) {
    let mut maps = (HeaderMap::new(), HeaderMap::new());
    let mut response = false;
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            response = true;
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        let map = if response { &mut maps.1 } else { &mut maps.0 };
        map.append(name, value);
    }
    maps
}

fuzz_target!(|data: &[u8]| {
    let (mut request, stored) = heads(data);
    let _ = Directives::parse(&request).forbids_stale();
    let _ = Directives::parse(&stored).forbids_stale();
    if let Some(names) = vary_names(&stored) {
        let values = vary_values(&names, &request);
        assert!(
            vary_matches(&values, &request),
            "a request matches its own key"
        );
    }
    let mut revalidation = request.clone();
    conditional::add_validators(&mut revalidation, &stored);
    let _ = conditional::has_validator(&stored);
    let _ = conditional::not_modified_headers(&stored);
    let _ = conditional::refresh_headers(&stored, &request);
    let conditions = ClientConditions::take(&mut request);
    let _ = conditions.not_modified(&stored);
});
