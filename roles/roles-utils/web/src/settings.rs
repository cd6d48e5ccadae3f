//! The dashboards' own config file (`config/web-pool.config.toml`, `config/web-proxy.config.toml`);
//! the addresses they read from come from the shared topology, unless the file's `[upstreams]`
//! names a URL (a dashboard on another host reaches a role by name: [`upstream_url`]).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct WebFile {
    pub web: WebSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebSettings {
    /// The page reloads its data this often.
    pub refresh_secs: u64,
    /// Other names the page may be reached by (`host:port`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl WebFile {
    /// Checks the values; the error names the key.
    pub fn checked(self) -> Result<WebSettings, String> {
        if self.web.refresh_secs == 0 {
            return Err("`web.refresh_secs` must be at least 1".into());
        }
        Ok(self.web)
    }
}

/// An `[upstreams]` URL as the file gives it (`http://stats.internal:8091`), checked: `http` or
/// `https`, a host, nothing after the path's root (the dashboards add the routes). The host is
/// resolved whenever a connection to it is made, so a role that moves is followed. `key` names
/// the entry in errors.
pub fn upstream_url(key: &str, text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| format!("`upstreams.{key}` = `{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`upstreams.{key}` = `{text}`: use http:// or https://"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`upstreams.{key}` = `{text}` has no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`upstreams.{key}` = `{text}`: give the scheme, host and port only (the routes are added)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`upstreams.{key}` = `{text}`: no credentials in the URL"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// An optional `[upstreams]` entry, checked by [`upstream_url`] when given.
pub fn optional_upstream(key: &str, url: Option<String>) -> Result<Option<String>, String> {
    url.map(|url| upstream_url(key, &url)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_take_names_and_refuse_what_cannot_be_one() {
        assert_eq!(
            upstream_url("stats_url", "http://Stats.Internal:8091/"),
            Ok("http://stats.internal:8091".into())
        );
        assert_eq!(
            upstream_url("mint_url", "https://mint.example.org"),
            Ok("https://mint.example.org".into())
        );
        for (bad, why) in [
            ("stats.internal:8091", "use http"),
            ("ftp://stats.internal", "use http"),
            ("http://", "not a URL"),
            (
                "http://stats.internal:8091/api/v1",
                "scheme, host and port only",
            ),
            (
                "http://stats.internal:8091/?x=1",
                "scheme, host and port only",
            ),
            ("http://u:p@stats.internal:8091", "no credentials"),
            ("http://stats.internal:99999", "not a URL"),
        ] {
            let e = upstream_url("stats_url", bad).unwrap_err();
            assert!(
                e.contains(why) && e.contains("upstreams.stats_url"),
                "{bad}: {e}"
            );
        }
    }
}
