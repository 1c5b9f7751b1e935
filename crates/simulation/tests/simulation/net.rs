//! The real HTTP servers and clients over turmoil's simulated TCP: an axum listener for the
//! servers' routers, and dialers for the registry client and the platform backend.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// The port every simulated server listens on.
pub(crate) const PORT: u16 = 4400;

/// `http://{host}:4400`, the URL a client of `host` is given.
pub(crate) fn url(host: &str) -> String {
    format!("http://{host}:{PORT}")
}

/// turmoil's listener, as axum serves from it.
struct Listener(turmoil::net::TcpListener);

impl axum::serve::Listener for Listener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                // As axum does for a real listener: a failed accept is not the end of serving.
                Err(_) => tokio::task::yield_now().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Serves `router` on this host's port until the host stops.
pub(crate) async fn serve(router: axum::Router) -> std::io::Result<()> {
    let bound =
        turmoil::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT))
            .await?;
    axum::serve(Listener(bound), router).await
}

/// Dials a simulated host by name: what the registry client uses instead of TCP.
pub(crate) fn registry_dialer() -> flotilla_registry_client::Dialer {
    Arc::new(|host, port| {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as Box<dyn flotilla_registry_client::Stream>)
        })
    })
}

/// Dials a simulated host by name: what the platform backend uses instead of TCP.
pub(crate) fn platform_dialer() -> flotilla_platform::Dialer {
    Arc::new(|host, port| {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as Box<dyn flotilla_platform::Stream>)
        })
    })
}

/// Dials a simulated host by name: what the broker's push subscriptions use instead of TCP.
pub(crate) fn broker_dialer() -> flotilla_broker::Dialer {
    Arc::new(|host, port| {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as Box<dyn flotilla_broker::Stream>)
        })
    })
}
