//! The dashboards' own config file (`config/web-pool.config.toml`, `config/web-proxy.config.toml`);
//! every address they use comes from the shared topology instead.

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
