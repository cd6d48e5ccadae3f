//! Embedded regtest chain served over SV2 Template Distribution (Noise): the default template
//! source for local runs and tests. Production uses Bitcoin Core + sv2-tp over the same
//! protocol; nothing in the pool depends on this provider.

pub mod chain;
pub mod config;
pub mod http;
pub mod mempool;
pub mod rpc;
pub mod server;
pub mod state;
pub mod template;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use bitcoin::Amount;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::TemplateProviderConfig;
use state::{ChainEvent, Shared};

/// A running provider: its bound addresses, and the handle that ends when it has stopped.
pub struct RunningProvider {
    pub listen_address: SocketAddr,
    pub http_address: SocketAddr,
    pub shared: Shared,
    pub task: JoinHandle<()>,
}

/// Opens the chain, binds both listeners and starts serving until `shutdown`.
pub async fn start(
    config: TemplateProviderConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningProvider> {
    let chain = chain::Chain::open(&config.chain.data_dir, config.chain.nbits)
        .with_context(|| format!("opening the chain in {}", config.chain.data_dir.display()))?;
    info!(height = chain.height(), tip = %chain.tip(), "chain opened");
    let shared = Shared::new(chain);

    let listener = TcpListener::bind(config.template_provider.listen_address)
        .await
        .with_context(|| format!("binding {}", config.template_provider.listen_address))?;
    let http_listener = TcpListener::bind(config.template_provider.http_address)
        .await
        .with_context(|| format!("binding {}", config.template_provider.http_address))?;
    let listen_address = listener.local_addr()?;
    let http_address = http_listener.local_addr()?;
    info!(%listen_address, %http_address, "template provider listening");

    let identity = server::Identity {
        public: config.template_provider.authority_public_key,
        secret: config.template_provider.authority_secret_key,
        cert_validity_secs: config.template_provider.cert_validity_secs,
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server::serve(
        listener,
        shared.clone(),
        identity,
        shutdown.clone(),
    ));
    let router = http::router(shared.clone());
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let serve = axum::serve(http_listener, router)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::warn!("status API stopped: {e}");
        }
    });
    if config.mempool.synthetic_tx_interval_ms > 0 {
        tasks.spawn(synthetic_mempool(
            shared.clone(),
            config.mempool.clone(),
            shutdown.clone(),
        ));
    }
    let task = tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
    Ok(RunningProvider {
        listen_address,
        http_address,
        shared,
        task,
    })
}

async fn synthetic_mempool(
    shared: Shared,
    config: config::MempoolConfig,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(config.synthetic_tx_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let added = {
            let mut st = shared.lock();
            if st.mempool.len() >= config.max_transactions {
                false
            } else {
                let fee = Amount::from_sat(config.synthetic_tx_fee_sats);
                let tx = st.mempool.synthetic();
                st.mempool.add(tx, fee)
            }
        };
        if added {
            shared.notify(ChainEvent::MempoolChanged);
        }
    }
}
