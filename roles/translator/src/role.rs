//! The translator as its binary runs it, from its two files: the wallet (when enabled) with its
//! API, the translation itself, stats reporting and the monitoring endpoint. `cli` and the
//! end-to-end tests start this same function.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use hashpool_config::ProxyGlobalConfig;
use hashpool_wallet::{api::FaucetSettings, EhashWallet, WalletConfig};
use tokio_util::sync::CancellationToken;

use crate::{
    config::TranslatorConfig, stats_report::StatsReporting, RunningTranslator, Sv1Limits,
    TranslatorRunConfig,
};

/// Everything the role runs, as plain data.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub translator: TranslatorRunConfig,
    pub limits: Sv1Limits,
    pub wallet: Option<RoleWallet>,
    pub stats: Option<StatsReporting>,
    pub monitoring_address: SocketAddr,
}

/// The translator's own wallet: where it keeps its ehash and serves its API.
#[derive(Debug, Clone)]
pub struct RoleWallet {
    pub wallet: WalletConfig,
    pub recovery_interval: Duration,
    pub api_address: SocketAddr,
    /// The API's bearer token file (web-proxy reads the same file).
    pub api_token_path: PathBuf,
    pub faucet: FaucetSettings,
}

impl RoleConfig {
    /// From the role's file and the miner-side topology; every value checked.
    pub fn new(global: &ProxyGlobalConfig, own: &TranslatorConfig) -> Result<Self, String> {
        let wallet = own.wallet.enabled.then(|| RoleWallet {
            wallet: WalletConfig {
                mint_url: global.wallet.mint_url.clone(),
                unit: own.wallet.unit.clone(),
                database_path: own.wallet.database_path.clone(),
                mnemonic: None,
                mnemonic_path: own.wallet.mnemonic_path.clone(),
            },
            recovery_interval: Duration::from_secs(own.wallet.recovery_interval_secs),
            api_address: global.wallet.api_address,
            api_token_path: own.wallet.api_token_path.clone().unwrap_or_else(|| {
                hashpool_wallet::api::default_token_path(&own.wallet.database_path)
            }),
            faucet: FaucetSettings::from_config(
                own.wallet.faucet_amount,
                own.wallet.faucet_interval_secs,
            ),
        });
        Ok(Self {
            translator: own.run_config(global)?,
            limits: own.sv1_limits(),
            wallet,
            stats: own.stats_reporting(global),
            monitoring_address: global.translator.monitoring_address,
        })
    }
}

/// What the role started.
pub struct RunningRole {
    pub translator: RunningTranslator,
    pub wallet: Option<Arc<EhashWallet>>,
    pub wallet_api: Option<SocketAddr>,
    pub monitoring: SocketAddr,
}

/// Starts the role; everything stops on `shutdown` (join `translator.task`).
pub async fn start(config: RoleConfig, shutdown: CancellationToken) -> anyhow::Result<RunningRole> {
    let mut translator = config.translator;
    let (mut wallet, mut minter, mut wallet_api) = (None, None, None);
    if let Some(w) = &config.wallet {
        let (opened, minting) =
            hashpool_wallet::open_minting(&w.wallet, w.recovery_interval, shutdown.clone())
                .await
                .context("opening the wallet")?;
        translator.locking_key = Some(opened.sv2_locking_key());
        let token = hashpool_wallet::api::ApiToken::load_or_create(&w.api_token_path)
            .context("the wallet API token")?;
        let (api, _) = hashpool_wallet::api::serve(
            w.api_address,
            opened.clone(),
            w.faucet.clone(),
            token,
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("binding the wallet API on {}", w.api_address))?;
        tracing::info!(%api, token = %w.api_token_path.display(), "wallet API");
        (wallet, minter, wallet_api) = (Some(opened), Some(minting), Some(api));
    }
    tracing::info!(
        min_share_difficulty = config.limits.min_share_difficulty,
        max_shares_per_job = config.limits.max_shares_per_job,
        "SV1 limits"
    );
    let mode = translator.channel_mode;
    let running =
        crate::start_with_limits(translator, config.limits, minter.clone(), shutdown.clone())
            .await?;
    if let Some(reporting) = config.stats {
        tracing::info!(stats = %reporting.reporter.address, "reporting to the stats service");
        crate::stats_report::spawn(
            running.stats.clone(),
            wallet.clone(),
            reporting,
            shutdown.clone(),
        );
    }
    let monitoring = crate::monitoring::serve(
        config.monitoring_address,
        running.stats.clone(),
        minter,
        mode,
        shutdown,
    )
    .await
    .with_context(|| {
        format!(
            "binding the monitoring endpoint on {}",
            config.monitoring_address
        )
    })?;
    tracing::info!(%monitoring, "monitoring: /metrics, /api/v1/status");
    Ok(RunningRole {
        translator: running,
        wallet,
        wallet_api,
        monitoring,
    })
}
