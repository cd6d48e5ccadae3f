//! Hashpool's SV2 mining pool: serves miners over Noise (standard and extended channels,
//! vardiff), builds their jobs from a template provider's templates, validates shares with
//! channels_sv2 and submits blocks. Every accepted share passes through
//! [`accepted_share::ShareSink::on_share_accepted`].

pub mod accepted_share;
pub mod cli;
pub mod config;
pub mod context;
pub mod downstream;
pub mod job_source;
pub mod ledger;
pub mod metrics;
pub mod mint_link;
pub mod monitoring;
pub mod quote_batcher;
pub mod stats;
pub mod stats_report;
pub mod template_receiver;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use stratum_apps::monitoring::MonitoringServer;
use tokio::{net::TcpListener, sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{PoolConfig, PoolRunConfig};
use context::PoolContext;
use job_source::JobSource;
use stats::PoolStats;

/// How often the monitoring API's snapshot of channels is refreshed.
const MONITORING_REFRESH: Duration = Duration::from_secs(1);

pub struct RunningPool {
    pub listen_address: SocketAddr,
    pub mint_link_address: SocketAddr,
    /// Where the pool's own `/metrics` is served, if configured.
    pub metrics_address: Option<SocketAddr>,
    pub context: Arc<PoolContext>,
    /// Ends when every task of the pool has stopped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds the miner listener, starts the template provider client and the monitoring server.
pub async fn start(
    config: PoolRunConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningPool> {
    let jobs = Arc::new(JobSource::new(
        config.pool.coinbase_reward_script.script_pubkey(),
    ));
    let stats = Arc::new(PoolStats::default());
    let (solutions_tx, solutions_rx) = mpsc::channel(256);
    let ledger =
        ledger::AccrualLedger::open(&config.pool.ledger_path, &config.unit, config.unit_work)
            .await
            .with_context(|| {
                format!(
                    "opening the accrual ledger {}",
                    config.pool.ledger_path.display()
                )
            })?;
    let ctx = Arc::new(
        PoolContext::new(
            config.clone(),
            jobs.clone(),
            stats.clone(),
            ledger,
            solutions_tx,
        )
        .map_err(anyhow::Error::msg)?,
    );
    let listener = hashpool_sv2_io::listen(config.listen_address)
        .with_context(|| format!("binding the miner listener {}", config.listen_address))?;
    let listen_address = listener.local_addr()?;
    let mint_listener = TcpListener::bind(config.mint_link_address)
        .await
        .with_context(|| {
            format!(
                "binding the mint link listener {}",
                config.mint_link_address
            )
        })?;
    let mint_link_address = mint_listener.local_addr()?;
    info!(%mint_link_address, "pool listening for the mint");
    info!(%listen_address, server_id = config.pool.server_id, "pool listening for miners");

    let monitoring = MonitoringServer::new(
        config.monitoring_address,
        None,
        Some(Arc::new(monitoring::PoolMonitoring(ctx.clone()))),
        MONITORING_REFRESH,
    )
    .map_err(|e| anyhow::anyhow!("monitoring server: {e}"))?;

    let mut tasks = JoinSet::new();
    tasks.spawn(downstream::serve(listener, ctx.clone(), shutdown.clone()));
    let link = Arc::new(mint_link::MintLink::default());
    tasks.spawn(mint_link::serve(
        mint_listener,
        ctx.clone(),
        link.clone(),
        shutdown.clone(),
    ));
    if let Some(reporting) = config.stats_reporting.clone() {
        info!(stats = %reporting.reporter.address, "reporting to the stats service");
        tasks.spawn(stats_report::run(
            ctx.clone(),
            reporting,
            link.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(quote_batcher::run(ctx.clone(), link, shutdown.clone()));
    tasks.spawn(template_receiver::run(
        config.template_provider.clone(),
        jobs,
        solutions_rx,
        stats,
        shutdown.clone(),
    ));
    let monitoring_shutdown = shutdown.clone();
    let monitoring_address = config.monitoring_address;
    tasks.spawn(async move {
        if let Err(e) = monitoring
            .run(async move { monitoring_shutdown.cancelled().await })
            .await
        {
            tracing::error!(%monitoring_address, "monitoring server failed: {e}");
        }
    });
    let metrics_address = match config.pool.metrics_address {
        Some(address) => {
            let exporter =
                metrics::exporter(ctx.clone()).map_err(|e| anyhow::anyhow!("pool metrics: {e}"))?;
            let bound = hashpool_metrics::serve(address, exporter.router(), shutdown.clone())
                .await
                .with_context(|| format!("binding the pool metrics endpoint {address}"))?;
            info!(%bound, "pool metrics at /metrics");
            Some(bound)
        }
        None => None,
    };
    let task = tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
    Ok(RunningPool {
        metrics_address,
        listen_address,
        mint_link_address,
        context: ctx,
        task,
    })
}
