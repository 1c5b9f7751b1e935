//! Reading a response body into memory only up to the size the route may store, so a large
//! response streams on instead of being buffered.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};

use crate::problem::{Body, BoxError};

/// A body read up to a limit.
#[derive(Debug)]
pub(super) enum Collected {
    /// The whole body fit.
    Whole(Bytes),
    /// It did not: what was read, followed by the rest, still streaming.
    TooLarge(Body),
}

/// Reads `body` until it ends or exceeds `limit` bytes. Trailers are dropped (a stored
/// response has none).
pub(super) async fn up_to(mut body: Body, limit: u64) -> Result<Collected, BoxError> {
    let mut read: Vec<Bytes> = Vec::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        total += data.len() as u64;
        read.push(data);
        if total > limit {
            let prefix = futures_util::stream::iter(read.into_iter().map(|b| Ok(Frame::data(b))));
            let rest = prefix.chain(BodyStream::new(body));
            return Ok(Collected::TooLarge(BodyExt::boxed(StreamBody::new(rest))));
        }
    }
    let mut whole = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
    read.iter().for_each(|b| whole.extend_from_slice(b));
    Ok(Collected::Whole(whole.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::full;

    #[tokio::test]
    async fn a_body_within_the_limit_is_collected() {
        let Collected::Whole(b) = up_to(full("hello"), 5).await.unwrap() else {
            panic!("fits")
        };
        assert_eq!(b, "hello");
    }

    #[tokio::test]
    async fn a_larger_body_streams_on_whole() {
        let Collected::TooLarge(rest) = up_to(full("hello world"), 4).await.unwrap() else {
            panic!("too large")
        };
        assert_eq!(rest.collect().await.unwrap().to_bytes(), "hello world");
    }
}
