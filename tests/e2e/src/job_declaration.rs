//! The jd-server in-process, on the template provider's chain and JSON-RPC.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use stratum_apps::config_helpers::CoinbaseRewardScript;
use tokio_util::sync::CancellationToken;

use crate::{loopback_any_port, public_key, secret_key, TestProvider, POOL_SCRIPT};

/// A jd-server on `listen` for the chain of `tp`, requiring the test pool's script.
pub fn jd_server_config(
    listen: SocketAddr,
    tp: &TestProvider,
) -> anyhow::Result<jd_server::JdServerRunConfig> {
    Ok(jd_server::JdServerRunConfig {
        listen_address: listen,
        authority_public_key: public_key(),
        authority_secret_key: secret_key(),
        cert_validity_secs: 3600,
        pool_script: CoinbaseRewardScript::from_descriptor(POOL_SCRIPT)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .script_pubkey(),
        token_lifetime_secs: 600,
        rpc: jd_server::config::RpcSettings {
            url: format!("http://{}/", tp.running.http_address),
            cookie_file: None,
            user: None,
            password: None,
        },
        metrics_address: Some(loopback_any_port()),
        payouts_url: None,
    })
}

pub struct TestJdServer {
    pub running: jd_server::RunningJdServer,
    pub shutdown: CancellationToken,
}

impl TestJdServer {
    /// A jd-server on `listen` ([`jd_server_config`]).
    pub async fn start(listen: SocketAddr, tp: &TestProvider) -> anyhow::Result<Self> {
        Self::start_with(jd_server_config(listen, tp)?).await
    }

    /// A jd-server of this configuration ([`jd_server_config`], changed).
    pub async fn start_with(config: jd_server::JdServerRunConfig) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let running = jd_server::start(config, shutdown.clone()).await?;
        Ok(Self { running, shutdown })
    }

    pub fn address(&self) -> SocketAddr {
        self.running.listen_address
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running.task)
            .await
            .context("jd-server did not stop")??;
        Ok(())
    }
}
