//! Request paths and route templates: normalisation is idempotent, and a template matches
//! the path it was written from.
#![no_main]

use flotilla_gateway::path::NormalPath;
use flotilla_gateway::template::Template;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = NormalPath::parse(text) {
        let encoded = path.encoded();
        let again = NormalPath::parse(&encoded).expect("a normal path parses");
        assert_eq!(again.encoded(), encoded, "normalisation is idempotent");
    }
    let _ = Template::parse(text);
});
