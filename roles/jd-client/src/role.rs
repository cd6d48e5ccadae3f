//! The jd-client as its binary runs it, from its file: its wallet (whose key locks the pool
//! channel) with the wallet's API when configured, then the jd-client itself. `cli` and the
//! end-to-end tests start this same function.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use hashpool_wallet::{api::FaucetSettings, EhashWallet, WalletConfig};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{JdClientConfig, JdClientRunConfig},
    RunningJdClient,
};

/// Everything the role runs, as plain data.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub jd_client: JdClientRunConfig,
    pub wallet: WalletConfig,
    pub recovery_interval: Duration,
    /// The wallet's HTTP API, if served.
    pub api: Option<WalletApi>,
}

#[derive(Debug, Clone)]
pub struct WalletApi {
    pub address: SocketAddr,
    /// The spending routes' bearer token file (web-proxy reads the same file).
    pub token_path: PathBuf,
    pub faucet: FaucetSettings,
}

impl RoleConfig {
    pub fn new(own: &JdClientConfig) -> Result<Self, String> {
        let w = &own.wallet;
        Ok(Self {
            jd_client: JdClientRunConfig::new(own)?,
            wallet: WalletConfig {
                mint_url: w.mint_url.clone(),
                unit: w.unit.clone(),
                database_path: w.database_path.clone(),
                mnemonic: None,
                mnemonic_path: w.mnemonic_path.clone(),
            },
            recovery_interval: Duration::from_secs(w.recovery_interval_secs),
            api: w.api_address.map(|address| WalletApi {
                address,
                token_path: w
                    .api_token_path
                    .clone()
                    .unwrap_or_else(|| hashpool_wallet::api::default_token_path(&w.database_path)),
                faucet: FaucetSettings::from_config(w.faucet_amount, w.faucet_interval_secs),
            }),
        })
    }
}

/// What the role started.
pub struct RunningRole {
    pub jd_client: RunningJdClient,
    pub wallet: Arc<EhashWallet>,
    pub wallet_api: Option<SocketAddr>,
}

/// Opens the wallet, serves its API if configured, and starts the jd-client mining into the
/// wallet's key; everything stops on `shutdown` (join `jd_client.task`).
pub async fn start(config: RoleConfig, shutdown: CancellationToken) -> anyhow::Result<RunningRole> {
    let (wallet, minter) =
        hashpool_wallet::open_minting(&config.wallet, config.recovery_interval, shutdown.clone())
            .await
            .context("opening the wallet")?;
    let mut jd_client = config.jd_client;
    jd_client.locking_key = Some(wallet.sv2_locking_key());
    let mut wallet_api = None;
    if let Some(api) = &config.api {
        let token = hashpool_wallet::api::ApiToken::load_or_create(&api.token_path)
            .context("the wallet API token")?;
        let (address, _) = hashpool_wallet::api::serve(
            api.address,
            wallet.clone(),
            api.faucet.clone(),
            token,
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("binding the wallet API on {}", api.address))?;
        tracing::info!(api = %address, token = %api.token_path.display(), "wallet API");
        wallet_api = Some(address);
    }
    let running = crate::start(jd_client, Some(minter), shutdown).await?;
    Ok(RunningRole {
        jd_client: running,
        wallet,
        wallet_api,
    })
}
