//! JSON from the roles a dashboard shows. Every call has a short timeout: a role that is down
//! shows as down, and the page still renders.

use std::time::Duration;

use serde_json::Value;

/// The answers of several reads for one page: each value (`null` where the read failed) and
/// what failed, for the page to show.
pub fn answers<const N: usize>(results: [Result<Value, String>; N]) -> ([Value; N], Vec<String>) {
    let mut errors = Vec::new();
    let values = results.map(|r| {
        r.unwrap_or_else(|e| {
            errors.push(e);
            Value::Null
        })
    });
    (values, errors)
}

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new(Duration::from_secs(3))
    }
}

impl Upstream {
    pub fn new(timeout: Duration) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
        }
    }

    /// `GET url` as JSON; the error says what failed, for the page.
    pub async fn get(&self, url: &str) -> Result<Value, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: unreachable ({e})"))?;
        Self::json(url, response).await
    }

    /// `GET url`: the role's status and JSON body (whatever the status), or why it could not be
    /// reached or did not answer JSON.
    pub async fn get_status(&self, url: &str) -> Result<(u16, Value), String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: unreachable ({e})"))?;
        let status = response.status().as_u16();
        let body = response
            .json()
            .await
            .map_err(|e| format!("{url}: not JSON ({e})"))?;
        Ok((status, body))
    }

    /// `POST url` with a JSON body; a JSON error body from the role is passed on.
    pub async fn post(&self, url: &str, body: &Value) -> Result<Value, String> {
        let response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("{url}: unreachable ({e})"))?;
        Self::json(url, response).await
    }

    /// `POST url` on behalf of a page: the role's own status and JSON body, or 502 with why it
    /// could not be reached.
    pub async fn forward_post(&self, url: &str, body: &Value) -> (u16, Value) {
        match self.client.post(url).json(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.json().await {
                    Ok(body) => (status, body),
                    Err(e) => (
                        502,
                        serde_json::json!({ "error": format!("{url}: not JSON ({e})") }),
                    ),
                }
            }
            Err(e) => (
                502,
                serde_json::json!({ "error": format!("{url}: unreachable ({e})") }),
            ),
        }
    }

    /// True when `url` answers 2xx.
    pub async fn up(&self, url: &str) -> bool {
        self.client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    async fn json(url: &str, response: reqwest::Response) -> Result<Value, String> {
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("{url}: not JSON ({e})"))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(body["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{url}: {status}")))
        }
    }
}
