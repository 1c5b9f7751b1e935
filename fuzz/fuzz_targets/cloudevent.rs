//! CloudEvents in structured JSON mode, alone and in batches: what the bus API and every
//! backend read from clients and from storage. A parsed event must survive its own encoding.
#![no_main]

use flotilla_core::event::CloudEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = CloudEvent::from_json_slice(data) {
        let again = CloudEvent::from_json_value(event.to_json_value())
            .expect("an event the parser accepted encodes to an event it accepts");
        assert_eq!(event, again);
    }
    if let Ok(serde_json::Value::Array(batch)) = serde_json::from_slice(data) {
        for item in batch {
            let _ = CloudEvent::from_json_value(item);
        }
    }
});
