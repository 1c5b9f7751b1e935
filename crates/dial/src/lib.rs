//! The connector Flotilla's internal HTTP clients (the registry client, the platform backend,
//! the broker's push subscriptions) dial with: TCP through hyper-util's connector (the only way
//! a running service uses), or, with the `dial` feature, any byte stream the caller opens, so
//! the same client code runs over a simulated network in tests. Without the feature this is a
//! thin wrapper around [`HttpConnector`] that changes nothing about how connections are made.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connecting = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

/// A byte stream HTTP/1.1 can run over (what a [`Dialer`] opens).
#[cfg(feature = "dial")]
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

#[cfg(feature = "dial")]
impl<T> Stream for T where T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

/// Opens a stream to a URL's host and port.
#[cfg(feature = "dial")]
pub type Dialer = std::sync::Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = io::Result<Box<dyn Stream>>> + Send>>
        + Send
        + Sync,
>;

/// The connector the pooled HTTP client dials with.
#[derive(Clone)]
pub enum Connector {
    /// Plain TCP.
    Tcp(HttpConnector),
    /// Streams the dialer opens.
    #[cfg(feature = "dial")]
    Dial(Dialer),
}

impl Default for Connector {
    /// What `Client::build_http` uses.
    fn default() -> Self {
        Self::Tcp(HttpConnector::new())
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(_) => f.write_str("Connector::Tcp"),
            #[cfg(feature = "dial")]
            Self::Dial(_) => f.write_str("Connector::Dial"),
        }
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Tcp(tcp) => tcp.poll_ready(cx).map_err(Into::into),
            #[cfg(feature = "dial")]
            Self::Dial(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, uri: http::Uri) -> Connecting {
        match self {
            Self::Tcp(tcp) => {
                let connecting = tcp.call(uri);
                Box::pin(async move { Ok(Conn::Tcp(connecting.await?)) })
            }
            #[cfg(feature = "dial")]
            Self::Dial(dial) => {
                let host = uri.host().unwrap_or_default().to_owned();
                let opening = dial(host, uri.port_u16().unwrap_or(80));
                Box::pin(async move { Ok(Conn::Dialed(TokioIo::new(opening.await?))) })
            }
        }
    }
}

/// One open connection.
pub enum Conn {
    /// A TCP connection.
    Tcp(TokioIo<TcpStream>),
    /// A stream a dialer opened.
    #[cfg(feature = "dial")]
    Dialed(TokioIo<Box<dyn Stream>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(_) => f.write_str("Conn::Tcp"),
            #[cfg(feature = "dial")]
            Self::Dialed(_) => f.write_str("Conn::Dialed"),
        }
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Self::Tcp(tcp) => tcp.connected(),
            #[cfg(feature = "dial")]
            Self::Dialed(_) => Connected::new(),
        }
    }
}

/// Calls `$method` on whichever stream `$self` (a `Pin<&mut Conn>`) holds.
macro_rules! on_stream {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match $self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).$method($($arg),*),
            #[cfg(feature = "dial")]
            Conn::Dialed(s) => Pin::new(s).$method($($arg),*),
        }
    };
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        on_stream!(self, poll_read(cx, buf))
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, poll_shutdown(cx))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "dial")]
            Self::Dialed(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, poll_write_vectored(cx, bufs))
    }
}
