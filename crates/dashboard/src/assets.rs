//! The dashboard's files, embedded at compile time: the binary serves them with no file on
//! disk and no build step (they are hand-written; nothing is generated or minified).

use axum::response::{IntoResponse, Response};
use http::header;

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asset {
    pub(crate) name: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

/// Every file the pages load. A new file must be listed here, or it answers 404.
pub(crate) const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("icon.svg", SVG),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("metrics.js", JS),
    asset!("chart.js", JS),
    asset!("dialogs.js", JS),
    asset!("page-overview.js", JS),
    asset!("page-services.js", JS),
    asset!("page-gateway.js", JS),
    asset!("page-bus.js", JS),
    asset!("page-events.js", JS),
    asset!("page-sagas.js", JS),
];

pub(crate) fn find(name: &str) -> Option<Asset> {
    ASSETS.iter().find(|a| a.name == name).copied()
}

impl IntoResponse for Asset {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_together_stays_far_below_the_two_megabyte_budget() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 200 * 1024, "{total} bytes of assets");
    }

    #[test]
    fn every_module_the_pages_import_is_embedded() {
        for a in ASSETS
            .iter()
            .filter(|a| a.content_type == JS || a.name == "index.html")
        {
            let text = std::str::from_utf8(a.body).expect("assets are UTF-8");
            for imported in text.split("'./").skip(1) {
                let name = imported.split('\'').next().unwrap_or_default();
                assert!(
                    find(name).is_some(),
                    "{} imports {name}, which is not embedded",
                    a.name
                );
            }
        }
    }
}
