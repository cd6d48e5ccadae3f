//! The miner's command line (the binary is a thin wrapper, so tests can run the same thing as a process).

use std::{net::SocketAddr, path::PathBuf};

use crate::MinerOptions;
use anyhow::Context;
use clap::Parser;
use stratum_apps::key_utils::Secp256k1PublicKey;
use tokio_util::sync::CancellationToken;

/// SV2 CPU miner (standard channel).
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Pool address.
    #[arg(long, default_value = "127.0.0.1:34254")]
    pool: SocketAddr,
    /// Pool authority public key to pin (base58check).
    #[arg(long)]
    pool_pubkey: Option<Secp256k1PublicKey>,
    /// User identity sent when opening the channel.
    #[arg(short, long, default_value = "hashpool-cpu-miner")]
    user_identity: String,
    /// Device id sent in SetupConnection.
    #[arg(long, default_value = "cpu-0")]
    device_id: String,
    /// Hashing threads.
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// Hashrate announced to the pool, in H/s.
    #[arg(long, default_value_t = 100_000.0)]
    nominal_hashrate: f32,
    /// Hash no faster than the nominal hashrate.
    #[arg(long)]
    limit_hashrate: bool,
    /// Key the channel's ehash is locked to (66 hex characters: a compressed public key),
    /// sent with the mint-quote extension.
    #[arg(long, value_parser = parse_locking_key)]
    locking_key: Option<ext_mint_quote::LockingKey>,
    /// Earn ehash into a wallet: the Cashu mint's URL (e.g. http://127.0.0.1:3338). The
    /// channel is locked to the wallet's key; announced quotes are minted at once.
    #[arg(long)]
    wallet_mint_url: Option<String>,
    /// Wallet database (SQLite).
    #[arg(long, default_value = ".hashpool/data/mining-device/wallet.sqlite")]
    wallet_db: PathBuf,
    /// Mnemonic file, created (mode 0600) if missing.
    #[arg(long, default_value = ".hashpool/data/mining-device/mnemonic")]
    wallet_mnemonic_file: PathBuf,
    /// ehash unit.
    #[arg(long, default_value = "hash")]
    wallet_unit: String,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
}

/// Runs the role as its binary does, until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let log = args.log.clone();
    hashpool_role::run("mining device", &log, |shutdown| start(args, shutdown)).await
}

async fn start(
    args: Args,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (mut locking_key, mut minter) = (args.locking_key, None);
    if let Some(mint_url) = args.wallet_mint_url {
        if locking_key.is_some() {
            anyhow::bail!(
                "--locking-key and --wallet-mint-url exclude each other: the wallet's key is used"
            );
        }
        let wallet = hashpool_wallet::EhashWallet::open(&hashpool_wallet::WalletConfig {
            mint_url,
            unit: args.wallet_unit,
            database_path: args.wallet_db,
            mnemonic: None,
            mnemonic_path: args.wallet_mnemonic_file,
        })
        .await
        .context("opening the wallet")?;
        locking_key = Some(wallet.sv2_locking_key());
        tracing::info!(locking_key = %wallet.locking_key().to_hex(), balance = wallet.balance().await.unwrap_or(0), "wallet open");
        minter = Some(hashpool_wallet::Minter::spawn(
            std::sync::Arc::new(wallet),
            std::time::Duration::from_secs(60),
            shutdown.clone(),
        ));
    }
    let miner = crate::start(
        MinerOptions {
            pool_address: args.pool,
            pool_authority_key: args.pool_pubkey,
            user_identity: args.user_identity,
            device_id: args.device_id,
            threads: args.threads,
            nominal_hashrate: args.nominal_hashrate,
            limit_hashrate: args.limit_hashrate,
            hash_pace: None,
            locking_key,
            minter,
        },
        shutdown,
    );
    Ok(miner.task)
}

fn parse_locking_key(s: &str) -> Result<ext_mint_quote::LockingKey, String> {
    ext_mint_quote::LockingKey::from_hex(s).map_err(|e| e.to_string())
}
