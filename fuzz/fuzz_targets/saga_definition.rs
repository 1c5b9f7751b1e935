//! Saga definitions in TOML and JSON, as `flotilla up` loads them from operators' files.
#![no_main]

use flotilla_saga::SagaDefinition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = SagaDefinition::from_toml(text);
    let _ = SagaDefinition::from_json(text);
});
