//! The server-sent-events reader: a stream split anywhere reads as the same events.
#![no_main]

use flotilla_core::sse::SseParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let whole = SseParser::default().push(stream);
    let at = usize::from(split).min(stream.len());
    let mut parser = SseParser::default();
    let mut chunked = parser.push(&stream[..at]).expect("under the size limit");
    chunked.extend(parser.push(&stream[at..]).expect("under the size limit"));
    assert_eq!(whole.expect("under the size limit"), chunked);
});
