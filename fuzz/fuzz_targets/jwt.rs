//! Bearer tokens and JWKS documents: any token is refused or accepted without a panic, and a
//! token is never accepted unless signed with the validator's secret (the fuzzer does not
//! have it).
#![no_main]

use std::sync::{Arc, LazyLock};

use flotilla_gateway::auth::Validator;
use flotilla_gateway::fuzzing;
use libfuzzer_sys::fuzz_target;

static VALIDATOR: LazyLock<Arc<Validator>> = LazyLock::new(|| {
    fuzzing::hs256_validator("a secret of 32 bytes or more, which the fuzzer never sees")
});

fuzz_target!(|data: &[u8]| {
    fuzzing::jwks(data);
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let verdict = rt.block_on(VALIDATOR.validate(token));
    assert!(
        verdict.is_err(),
        "a token not signed with the secret was accepted"
    );
});
