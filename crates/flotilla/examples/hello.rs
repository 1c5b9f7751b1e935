//! A hello-world route served two ways, for the SDK overhead benchmark (bench/sdk/run.sh):
//! `hello sdk ADDR` serves it through a full `Microservice` (request ids, trace context, metrics,
//! access log at `warn` so logging cost is the filter check only, problem+json, limits);
//! `hello bare ADDR` serves the same route with plain axum.

use axum::Router;
use axum::routing::get;
use flotilla::{Microservice, ServiceConfig};

async fn hello() -> &'static str {
    "hello, world"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let addr: std::net::SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()?;
    let routes = Router::new().route("/hello", get(hello));
    match mode.as_str() {
        "sdk" => {
            flotilla::telemetry::init(flotilla::config::LogFormat::Human, "warn");
            let config = ServiceConfig {
                listen: addr,
                ..ServiceConfig::default()
            };
            Microservice::builder("hello")?
                .config(config)
                .routes(routes)
                .build()?
                .run()
                .await?;
        }
        "bare" => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            axum::serve(listener, routes).await?;
        }
        other => return Err(format!("mode must be `sdk` or `bare`, not {other:?}").into()),
    }
    Ok(())
}
