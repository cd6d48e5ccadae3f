//! Turns accrued work into quote requests: every batch interval, one request per locking key
//! with whole units of ehash pending; every retry interval (and whenever a mint connects), the
//! requests still unanswered go again with the same request id. The mint applies each id at
//! most once, so resending never pays twice and a mint outage never loses a batch.

use std::{sync::Arc, time::Duration};

use binary_sv2::{B0255Owned, U256Owned};
use ext_mint_quote::{MintQuoteMessage, MintQuoteRequestOwned};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::mint_link::MintLink;
use crate::{
    config::PoolRunConfig,
    ledger::{AccrualLedger, Batch},
};

pub async fn run(
    config: Arc<PoolRunConfig>,
    ledger: AccrualLedger,
    link: Arc<MintLink>,
    shutdown: CancellationToken,
) {
    let quotes = &config.quotes;
    let mut batch = tokio::time::interval(Duration::from_millis(quotes.batch_interval_ms.max(10)));
    let mut retry = tokio::time::interval(Duration::from_millis(quotes.retry_interval_ms.max(10)));
    batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = batch.tick() => {
                match ledger.create_batches().await {
                    Ok(created) => {
                        for b in &created {
                            debug!(amount = b.amount, shares = b.share_count, key = %b.locking_key, "batch created");
                            link.send(request(&config.unit, b)).await;
                        }
                    }
                    Err(e) => error!("cannot create quote batches: {e}"),
                }
            }
            _ = retry.tick() => resend_open(&config.unit, &ledger, &link).await,
            _ = link.up.notified() => resend_open(&config.unit, &ledger, &link).await,
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn resend_open(unit: &str, ledger: &AccrualLedger, link: &MintLink) {
    if !link.is_up().await {
        return;
    }
    match ledger.open_batches().await {
        Ok(open) => {
            if !open.is_empty() {
                info!(batches = open.len(), "sending unanswered quote requests");
            }
            for b in &open {
                if !link.send(request(unit, b)).await {
                    break;
                }
            }
        }
        Err(e) => error!("cannot read open batches: {e}"),
    }
}

pub(super) fn request(unit: &str, b: &Batch) -> MintQuoteMessage {
    MintQuoteMessage::Request(MintQuoteRequestOwned {
        request_id: U256Owned::from(b.request_id),
        locking_key: B0255Owned::new(b.locking_key.as_bytes().to_vec()).expect("33 bytes"),
        unit: hashpool_sv2_io::str0255(unit),
        amount: b.amount,
        share_count: b.share_count,
        share_commitment: U256Owned::from(b.share_commitment),
        epoch: b.epoch.unwrap_or(ext_mint_quote::NO_EPOCH),
    })
}
