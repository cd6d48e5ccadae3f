//! uPlot, the charting library of the pages, served by the binary (build.rs fetches it at a
//! pinned version and checks it): `/assets/uplot.js`, `/assets/uplot.css` and its licence.

use axum::{
    http::header::{CACHE_CONTROL, CONTENT_TYPE},
    response::IntoResponse,
    routing::get,
    Router,
};

pub const UPLOT_JS: &str =
    include_str!(concat!(env!("OUT_DIR"), "/package/dist/uPlot.iife.min.js"));
pub const UPLOT_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/package/dist/uPlot.min.css"));
pub const UPLOT_LICENSE: &str = include_str!(concat!(env!("OUT_DIR"), "/package/LICENSE"));

/// The routes every dashboard serves its pages' library from.
pub fn routes() -> Router {
    let file = |body: &'static str, kind: &'static str| {
        get(move || async move {
            (
                [
                    (CONTENT_TYPE, kind),
                    (CACHE_CONTROL, "public, max-age=86400"),
                ],
                body,
            )
                .into_response()
        })
    };
    Router::new()
        .route(
            "/assets/uplot.js",
            file(UPLOT_JS, "text/javascript; charset=utf-8"),
        )
        .route(
            "/assets/uplot.css",
            file(UPLOT_CSS, "text/css; charset=utf-8"),
        )
        .route(
            "/assets/uplot-LICENSE.txt",
            file(UPLOT_LICENSE, "text/plain; charset=utf-8"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_embedded_whole() {
        // The browser build defines the global `uPlot`; its licence is MIT.
        assert!(UPLOT_JS.contains("uPlot"), "{}", &UPLOT_JS[..80]);
        assert!(UPLOT_JS.len() > 20_000);
        assert!(UPLOT_CSS.contains(".u-legend"));
        assert!(UPLOT_LICENSE.contains("MIT"));
    }
}
