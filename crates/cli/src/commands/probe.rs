//! `flotilla probe URL`: one GET, exit 0 on a 2xx answer within the timeout and 1 otherwise.
//! Container images run it as their health check, so they need no curl or shell.

use std::time::Duration;

use crate::Failure;
use crate::admin::Api;

pub(crate) fn run(url: &str, timeout: Duration) -> Result<(), Failure> {
    let (base, path) = split(url).map_err(Failure::Usage)?;
    super::runtime()?.block_on(async move {
        let api = Api::at("the probed service", base, None);
        match tokio::time::timeout(timeout, api.get_text(&path)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Failure::Runtime(e)),
            Err(_) => Err(Failure::Runtime(anyhow::anyhow!(
                "no answer from {url} within {}",
                humantime::format_duration(timeout)
            ))),
        }
    })
}

/// `http://host:port/path?query` as the base (`http://host:port`) and the rest (`/` at least).
fn split(url: &str) -> Result<(String, String), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("probe URL {url:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            Ok((format!("http://{authority}"), path.to_owned()))
        }
        _ => Err(format!("probe URL {url:?} must be http://host:port/path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_url_splits_into_base_and_path() {
        assert_eq!(
            split("http://127.0.0.1:4400/ready").unwrap(),
            ("http://127.0.0.1:4400".to_owned(), "/ready".to_owned())
        );
        assert_eq!(split("http://h:1").unwrap().1, "/");
        for bad in ["https://h:1/health", "127.0.0.1:4400/health", "not a url"] {
            assert!(split(bad).unwrap_err().contains(bad), "{bad}");
        }
    }
}
