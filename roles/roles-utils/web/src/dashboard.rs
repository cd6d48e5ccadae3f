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
        let app = self
            .app
            .layer(axum::middleware::from_fn_with_state(allowed, same_host));
        let name = self.name;
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
