//! Reading server-sent events (the `text/event-stream` format): the control plane's live
//! streams (bus deliveries, event-store positions, registry watches), read by the CLI and the
//! platform backend alike. Pure bytes in, events out: no I/O here.

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when absent.
    pub name: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// The server's own failure report: an `error` event without an id (events the servers
    /// relay always carry one, so an event store type named `error` is not mistaken for it).
    pub fn is_server_error(&self) -> bool {
        self.name == "error" && self.id.is_none()
    }
}

/// Largest event accepted; a stream that sends more without an event boundary is refused
/// rather than buffered without end.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// A stream sent more than [`MAX_EVENT_BYTES`] without an event boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server sent an event larger than {MAX_EVENT_BYTES} bytes")]
pub struct SseTooLarge;

/// Splits a byte stream into events. Bytes are buffered until a whole event has arrived, so a
/// character split across network chunks is decoded whole.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

impl SseParser {
    /// Adds `chunk`; answers the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseTooLarge> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, consumed)) = next_boundary(&self.pending) {
            let block = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            self.pending.drain(..consumed);
            out.extend(parse_block(&block));
        }
        if self.pending.len() > MAX_EVENT_BYTES {
            return Err(SseTooLarge);
        }
        Ok(out)
    }
}

/// Where the first event ends (before its blank line) and how many bytes it used, if a blank
/// line (`\n\n` or `\r\n\r\n`) has arrived.
fn next_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
                return Some((line_start, i + 1));
            }
            line_start = i + 1;
        }
    }
    None
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let (mut name, mut id, mut data) = ("message".to_owned(), None, Vec::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_owned(),
            "id" => id = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {} // comments (`: keep-alive`) and unknown fields
        }
    }
    (!data.is_empty()).then(|| SseEvent {
        name,
        id,
        data: data.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, id: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            name: name.into(),
            id: id.map(Into::into),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_across_chunks_are_joined_and_comments_skipped() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nevent: deliv").unwrap().is_empty());
        let got = p
            .push(b"ery\nid: r1\ndata: {\"a\":\ndata: 1}\n\nevent: error\ndata: x\n\n")
            .unwrap();
        assert_eq!(
            got,
            [
                ev("delivery", Some("r1"), "{\"a\":\n1}"),
                ev("error", None, "x")
            ]
        );
        assert!(got[1].is_server_error() && !got[0].is_server_error());
    }

    #[test]
    fn a_character_split_between_chunks_is_decoded_whole() {
        let text = "data: {\"name\":\"Zoë\"}\r\n\r\n".as_bytes();
        let cut = text.iter().position(|&b| b >= 0x80).unwrap() + 1; // inside the 'ë'
        let mut p = SseParser::default();
        assert!(p.push(&text[..cut]).unwrap().is_empty());
        assert_eq!(
            p.push(&text[cut..]).unwrap(),
            [ev("message", None, "{\"name\":\"Zoë\"}")]
        );
    }

    #[test]
    fn an_event_type_named_error_with_an_id_is_not_a_server_error() {
        let mut p = SseParser::default();
        let got = p.push(b"id: 7\nevent: error\ndata: {}\n\n").unwrap();
        assert!(!got[0].is_server_error());
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut p = SseParser::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(p.push(&big).is_err());
    }
}
