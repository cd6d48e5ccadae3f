//! Serving a dashboard: its own address, behind the host guard, until shutdown.

use std::net::SocketAddr;

use axum::Router;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::guard::{same_host, AllowedHosts};

/// A dashboard ready to serve: its page and API (`app`) and where.
pub struct Dashboard {
    /// For the logs.
    pub name: &'static str,
    pub address: SocketAddr,
    /// Other names the page may be reached by, besides its own address (see [`AllowedHosts`]).
    pub allowed_hosts: Vec<String>,
    pub app: Router,
}

pub struct Running {
    pub address: SocketAddr,
    pub task: JoinHandle<()>,
}

impl Dashboard {
    /// Dashboard `name` serving `app` on `address`, also reachable by `allowed_hosts`.
    pub fn new(
        name: &'static str,
        (address, allowed_hosts): (SocketAddr, Vec<String>),
        app: Router,
    ) -> Self {
        Self {
            name,
            address,
            allowed_hosts,
            app,
        }
    }

    /// Binds and serves until `shutdown`; `address` may name port 0 (the bound one is returned).
    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<Running> {
        let listener = TcpListener::bind(self.address).await?;
        let address = listener.local_addr()?;
        let allowed = AllowedHosts::for_address(address, &self.allowed_hosts);
        let name = self.name;
        // Every role's liveness check (docs/metrics.md), the same JSON as the other roles'.
        let health = Router::new().route(
            "/api/v1/health",
            axum::routing::get(move || async move {
                axum::Json(serde_json::json!({
                    "status": "ok",
                    "role": name,
                    "version": env!("CARGO_PKG_VERSION"),
                }))
            }),
        );
        let app = self
            .app
            .merge(health)
            .merge(crate::assets::routes())
            .layer(axum::middleware::from_fn_with_state(allowed, same_host));
        let task = tokio::spawn(async move {
            let server =
                axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = server.await {
                tracing::warn!("{name} server stopped: {e}");
            }
        });
        Ok(Running { address, task })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The whole HTTP/1.1 answer to `GET path`.
    async fn get(address: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn every_dashboard_answers_health_and_serves_its_chart_library() {
        let stop = CancellationToken::new();
        let listen = (SocketAddr::from(([127, 0, 0, 1], 0)), Vec::new());
        let running = Dashboard::new("web-test", listen, Router::new())
            .serve(stop.clone())
            .await
            .unwrap();
        let answer = get(running.address, "/api/v1/health").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""status":"ok""#), "{answer}");
        assert!(answer.contains(r#""role":"web-test""#), "{answer}");

        let js = get(running.address, "/assets/uplot.js").await;
        assert!(js.starts_with("HTTP/1.1 200"), "{}", &js[..200]);
        assert!(
            js.contains("content-type: text/javascript"),
            "{}",
            &js[..200]
        );
        assert!(js.ends_with(crate::assets::UPLOT_JS));
        let css = get(running.address, "/assets/uplot.css").await;
        assert!(css.contains("content-type: text/css"), "{}", &css[..200]);
        let license = get(running.address, "/assets/uplot-LICENSE.txt").await;
        assert!(license.contains("MIT"), "{license}");
        stop.cancel();
    }
}
