//! The jd-client's command line (the binary is a thin wrapper).

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::{JdClientConfig, JdClientRunConfig};

/// Hashpool job declarator client: its own templates mined on the pool, ehash into its wallet.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/jd-client.config.toml")]
    config: PathBuf,
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    log_file: Option<PathBuf>,
}

/// Runs the jd-client until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _log = hashpool_logging::init(args.log_file.as_deref())?;
    let own: JdClientConfig = hashpool_config::load(&args.config)?;
    let mut config = JdClientRunConfig::new(&own).map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    let (wallet, minter) = hashpool_wallet::open_minting(
        &hashpool_wallet::WalletConfig {
            mint_url: own.wallet.mint_url.clone(),
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
    config.minter = Some(minter);
    if let Some(address) = own.wallet.api_address {
        // The spending routes' bearer token, beside the wallet (web-proxy reads it there).
        let token_path =
            own.wallet.api_token_path.clone().unwrap_or_else(|| {
                hashpool_wallet::api::default_token_path(&own.wallet.database_path)
            });
        let token = hashpool_wallet::api::ApiToken::load_or_create(&token_path)
            .context("the wallet API token")?;
        let (api, _) = hashpool_wallet::api::serve(
            address,
            wallet,
            hashpool_wallet::api::FaucetSettings::from_config(
                own.wallet.faucet_amount,
                own.wallet.faucet_interval_secs,
            ),
            token,
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("binding the wallet API on {address}"))?;
        tracing::info!(%api, token = %token_path.display(), "wallet API");
    }
    let running = crate::start(config, shutdown.clone())
        .await
        .context("starting the jd-client")?;
    hashpool_sv2_io::shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    running.task.await.context("jd-client tasks")?;
    Ok(())
}
