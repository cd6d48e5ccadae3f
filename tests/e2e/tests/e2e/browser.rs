//! A headless Chromium for the browser tests (Debian's `chromium`, driven over WebDriver by
//! `chromedriver` and fantoccini).

use std::{process::Stdio, time::Duration};

use fantoccini::{ClientBuilder, Locator};
use hashpool_e2e::{free_address, wait_until};
use serde_json::json;

/// chromedriver on a free port, stopped when dropped.
pub(crate) struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Driver {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let port = free_address().port();
        let child = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "chromedriver (Debian packages chromium and chromium-driver; scripts/setup.sh \
                     installs them): {e}"
                )
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        wait_until(Duration::from_secs(20), "chromedriver", || async {
            reqwest::get(&status).await.is_ok()
        })
        .await?;
        Ok(Self { child, url })
    }

    pub(crate) async fn browser(
        &self,
        profile: &std::path::Path,
    ) -> anyhow::Result<fantoccini::Client> {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1200,1700",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        Ok(ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await?)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub(crate) async fn text_of(browser: &fantoccini::Client, css: &str) -> Option<String> {
    browser
        .find(Locator::Css(css))
        .await
        .ok()?
        .text()
        .await
        .ok()
}
