//! The job declarator client: a miner's (or a farm's) own block templates, mined on the pool.
//!
//! It takes templates from its own template provider, declares each to the pool's jd-server
//! (transactions it does not know are provided), sets the accepted job on its extended channel
//! at the pool (`SetCustomMiningJob` with the jd-server's job token), and serves its miners
//! those jobs. Shares are checked here; those at the pool channel's target go to the pool,
//! whose ehash for them is minted into this jd-client's wallet (its key locks the channel).
//! Blocks go to its template provider and to the jd-server. When declaring is not possible
//! (no jd-server, a refusal), its miners mine the pool's own jobs on the same channel, and
//! declared jobs resume with the next template. docs/job-declaration.md.

pub mod cli;
pub mod config;
pub mod core;
pub mod downstream;
pub mod links;
pub mod monitoring;
pub mod role;
pub mod stats;
pub mod work;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{JdClientConfig, JdClientRunConfig};
pub use stats::JdClientStats;

pub struct RunningJdClient {
    pub listen_address: SocketAddr,
    /// Where `/metrics` and `/api/v1/status` are served, if configured.
    pub monitoring_address: Option<SocketAddr>,
    pub stats: Arc<JdClientStats>,
    pub task: JoinHandle<()>,
}

/// Binds the miners' port and starts the upstream links and the core, until `shutdown`.
/// `minter` mints the quotes the pool announces (into the wallet whose key is
/// `config.locking_key`).
pub async fn start(
    config: JdClientRunConfig,
    minter: Option<hashpool_wallet::Minter>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningJdClient> {
    let listener = hashpool_sv2_io::listen(config.listen_address)
        .with_context(|| format!("binding {}", config.listen_address))?;
    let listen_address = listener.local_addr()?;
    let stats = Arc::new(JdClientStats::default());
    let monitoring_address = match config.monitoring_address {
        Some(address) => Some(
            monitoring::serve(address, stats.clone(), minter.clone(), shutdown.clone())
                .await
                .with_context(|| format!("binding the monitoring endpoint on {address}"))?,
        ),
        None => None,
    };
    let (events, rx) = mpsc::channel(16 * 1024);
    let mut tasks = vec![
        tokio::spawn(core::Core::new(config.clone(), stats.clone()).run(rx, shutdown.clone())),
        tokio::spawn(downstream::serve(
            listener,
            config.clone(),
            events.clone(),
            shutdown.clone(),
        )),
    ];
    for upstream in [
        links::Upstream::TemplateProvider,
        links::Upstream::Pool,
        links::Upstream::JdServer,
    ] {
        tasks.push(tokio::spawn(links::run(
            upstream,
            config.clone(),
            minter.clone(),
            events.clone(),
            shutdown.clone(),
        )));
    }
    info!(
        %listen_address,
        pool = %config.pool.address,
        jd_server = %config.jd_server.address,
        template_provider = %config.template_provider.address,
        monitoring = ?monitoring_address,
        "jd-client running"
    );
    let task = tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(RunningJdClient {
        listen_address,
        monitoring_address,
        stats,
        task,
    })
}
