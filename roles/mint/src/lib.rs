//! Hashpool's Cashu mint: unit `hash`, quotes created paid and NUT-20 locked when the pool asks
//! over the mint link, the standard Cashu HTTP API for wallets, and a signed lookup of the
//! quotes locked to a key.

pub mod cashu_error;
pub mod cli;
pub mod config;
pub mod db;
pub mod epoch_http;
pub mod epochs;
pub mod http;
pub mod info;
pub mod issuer;
pub mod liabilities;
pub mod metrics;
pub mod migrate;
pub mod nonces;
pub mod pool_link;
pub mod processor;
pub mod quote_index;
pub mod redeem;
pub mod routes;
pub mod sqlite_memory;
pub mod withdraw;
pub mod ws;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use cdk::{
    mint::{MintBuilder, MintMeltLimits, UnitConfig},
    nuts::{CurrencyUnit, PaymentMethod},
};
use cdk_sqlite::MintSqliteDatabase;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{MintConfig, MintRunConfig};
pub use issuer::{IssueError, Issued, Issuer};
pub use processor::EHASH_METHOD;

/// Quotes one NUT-29 batch mint takes at most: 15 quotes of at most 64 outputs each stay under
/// CDK's 1,000 outputs per request.
pub const MAX_BATCH_QUOTES: usize = 15;

/// Powers of two from 1 to 2^63: any u64 amount in at most 64 proofs.
pub fn ehash_amounts() -> Vec<u64> {
    (0..64).map(|i| 1u64 << i).collect()
}

pub struct RunningMint {
    pub http_address: SocketAddr,
    /// Where `/metrics` is served (`mint.monitoring_address`).
    pub monitoring_address: SocketAddr,
    /// The URL quote lookups are signed for (`mint.public_url`, or `http://` + `http_address`).
    pub public_url: String,
    pub mint: Arc<cdk::Mint>,
    pub issuer: Arc<Issuer>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Opens the database, builds the mint, binds the HTTP API and starts the pool link.
pub async fn start(
    config: MintRunConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningMint> {
    let seed_hex = hashpool_config::secret_file::load_or_create(&config.seed_path, || {
        hex::encode(rand::random::<[u8; 32]>()) + &hex::encode(rand::random::<[u8; 32]>())
    })?;
    let seed = hex::decode(&seed_hex)
        .ok()
        .filter(|s| s.len() == 64)
        .with_context(|| format!("{}: not a 64-byte hex seed", config.seed_path.display()))?;
    if let Some(dir) = config
        .database_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && config.database_url.is_none())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // The same database behind both of CDK's interfaces: quotes and proofs, and keysets.
    let (db, keys_db): (issuer::MintDb, epochs::KeysDb) = match &config.database_url {
        Some(url) => {
            let pg = Arc::new(
                cdk_postgres::MintPgDatabase::new(url.as_str())
                    .await
                    .with_context(|| {
                        format!(
                            "opening the PostgreSQL database {}",
                            hashpool_config::database_url::redact(url)
                        )
                    })?,
            );
            (pg.clone(), pg)
        }
        None => {
            // Process-wide: the mint is the only SQLite user in its process.
            sqlite_memory::set_limit(config.sqlite_memory_limit);
            let sqlite = Arc::new(
                MintSqliteDatabase::new(config.database_path.clone())
                    .await
                    .with_context(|| format!("opening {}", config.database_path.display()))?,
            );
            (sqlite.clone(), sqlite)
        }
    };

    let unit = CurrencyUnit::custom(&config.unit);
    let method = PaymentMethod::Custom(EHASH_METHOD.into());
    // Only the mint itself knows this, so only it can create ehash quotes.
    let authorization = hex::encode(rand::random::<[u8; 32]>());
    let processor = Arc::new(processor::EhashProcessor::new(
        unit.clone(),
        authorization.clone(),
    ));

    // NUT-17: ehash mint quotes and proof states; no melt quotes (a redemption's wallet waits
    // on its HTTP answer).
    let mut builder = MintBuilder::new(db.clone())
        .with_supported_websockets(info::websocket_kinds(method.clone(), unit.clone()))
        // NUT-29 batch minting of ehash quotes (`cdk-cli mint-batch`).
        .with_batch_minting(
            Some(MAX_BATCH_QUOTES as u64),
            Some(vec![EHASH_METHOD.to_string()]),
        );
    builder.configure_unit(
        unit.clone(),
        UnitConfig {
            amounts: ehash_amounts(),
            input_fee_ppk: 0,
        },
    )?;
    builder
        .add_payment_processor(
            unit.clone(),
            method,
            MintMeltLimits::new(1, u64::MAX),
            processor,
        )
        .await?;
    let mut units = vec![(unit.clone(), (0, ehash_amounts()))];
    // Withdrawals' records, when withdrawals are on (served as a list below).
    let mut withdrawals = None;
    // Redemption: melts of final epochs' ehash (unit hash) pay sat quotes (redeem.rs).
    let redemption = match &config.redeem {
        Some(redeem) => {
            let redemption = redeem::Redemption::new(
                redeem.clone(),
                db.clone(),
                unit.clone(),
                authorization.clone(),
            );
            let method = PaymentMethod::Custom(ext_mint_quote::REDEEM_METHOD.into());
            builder.configure_unit(
                CurrencyUnit::Sat,
                UnitConfig {
                    amounts: ehash_amounts(),
                    input_fee_ppk: 0,
                },
            )?;
            builder
                .add_payment_processor(
                    unit.clone(),
                    method.clone(),
                    MintMeltLimits::new(1, u64::MAX),
                    Arc::new(redeem::MeltSide(redemption.clone())),
                )
                .await?;
            builder
                .add_payment_processor(
                    CurrencyUnit::Sat,
                    method,
                    MintMeltLimits::new(1, u64::MAX),
                    Arc::new(redeem::SatSide::new(redemption.clone())),
                )
                .await?;
            units.push((CurrencyUnit::Sat, (0, ehash_amounts())));
            // Withdrawals: melts of sats, recorded for the pool's coinbases (withdraw.rs).
            if let Some(withdraw) = &config.withdraw {
                let records = withdraw::Withdrawals::new(withdraw.clone(), db.clone());
                withdrawals = Some(records.clone());
                builder
                    .add_payment_processor(
                        CurrencyUnit::Sat,
                        PaymentMethod::Custom(ext_mint_quote::WITHDRAW_METHOD.into()),
                        MintMeltLimits::new(withdraw.min_sats, withdraw.max_sats),
                        Arc::new(withdraw::WithdrawSide(records)),
                    )
                    .await?;
                info!(
                    network = %withdraw.network,
                    min_sats = withdraw.min_sats,
                    "withdrawals in the pool's coinbases on"
                );
            }
            info!(rates = %redeem.rates_url, "redemption of final epochs' ehash on");
            Some(redemption)
        }
        None => None,
    };
    // Mint info stored by an earlier run would win over the builder's: ours is set below,
    // once the public URL is known.
    let base_info = builder.current_mint_info();
    // CDK's signatory for the units above, with one `hash` keyset per settlement epoch beside
    // it (epochs.rs).
    let epochs =
        epochs::EpochSignatory::open(keys_db, &seed, units.into_iter().collect(), unit.clone())
            .await?;
    let mint = Arc::new(builder.build_with_signatory(epochs.clone()).await?);
    if let Some(redemption) = &redemption {
        redemption.set_mint(mint.clone());
    }
    mint.start().await?;

    let issuer = Arc::new(Issuer::new(
        mint.clone(),
        db.clone(),
        unit,
        authorization,
        epochs.clone(),
    ));
    let listener = TcpListener::bind(config.http_address)
        .await
        .with_context(|| format!("binding the HTTP API on {}", config.http_address))?;
    let http_address = listener.local_addr()?;
    let public_url = crate::info::normalized_url(
        &config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{http_address}")),
    )
    .map_err(anyhow::Error::msg)?;
    if info::is_placeholder_url(&public_url) {
        tracing::warn!(
            %public_url,
            "`mint.public_url` is still a placeholder: set it to the URL wallets reach this mint \
             by (docs/mint.md)"
        );
    }
    // `/v1/info` tells the truth: the configured fields, no melt but redemption's, no melt
    // subscriptions.
    mint.set_mint_info(config.info.apply(
        base_info,
        &public_url,
        redemption.is_some(),
        config.withdraw.is_some(),
    )?)
    .await?;
    // Lookups may be signed for any URL this mint is known by.
    let mut urls = vec![public_url.clone()];
    for url in config.other_urls.iter().chain(&config.info.urls) {
        let url = crate::info::normalized_url(url).map_err(anyhow::Error::msg)?;
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    let router = http::router(
        mint.clone(),
        db.clone(),
        issuer.stats().clone(),
        epochs.clone(),
        http::LookupSettings {
            urls,
            nonce_capacity: config.lookup_nonce_capacity,
        },
        http::SettlementRoutes {
            redemption: redemption.clone(),
            withdrawals: withdrawals.map(|records| withdraw::ListState {
                withdrawals: records,
                secret_key: config.secret_key.into_bytes(),
                built: Arc::default(),
            }),
            liabilities: liabilities::LiabilitiesState {
                db: db.clone(),
                epochs: epochs.clone(),
                secret_key: config.secret_key.into_bytes(),
                building: Arc::default(),
            },
        },
    )
    .await?;
    let monitoring = TcpListener::bind(config.monitoring_address)
        .await
        .with_context(|| format!("binding /metrics on {}", config.monitoring_address))?;
    let monitoring_address = monitoring.local_addr()?;
    let metrics = metrics::serve(monitoring, issuer.stats().clone(), shutdown.clone())?;
    info!(
        %http_address,
        %public_url,
        %monitoring_address,
        pool = %config.pool_address,
        "mint running"
    );

    let mint_handle = mint.clone();
    let link = tokio::spawn(pool_link::run(config, issuer.clone(), shutdown.clone()));
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!("HTTP server: {e}");
        }
        let _ = link.await;
        let _ = metrics.await;
        if let Err(e) = mint.stop().await {
            tracing::warn!("stopping the mint: {e}");
        }
    });
    Ok(RunningMint {
        http_address,
        monitoring_address,
        public_url,
        mint: mint_handle,
        issuer,
        task,
    })
}
