//! Requests must name this server: the Host header is one of its own names, and a request
//! that changes something (web-proxy's token and faucet) comes from its own pages (Origin).
//! A page elsewhere that resolves its own name to 127.0.0.1 (DNS rebinding) gets nothing.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};

#[derive(Debug, Clone)]
pub struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    /// `address` itself, `localhost` and `127.0.0.1` on its port, and `extra` names (host or
    /// host:port, as browsers send them when the dashboard is reached by another name).
    pub fn for_address(address: SocketAddr, extra: &[String]) -> Self {
        let port = address.port();
        let mut names = vec![
            address.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        names.extend(extra.iter().cloned());
        Self(Arc::new(names))
    }

    fn allows(&self, host: &str) -> bool {
        self.0.iter().any(|a| a.eq_ignore_ascii_case(host))
    }
}

fn refused(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Middleware: see the module.
pub async fn same_host(
    State(allowed): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !allowed.allows(host) {
        return refused(
            "unknown host: add it to web.allowed_hosts to reach this page by that name",
        );
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if let Some(origin) = origin {
            let own = ["http://", "https://"]
                .iter()
                .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")));
            if !own {
                return refused("cross-origin request refused");
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_names_only() {
        let a =
            AllowedHosts::for_address("127.0.0.1:3030".parse().unwrap(), &["rig.lan:3030".into()]);
        assert!(a.allows("127.0.0.1:3030"));
        assert!(a.allows("LOCALHOST:3030"));
        assert!(a.allows("rig.lan:3030"));
        assert!(!a.allows("evil.example:3030"));
        assert!(!a.allows("127.0.0.1:8083"));
        assert!(!a.allows(""));
    }
}
