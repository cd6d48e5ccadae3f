//! The job declarator server: miners' job declarator clients declare the jobs they want to
//! mine (their own transactions); a job whose coinbase pays the pool the whole reward and whose
//! transactions are all known (asked for when not) is accepted with a job token the pool checks
//! on `SetCustomMiningJob`; solutions pushed for accepted jobs are submitted to the node.
//! docs/job-declaration.md.

pub mod cli;
pub mod config;
pub mod declaration;
pub mod metrics;
pub mod payouts;
pub use hashpool_bitcoin_rpc as rpc;
pub mod session;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{JdServerConfig, JdServerRunConfig};

/// What every connection shares.
pub struct JdContext {
    pub config: JdServerRunConfig,
    pub rpc: rpc::BitcoinRpc,
    pub stats: Arc<metrics::JdStats>,
    /// The pool's payout offers, when declared coinbases must carry withdrawals.
    pub payouts: Option<payouts::PayoutClient>,
    /// The node's mempool as last fetched: declarations within [`MEMPOOL_TTL`] share one
    /// `getrawmempool` (on a real node it is large).
    mempool: tokio::sync::Mutex<Option<(std::time::Instant, Arc<rpc::Mempool>)>>,
}

/// How long a fetched mempool answers declarations.
const MEMPOOL_TTL: std::time::Duration = std::time::Duration::from_millis(500);
/// The least time between two fetches, whatever a declaration lists.
const MEMPOOL_MIN_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

impl JdContext {
    pub fn new(config: JdServerRunConfig, rpc: rpc::BitcoinRpc) -> Self {
        let payouts = config
            .payouts_url
            .clone()
            .map(|url| payouts::PayoutClient::new(url, config.authority_secret_key.into_bytes()));
        Self {
            config,
            rpc,
            payouts,
            stats: Arc::default(),
            mempool: tokio::sync::Mutex::new(None),
        }
    }

    /// The node's mempool, at most [`MEMPOOL_TTL`] old; fetched again (at most every
    /// [`MEMPOOL_MIN_REFRESH`]) when it lacks one of `wtxids`, so a transaction that reached the
    /// node after the last fetch counts as the mempool's (with its fee), not as unknown.
    pub async fn mempool_for(
        &self,
        wtxids: &[bitcoin::Wtxid],
    ) -> Result<Arc<rpc::Mempool>, rpc::RpcError> {
        let mut cached = self.mempool.lock().await;
        if let Some((at, mempool)) = cached.as_ref() {
            let age = at.elapsed();
            let complete = wtxids.iter().all(|w| mempool.get(w).is_some());
            if age < MEMPOOL_TTL && complete {
                return Ok(mempool.clone());
            }
            // Fetched just now and still lacking one: fetch once more a little later (the
            // declarations of the meantime wait for it) rather than on every declaration.
            if age < MEMPOOL_MIN_REFRESH {
                tokio::time::sleep(MEMPOOL_MIN_REFRESH - age).await;
            }
        }
        let fresh = Arc::new(self.rpc.mempool().await?);
        *cached = Some((std::time::Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}

pub struct RunningJdServer {
    pub listen_address: SocketAddr,
    /// Where `/metrics` and `/api/v1/health` are served, if they are.
    pub metrics_address: Option<SocketAddr>,
    pub task: JoinHandle<()>,
}

/// Binds and serves until `shutdown`. The node must answer first: a jd-server that cannot see
/// the mempool would refuse every job.
pub async fn start(
    config: JdServerRunConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningJdServer> {
    let rpc = rpc::BitcoinRpc::new(config.rpc.clone())?;
    let (chain, height) = rpc
        .chain()
        .await
        .with_context(|| format!("asking the node at {}", config.rpc.url))?;
    let listener = hashpool_sv2_io::listen(config.listen_address)
        .with_context(|| format!("binding {}", config.listen_address))?;
    let listen_address = listener.local_addr()?;
    info!(%listen_address, chain, height, "jd-server listening");
    let metrics_address = config.metrics_address;
    let ctx = Arc::new(JdContext::new(config, rpc));
    let metrics_address = match metrics_address {
        Some(address) => {
            let app = metrics::exporter(ctx.stats.clone())
                .map_err(|e| anyhow::anyhow!("jd-server metrics: {e}"))?
                .router()
                .merge(hashpool_metrics::health_router("jd-server"));
            let bound = hashpool_metrics::serve(address, app, shutdown.clone())
                .await
                .with_context(|| format!("binding the jd-server metrics endpoint {address}"))?;
            info!(%bound, "jd-server metrics at /metrics");
            Some(bound)
        }
        None => None,
    };
    let task = tokio::spawn(async move {
        let stop = shutdown.clone();
        hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
            let (ctx, shutdown) = (ctx.clone(), stop.clone());
            async move {
                let result = session::run(stream, ctx, shutdown).await;
                hashpool_sv2_io::log_session_end(peer, "job declarator client", &result);
            }
        })
        .await
    });
    Ok(RunningJdServer {
        listen_address,
        metrics_address,
        task,
    })
}
