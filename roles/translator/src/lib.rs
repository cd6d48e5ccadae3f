//! The translator: SV1 miners mine on the SV2 pool through one aggregated extended channel.
//! Each SV1 connection gets its own slice of the channel's extranonce space; every share is
//! checked against its job before it is forwarded, and a miner is told "accepted" only once
//! the pool has accepted that share.

pub mod cli;
pub mod config;
pub mod downstream;
pub mod upstream;
pub mod wallet_api;

use std::{net::SocketAddr, sync::Arc};

use stratum_apps::key_utils::Secp256k1PublicKey;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

pub use upstream::{UpstreamState, UpstreamWork};

#[derive(Debug, Clone)]
pub struct TranslatorRunConfig {
    pub downstream_address: SocketAddr,
    /// Pools in order of preference: the first that answers is used; after losing a pool the
    /// translator starts again from the first.
    pub upstreams: Vec<UpstreamEndpoint>,
    pub user_identity: String,
    pub nominal_hashrate: f32,
    /// Locking key sent with the channel (mint-quote TLV) when set.
    pub locking_key: Option<ext_mint_quote::LockingKey>,
    /// Mints the quotes the pool announces into the translator's wallet.
    pub minter: Option<hashpool_wallet::Minter>,
}

#[derive(Debug, Clone, Copy)]
pub struct UpstreamEndpoint {
    pub address: SocketAddr,
    /// The pool's Noise authority key, pinned.
    pub authority_public_key: Secp256k1PublicKey,
}

pub struct RunningTranslator {
    pub downstream_address: SocketAddr,
    pub work: watch::Receiver<Option<Arc<UpstreamWork>>>,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start(
    config: TranslatorRunConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningTranslator> {
    anyhow::ensure!(!config.upstreams.is_empty(), "no upstream pool configured");
    let listener = TcpListener::bind(config.downstream_address).await?;
    let downstream_address = listener.local_addr()?;
    let (work_tx, work) = watch::channel(None);
    let (shares_tx, shares_rx) = tokio::sync::mpsc::channel(16 * 1024);
    let up = tokio::spawn(upstream::run(
        config.clone(),
        work_tx,
        shares_rx,
        shutdown.clone(),
    ));
    let down = tokio::spawn(downstream::serve(
        listener,
        work.clone(),
        shares_tx,
        shutdown.clone(),
    ));
    let task = tokio::spawn(async move {
        let _ = up.await;
        let _ = down.await;
    });
    tracing::info!(%downstream_address, upstreams = config.upstreams.len(), "translator running");
    Ok(RunningTranslator {
        downstream_address,
        work,
        task,
    })
}
