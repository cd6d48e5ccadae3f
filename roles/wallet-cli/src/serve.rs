//! `hashpool-wallet serve`: the wallet API (`hashpool_wallet::api`: balance, history, create
//! and receive tokens; no faucet) on the wallet's directory, so that web-proxy shows the
//! miner's own wallet at home, and a claim of new quotes every `--claim-every` seconds. The
//! spending routes need the bearer token in `<dir>/wallet-api-token` (created 0600 on the first
//! start; web-proxy's `wallet_api.token_path` names it). The directory stays locked while it
//! runs: `claim`, `send` and `receive` from another process are refused meanwhile.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use hashpool_wallet::{
    api::{self, ApiToken},
    EhashWallet,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::lock::DirLock;

/// `serve`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Where the wallet API listens. Keep it on loopback: its spending routes need the token,
    /// but anyone who can reach it sees the balance and history.
    #[arg(long, default_value = "127.0.0.1:8083")]
    pub listen: SocketAddr,
    /// Claims new quotes at the start and then every SECS seconds; 0: never (stop `serve` to
    /// run `claim`).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub claim_every: u64,
    /// Also log to this file (rotated daily).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// A wallet being served.
#[derive(Debug)]
pub struct Served {
    /// Where the API listens (the port is the bound one when `--listen` named port 0).
    pub address: SocketAddr,
    /// The spending routes' bearer token file.
    pub token_path: PathBuf,
    /// The key the wallet's quotes are locked to.
    pub public_key: String,
    /// Ends once the API and the claims have stopped after `shutdown`; the directory's lock is
    /// released then.
    pub task: JoinHandle<()>,
}

/// Serves the wallet of `dir` (on `mint`, or the one remembered) until `shutdown`.
pub async fn serve(
    dir: &Path,
    mint: Option<&str>,
    args: &ServeArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<Served> {
    let pid = std::process::id();
    let lock = DirLock::acquire(dir, &format!("`hashpool-wallet serve` (pid {pid})"))?;
    let wallet = Arc::new(crate::open(dir, mint).await?);
    let token_path = api::default_token_path(&crate::database_path(dir));
    let token = ApiToken::load_or_create(&token_path)?;
    // No faucet: this is the miner's own money.
    let (address, api_task) =
        api::serve(args.listen, wallet.clone(), None, token, shutdown.clone())
            .await
            .with_context(|| format!("wallet API: listening on {}", args.listen))?;
    lock.describe(&format!(
        "`hashpool-wallet serve` (pid {pid}, wallet API on {address})"
    ))
    .context("writing the wallet's lock file")?;
    let claims = (args.claim_every > 0).then(|| {
        tokio::spawn(claim_periodically(
            wallet.clone(),
            Duration::from_secs(args.claim_every),
            shutdown.clone(),
        ))
    });
    tracing::info!(
        %address,
        token_path = %token_path.display(),
        claim_every_secs = args.claim_every,
        locking_key = %wallet.locking_key().to_hex(),
        "wallet API serving"
    );
    let task = tokio::spawn(async move {
        // Held until the API and the claims have stopped.
        let _lock = lock;
        if let Err(e) = api_task.await {
            tracing::error!("wallet API task: {e}");
        }
        if let Some(claims) = claims {
            if let Err(e) = claims.await {
                tracing::error!("claim task: {e}");
            }
        }
    });
    Ok(Served {
        address,
        token_path,
        public_key: wallet.locking_key().to_hex(),
        task,
    })
}

/// `claim` now and every `interval` until `shutdown`. A claim that fails (the mint is
/// unreachable) is logged and tried again at the next interval: the quotes wait at the mint.
async fn claim_periodically(
    wallet: Arc<EhashWallet>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let claim = wallet.recover_with_progress(|quote, amount| {
            tracing::info!(quote, amount, "minted quote");
        });
        tokio::select! {
            result = claim => match result {
                Ok(0) => tracing::debug!("claim: nothing new"),
                Ok(claimed) => tracing::info!(claimed, "claimed new quotes"),
                Err(e) => tracing::warn!(
                    retry_in_secs = interval.as_secs(),
                    "claim failed, trying again later (the quotes wait at the mint): {e}"
                ),
            },
            _ = shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
