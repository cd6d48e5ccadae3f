//! The pool in-process, and what the tests read of it (its monitoring API).

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use pool::{config::PoolSettings, config::TemplateProviderSettings, PoolRunConfig, RunningPool};
use stratum_apps::{
    config_helpers::CoinbaseRewardScript,
    key_utils::Secp256k1PublicKey,
    monitoring::{
        ExtendedChannelInfo, StandardChannelInfo, Sv2ClientChannelsResponse, Sv2ClientsResponse,
    },
};
use tokio_util::sync::CancellationToken;

use crate::{free_address, loopback_any_port, public_key, secret_key, wait_until, POOL_SCRIPT};

pub struct TestPool {
    pub running: RunningPool,
    pub monitoring: SocketAddr,
    pub shutdown: CancellationToken,
    pub ledger_path: std::path::PathBuf,
}

pub struct PoolOptions {
    pub shares_per_minute: f32,
    pub share_batch_size: usize,
    /// A batch not yet full is acknowledged after this long.
    pub share_ack_interval_ms: u64,
    pub vardiff_interval_secs: u64,
    pub mint_quote_extension: bool,
    pub default_locking_key: Option<ext_mint_quote::LockingKey>,
    /// Where the accrual ledger lives; the caller keeps the directory.
    pub ledger_path: std::path::PathBuf,
    /// The ledger on PostgreSQL instead (several pools may share it).
    pub ledger_database_url: Option<String>,
    /// The pool instance's extranonce prefix (distinct per instance on one ledger).
    pub server_id: u16,
    /// Difficulty-1 shares of work per ehash.
    pub unit_work: f64,
    pub batch_interval_ms: u64,
    pub retry_interval_ms: u64,
    /// Where miners connect (tests that restart the pool keep it).
    pub listen_address: SocketAddr,
    /// Reporting to a stats service.
    pub stats_reporting: Option<pool::config::StatsReporting>,
    /// The jd-server whose job tokens custom jobs must carry.
    pub jd_server_public_key: Option<Secp256k1PublicKey>,
    /// What each miner may cost the pool.
    pub limits: pool::config::MinerLimits,
    /// Connections the monitoring API lists one by one.
    pub monitoring_max_clients: usize,
    /// Found blocks followed in a node's chain (the stack's template provider, with
    /// [`crate::Stack::follow_chain`]).
    pub settlement: Option<pool::config::SettlementSettings>,
}

/// The pool's limits as tests use them: the defaults, with a share difficulty floor low enough
/// for CPU miners (a share still costs work: at 1e-9 about four hashes).
pub fn test_limits() -> pool::config::MinerLimits {
    pool::config::MinerLimits {
        min_share_difficulty: 1e-9,
        ..Default::default()
    }
}

/// A fresh ledger file under the system temp directory, unique per call. Tests that care
/// where it is (restarts) pass their own path.
fn default_ledger_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "hashpool-e2e-ledger-{}-{}.sqlite",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            shares_per_minute: 6.0,
            share_batch_size: 1,
            share_ack_interval_ms: 1_000,
            vardiff_interval_secs: 1,
            mint_quote_extension: true,
            default_locking_key: None,
            ledger_path: default_ledger_path(),
            ledger_database_url: None,
            server_id: 7,
            unit_work: 1e-6,
            batch_interval_ms: 300,
            retry_interval_ms: 1_000,
            listen_address: loopback_any_port(),
            stats_reporting: None,
            jd_server_public_key: None,
            limits: test_limits(),
            monitoring_max_clients: 1000,
            settlement: None,
        }
    }
}

impl TestPool {
    pub async fn start(provider: SocketAddr, options: PoolOptions) -> anyhow::Result<Self> {
        let monitoring = free_address();
        let config = PoolRunConfig {
            listen_address: options.listen_address,
            monitoring_address: monitoring,
            api_address: Some(loopback_any_port()),
            authority_public_key: public_key(),
            pool: PoolSettings {
                authority_secret_key: secret_key(),
                cert_validity_secs: 3600,
                coinbase_reward_script: CoinbaseRewardScript::from_descriptor(POOL_SCRIPT)
                    .map_err(|e| anyhow::anyhow!("reward script: {e}"))?,
                pool_signature: "hashpool-test".into(),
                server_id: options.server_id,
                shares_per_minute: options.shares_per_minute,
                share_batch_size: options.share_batch_size,
                share_ack_interval_ms: options.share_ack_interval_ms,
                vardiff_interval_secs: options.vardiff_interval_secs,
                max_channels_per_connection: 16,
                mint_quote_extension: options.mint_quote_extension,
                default_locking_key: options.default_locking_key,
                ledger_path: options.ledger_path.clone(),
                ledger_database_url: options.ledger_database_url.clone(),
                ledger_retention_hours: 24,
                monitoring_max_clients: options.monitoring_max_clients,
                metrics_address: Some(loopback_any_port()),
            },
            template_provider: TemplateProviderSettings {
                address: provider.into(),
                authority_public_key: Some(public_key()),
                reconnect_initial_ms: 100,
                reconnect_max_ms: 1_000,
            },
            quotes: pool::config::QuoteSettings {
                batch_interval_ms: options.batch_interval_ms,
                retry_interval_ms: options.retry_interval_ms,
            },
            mint_link_address: loopback_any_port(),
            // The test mint proves the SRI test key, like local runs.
            mint_public_key: public_key(),
            unit: "hash".into(),
            unit_work: hashpool_ehash::UnitWork::from_difficulty(options.unit_work)
                .map_err(|e| anyhow::anyhow!("unit work: {e}"))?,
            stats_reporting: options.stats_reporting.clone(),
            jd_server_public_key: options.jd_server_public_key,
            limits: options.limits,
            settlement: options.settlement.clone(),
        };
        let shutdown = CancellationToken::new();
        let running = pool::start(config, shutdown.clone()).await?;
        let pool = Self {
            running,
            monitoring,
            shutdown,
            ledger_path: options.ledger_path,
        };
        wait_until(
            Duration::from_secs(20),
            "pool monitoring API to answer",
            || async { pool.clients().await.is_ok() },
        )
        .await?;
        Ok(pool)
    }

    pub fn address(&self) -> SocketAddr {
        self.running.listen_address
    }

    pub async fn clients(&self) -> anyhow::Result<Sv2ClientsResponse> {
        let url = format!("http://{}/api/v1/clients", self.monitoring);
        Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
    }

    /// `/api/v1/global`: the totals over every connection.
    pub async fn global(&self) -> anyhow::Result<serde_json::Value> {
        let url = format!("http://{}/api/v1/global", self.monitoring);
        Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
    }

    /// Every client's channels, as the pool's monitoring API reports them.
    async fn channels(&self) -> anyhow::Result<Vec<Sv2ClientChannelsResponse>> {
        let mut out = Vec::new();
        for client in self.clients().await?.items {
            let url = format!(
                "http://{}/api/v1/clients/{}/channels",
                self.monitoring, client.client_id
            );
            out.push(reqwest::get(url).await?.error_for_status()?.json().await?);
        }
        Ok(out)
    }

    /// Every standard channel the pool serves, as its monitoring API reports them.
    pub async fn standard_channels(&self) -> anyhow::Result<Vec<StandardChannelInfo>> {
        Ok(self
            .channels()
            .await?
            .into_iter()
            .flat_map(|r| r.standard_channels)
            .collect())
    }

    /// Every extended channel the pool serves, as its monitoring API reports them.
    pub async fn extended_channels(&self) -> anyhow::Result<Vec<ExtendedChannelInfo>> {
        Ok(self
            .channels()
            .await?
            .into_iter()
            .flat_map(|r| r.extended_channels)
            .collect())
    }

    /// Until the pool has a job to give (its first template arrived).
    pub async fn wait_for_work(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_until(timeout, "the pool to have work", || async {
            self.running.jobs.has_work()
        })
        .await
    }

    /// Until `key` has less than a unit of work pending and the mint answered every batch: all
    /// of its work that can become ehash was quoted.
    /// Ehash issued to `key` so far: its batches' amounts (refused batches return their work).
    pub async fn issued(&self, key: &ext_mint_quote::LockingKey) -> anyhow::Result<u64> {
        Ok(self
            .running
            .ledger
            .batches_of(key)
            .await?
            .iter()
            .filter(|b| b.refused_code.is_none())
            .map(|b| b.amount)
            .sum())
    }

    pub async fn wait_until_settled(
        &self,
        key: &ext_mint_quote::LockingKey,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let ledger = &self.running.ledger;
        let unit = self.running.config.unit_work.work().hashes();
        wait_until(timeout, "the last batch answered", || async {
            let settled = ledger
                .accrual(key)
                .await
                .ok()
                .flatten()
                .is_some_and(|a| a.pending.hashes() < unit);
            settled && ledger.open_batches().await.is_ok_and(|b| b.is_empty())
        })
        .await
    }

    /// Accepted shares over every standard channel, from the monitoring API.
    pub async fn shares_accepted(&self) -> u64 {
        self.standard_channels()
            .await
            .map(|cs| cs.iter().map(|c| c.shares_accepted as u64).sum())
            .unwrap_or(0)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running.task)
            .await
            .context("pool did not stop")??;
        Ok(())
    }
}
