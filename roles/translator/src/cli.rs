//! The translator's command line (the binary is a thin wrapper).

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use hashpool_config::ProxyGlobalConfig;
use tokio_util::sync::CancellationToken;

use crate::config::TranslatorConfig;

/// Hashpool translator: SV1 miners on the SV2 pool, earning ehash into the translator's wallet.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/translator.config.toml")]
    config: PathBuf,
    /// Shared miner-side topology (TOML).
    #[arg(short, long, default_value = "config/shared/proxy.toml")]
    global_config: PathBuf,
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    log_file: Option<PathBuf>,
}

/// Runs the translator until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _log = hashpool_logging::init(args.log_file.as_deref())?;
    let global: ProxyGlobalConfig = hashpool_config::load(&args.global_config)?;
    let own: TranslatorConfig = hashpool_config::load(&args.config)?;
    let mut config = own.run_config(&global).map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    let mut wallet_for_stats = None;
    if own.wallet.enabled {
        let (wallet, minter) = hashpool_wallet::open_minting(
            &hashpool_wallet::WalletConfig {
                mint_url: global.wallet.mint_url.clone(),
                unit: own.wallet.unit.clone(),
                database_path: own.wallet.database_path.clone(),
                mnemonic: None,
                mnemonic_path: own.wallet.mnemonic_path.clone(),
            },
            Duration::from_secs(own.wallet.recovery_interval_secs),
            shutdown.clone(),
        )
        .await
        .context("opening the wallet")?;
        config.locking_key = Some(wallet.sv2_locking_key());
        wallet_for_stats = Some(wallet.clone());
        config.minter = Some(minter);
        // The spending routes' bearer token, beside the wallet (web-proxy reads it there).
        let token_path =
            own.wallet.api_token_path.clone().unwrap_or_else(|| {
                crate::wallet_api::default_token_path(&own.wallet.database_path)
            });
        let token = crate::wallet_api::ApiToken::load_or_create(&token_path)
            .context("the wallet API token")?;
        let (api, _) = crate::wallet_api::serve(
            global.wallet.api_address,
            wallet,
            crate::wallet_api::FaucetSettings::from_config(
                own.wallet.faucet_amount,
                own.wallet.faucet_interval_secs,
            ),
            token,
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("binding the wallet API on {}", global.wallet.api_address))?;
        tracing::info!(%api, token = %token_path.display(), "wallet API");
    }
    let (minter, mode) = (config.minter.clone(), config.channel_mode);
    let limits = own.sv1_limits();
    tracing::info!(
        min_share_difficulty = limits.min_share_difficulty,
        max_shares_per_job = limits.max_shares_per_job,
        "SV1 limits"
    );
    let running = crate::start_with_limits(config, limits, shutdown.clone())
        .await
        .context("starting the translator")?;
    if let Some(reporting) = own.stats_reporting(&global) {
        tracing::info!(stats = %reporting.reporter.address, "reporting to the stats service");
        crate::stats_report::spawn(
            running.stats.clone(),
            wallet_for_stats,
            reporting,
            shutdown.clone(),
        );
    }
    let monitoring = global.translator.monitoring_address;
    let monitoring = crate::monitoring::serve(
        monitoring,
        running.stats.clone(),
        minter,
        mode,
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("binding the monitoring endpoint on {monitoring}"))?;
    tracing::info!(%monitoring, "monitoring: /metrics, /api/v1/status");
    hashpool_sv2_io::shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    running.task.await.context("translator tasks")?;
    Ok(())
}
