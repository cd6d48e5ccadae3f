//! Hashpool's SV2 mining pool: serves miners over Noise (standard and extended channels,
//! vardiff), builds their jobs from a template provider's templates, validates shares with
//! channels_sv2 and submits blocks. Every accepted share passes through
//! [`miners::ShareSink::on_share_accepted`].
//!
//! The modules depend one way, each only on those listed before it (checked by
//! `scripts/check-module-cycles.py`):
//! - leaves: [`config`], [`accepted_share`], [`counters`], [`events`];
//! - [`ledger`]: accepted shares made durable, accrued and batched;
//! - [`jobs`]: templates from the template provider, made into the pool's jobs;
//! - [`miners`]: the miner connections, their channels and shares, and the registry of them;
//! - [`quotes`]: the mint link and the batcher that asks it for quotes;
//! - [`settlement`]: found blocks followed in the node's chain to maturity;
//! - [`observability`]: stats reports, the monitoring API and metrics.
//!
//! This file only wires them together: each gets the handles it needs.

pub mod accepted_share;
pub mod cli;
pub mod config;
pub mod counters;
pub mod events;
pub mod jobs;
pub mod ledger;
pub mod miners;
pub mod observability;
pub mod quotes;
pub mod settlement;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use stratum_apps::monitoring::MonitoringServer;
use tokio::{net::TcpListener, sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{PoolConfig, PoolRunConfig};
use counters::PoolStats;
use events::EventSink;
use jobs::JobSource;
use ledger::{AccrualLedger, LedgerOptions};
use miners::{Admission, MinerHandles, Registry, ShareSink};
use observability::stats_report::StatsReportHandles;
use quotes::{MintLink, MintLinkHandles};

/// How often the monitoring API's snapshot of channels is refreshed.
const MONITORING_REFRESH: Duration = Duration::from_secs(1);

pub struct RunningPool {
    pub listen_address: SocketAddr,
    pub mint_link_address: SocketAddr,
    /// Where the pool's own `/metrics` is served, if configured.
    pub metrics_address: Option<SocketAddr>,
    /// Where the per-key miner API is served, if configured.
    pub api_address: Option<SocketAddr>,
    pub config: Arc<PoolRunConfig>,
    pub jobs: Arc<JobSource>,
    pub stats: Arc<PoolStats>,
    pub ledger: AccrualLedger,
    pub admission: Arc<Admission>,
    /// The miners' connections and their channels.
    pub registry: Arc<Registry>,
    /// Ends when every task of the pool has stopped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds the miner listener, starts the template provider client and the monitoring server.
pub async fn start(
    config: PoolRunConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningPool> {
    let config = Arc::new(config);
    let max_payouts = config
        .settlement
        .as_ref()
        .filter(|s| s.pay_withdrawals)
        .map_or(0, |s| s.max_payouts_per_block as usize);
    let jobs = Arc::new(JobSource::with_payouts(
        config.pool.coinbase_reward_script.script_pubkey(),
        max_payouts,
    ));
    let stats = Arc::new(PoolStats::default());
    let (solutions_tx, solutions_rx) = mpsc::channel(256);
    let mut ledger_options = LedgerOptions {
        retention: Duration::from_secs(config.pool.ledger_retention_hours.saturating_mul(3600)),
        ..LedgerOptions::default()
    };
    if let Some(settlement) = &config.settlement {
        ledger_options.epochs = ledger::EpochSizing {
            ppm: settlement.epoch_work_ppm,
            min_work: settlement.min_epoch_work(),
        };
    }
    let location = config.pool.ledger_location();
    let ledger = AccrualLedger::open_with(
        location.clone(),
        &config.unit,
        config.unit_work,
        ledger_options,
    )
    .await
    .with_context(|| format!("opening the accrual ledger {}", location.describe()))?;
    tracing::info!(ledger = %location.describe(), backend = ?ledger.backend(), "ledger open");
    // Events are consumed only when the pool reports to a stats service.
    let (events, events_rx) = match &config.stats_reporting {
        Some(_) => {
            let (sink, rx) = EventSink::channel();
            (sink, Some(rx))
        }
        None => (EventSink::disabled(), None),
    };
    let miners = Arc::new(MinerHandles::new(
        config.clone(),
        jobs.clone(),
        ShareSink::new(stats.clone(), ledger.clone()),
        stats.clone(),
        events.clone(),
        solutions_tx,
    )?);
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
        Some(Arc::new(observability::monitoring::PoolMonitoring {
            registry: miners.registry.clone(),
            max_clients: config.pool.monitoring_max_clients,
        })),
        MONITORING_REFRESH,
    )
    .map_err(|e| anyhow::anyhow!("monitoring server: {e}"))?;

    let mut tasks = JoinSet::new();
    tasks.spawn(miners::serve(listener, miners.clone(), shutdown.clone()));
    if let Some(others) = ledger
        .quotes_of_other_instances()
        .await
        .context("listening for the quotes other pool instances record")?
    {
        tasks.spawn(quotes::announce_others(
            others,
            miners.registry.clone(),
            shutdown.clone(),
        ));
    }
    let link = Arc::new(MintLink::default());
    let mint_handles = Arc::new(MintLinkHandles {
        config: config.clone(),
        ledger: ledger.clone(),
        stats: stats.clone(),
        miners: miners.registry.clone(),
        events,
    });
    tasks.spawn(quotes::mint_link::serve(
        mint_listener,
        mint_handles,
        link.clone(),
        shutdown.clone(),
    ));
    if let (Some(reporting), Some(events_rx)) = (config.stats_reporting.clone(), events_rx) {
        info!(stats = %reporting.reporter.address, "reporting to the stats service");
        let handles = StatsReportHandles {
            stats: stats.clone(),
            miners: miners.registry.clone(),
            mint: link.clone(),
            jobs: jobs.clone(),
            provider_address: config.template_provider.address.clone(),
        };
        tasks.spawn(observability::stats_report::run(
            handles,
            reporting,
            events_rx,
            shutdown.clone(),
        ));
    }
    tasks.spawn(quotes::batcher::run(
        config.clone(),
        ledger.clone(),
        link.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(jobs::template_receiver::run(
        config.template_provider.clone(),
        jobs.clone(),
        ledger.clone(),
        solutions_rx,
        stats.clone(),
        shutdown.clone(),
    ));
    match &config.settlement {
        Some(settlement) => {
            let node = hashpool_bitcoin_rpc::BitcoinRpc::new(settlement.node_rpc.clone())
                .context("the settlement node's JSON-RPC client")?;
            info!(url = %settlement.node_rpc.url, "following found blocks in the node's chain");
            let withdrawals = settlement
                .withdrawals_url
                .clone()
                .filter(|_| settlement.pay_withdrawals)
                .map(|url| {
                    info!(%url, "paying the mint's withdrawals in the pool's coinbases");
                    settlement::payouts::WithdrawalSource::new(
                        url,
                        config.mint_public_key.into_bytes(),
                    )
                });
            tasks.spawn(settlement::follower::run(
                ledger.clone(),
                node,
                withdrawals,
                Duration::from_millis(settlement.follow_interval_ms),
                shutdown.clone(),
            ));
        }
        None => tracing::warn!(
            "no [settlement] section: found blocks are recorded but not followed to maturity"
        ),
    }
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
            let exporter = observability::metrics::exporter(
                miners.admission.clone(),
                stats.clone(),
                ledger.metrics().clone(),
                link.clone(),
            )
            .map_err(|e| anyhow::anyhow!("pool metrics: {e}"))?;
            let app = exporter
                .router()
                .merge(hashpool_metrics::health_router("pool"));
            let bound = hashpool_metrics::serve(address, app, shutdown.clone())
                .await
                .with_context(|| format!("binding the pool metrics endpoint {address}"))?;
            info!(%bound, "pool metrics at /metrics");
            Some(bound)
        }
        None => None,
    };
    let api_address = match config.api_address {
        Some(address) => {
            Some(serve_miner_api(address, &config, &ledger, &miners, &shutdown).await?)
        }
        None => None,
    };
    let task = tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
    Ok(RunningPool {
        metrics_address,
        api_address,
        listen_address,
        mint_link_address,
        admission: miners.admission.clone(),
        registry: miners.registry.clone(),
        config,
        jobs,
        stats,
        ledger,
        task,
    })
}

/// Serves the per-key miner API on `address` (its own read-only ledger connections).
async fn serve_miner_api(
    address: SocketAddr,
    config: &PoolRunConfig,
    ledger: &AccrualLedger,
    miners: &MinerHandles,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let reader = ledger::LedgerReader::open(
        config.pool.ledger_location(),
        ledger.unit_work(),
        ledger::ReadLimits::default(),
    )
    .await
    .context("opening the ledger for the miner API")?;
    let api = observability::miner_api::MinerApi::new(
        reader,
        miners.registry.clone(),
        ledger.unit().to_string(),
        ledger.unit_work(),
    );
    let mut app = api.router().merge(hashpool_metrics::health_router("pool"));
    if let Some(settlement) = &config.settlement {
        app = app.merge(
            {
                let api = settlement::api::SettlementApi::new(
                    ledger.clone(),
                    settlement.fee_ppm,
                    settlement.window_multiplier,
                    config.pool.authority_secret_key.into_bytes(),
                );
                match config.jd_server_public_key {
                    Some(jd) if settlement.pay_withdrawals => {
                        api.with_payout_offers(settlement::api::PayoutOffers {
                            jobs: miners.jobs.clone(),
                            jd_server_key: jd.into_bytes(),
                            max_payouts: settlement.max_payouts_per_block as usize,
                        })
                    }
                    _ => api,
                }
            }
            .router(),
        );
    }
    let bound = hashpool_metrics::serve(address, app, shutdown.clone())
        .await
        .with_context(|| format!("binding the miner API {address}"))?;
    info!(%bound, "miner API at /api/v1/miners/{{key}}");
    Ok(bound)
}
