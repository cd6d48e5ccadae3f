//! Health checks: a role is healthy when each of its ports accepts a TCP connection and each of
//! its URLs answers 2xx.

use std::{net::SocketAddr, time::Duration};

use crate::profile::RoleSpec;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Checker {
    http: reqwest::Client,
}

impl Checker {
    pub fn new() -> anyhow::Result<Self> {
        // Checks are for 127.0.0.1: never through an HTTP(S)_PROXY from the environment.
        let http = reqwest::Client::builder()
            .timeout(CHECK_TIMEOUT)
            .no_proxy()
            .build()?;
        Ok(Self { http })
    }

    /// `Err` names the first check that failed.
    pub async fn check(&self, role: &RoleSpec) -> Result<(), String> {
        for port in &role.ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            match tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("port {port}: {e}")),
                Err(_) => return Err(format!("port {port}: no answer")),
            }
        }
        for url in &role.health_http {
            match self.http.get(url).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => return Err(format!("{url}: HTTP {}", r.status())),
                Err(e) => return Err(format!("{url}: {}", describe(e))),
            }
        }
        Ok(())
    }
}

/// reqwest repeats the URL in its message (the caller already names it) and keeps the cause
/// in the source chain.
fn describe(e: reqwest::Error) -> String {
    if e.is_connect() {
        return "connection refused".into();
    }
    if e.is_timeout() {
        return "no answer".into();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn role(ports: Vec<u16>, health_http: Vec<String>) -> RoleSpec {
        RoleSpec {
            name: "r".into(),
            command: "x".into(),
            args: vec![],
            env: Default::default(),
            after: vec![],
            ports,
            health_http,
        }
    }

    #[tokio::test]
    async fn closed_ports_and_failing_urls_are_unhealthy() {
        let checker = Checker::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(checker.check(&role(vec![open], vec![])).await.is_ok());
        let err = checker
            .check(&role(vec![open, closed], vec![]))
            .await
            .unwrap_err();
        assert!(err.contains(&format!("port {closed}")), "{err}");

        // A server answering 503 to everything.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = s.read(&mut request).await;
                let _ = s
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let url = format!("http://127.0.0.1:{open}/health");
        let err = checker.check(&role(vec![], vec![url])).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
    }
}
