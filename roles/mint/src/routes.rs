//! A request path as the router reads it, for the middlewares that decide by route: axum
//! percent-decodes a captured segment (`/v1/mint/%65hash` reaches `/v1/mint/{method}` as
//! `ehash`) and CDK reads a payment method in any case (`EHASH` is `ehash`). Deciding on the
//! raw path would let such spellings past a check; every segment is decoded and lowercased
//! here, so a check sees at least every request the router would route.

use percent_encoding::percent_decode_str;

/// The path's segments, percent-decoded and lowercased, without leading or trailing `/`.
pub fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_the_router_accepts_read_as_the_route() {
        for path in [
            "/v1/mint/ehash",
            "/v1/mint/EHASH",
            "/v1/mint/%65hash",
            "/v1/mint/%45HASH/",
        ] {
            assert_eq!(segments(path), ["v1", "mint", "ehash"], "{path}");
        }
    }
}
