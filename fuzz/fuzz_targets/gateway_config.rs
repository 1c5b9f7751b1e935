//! Route files: parsed, then compiled into a route table as a reload would. Invalid files
//! are refused with an error, never a panic.
#![no_main]

use flotilla_discovery::StaticDiscovery;
use flotilla_gateway::GatewayOptions;
use flotilla_gateway::metrics::Metrics;
use flotilla_gateway::table::RouteTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(opts) = GatewayOptions::from_toml(text) else {
        return;
    };
    // JWKS sources start a refresh task, as at a reload inside the running gateway.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();
    let _ = RouteTable::build(&opts, &StaticDiscovery::new(), &Metrics::default());
});
