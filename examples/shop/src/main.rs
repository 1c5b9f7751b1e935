//! `shop <users|orders|inventory|payments> [CONFIG.toml]`: runs one service of the example
//! shop against the control plane named by `[platform] url` / `FLOTILLA_PLATFORM__URL`.

use std::path::PathBuf;
use std::process::ExitCode;

use flotilla_shop::Service;

const USAGE: &str = "usage: shop <users|orders|inventory|payments> [CONFIG.toml]
  FLOTILLA_PLATFORM__URL=http://127.0.0.1:4400 shop users";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let service = args.first().and_then(|a| Service::parse(a));
    let (Some(service), true) = (service, args.len() <= 2) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let file = args.get(1).map(PathBuf::from);
    match flotilla_shop::run(service, file.as_deref()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop {}: {e}", service.name());
            ExitCode::FAILURE
        }
    }
}
