//! Turns accrued work into quote requests: every batch interval, one request per locking key
//! with whole units of ehash pending; every retry interval (and whenever a mint connects), the
//! requests still unanswered go again with the same request id. The mint applies each id at
//! most once, so resending never pays twice and a mint outage never loses a batch.

use std::{sync::Arc, time::Duration};

use binary_sv2::{B0255Owned, U256Owned};
use ext_mint_quote::{MintQuoteMessage, MintQuoteRequestOwned, QuoteAnnouncementOwned};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::{context::PoolContext, ledger::Batch, mint_link::MintLink};

pub async fn run(ctx: Arc<PoolContext>, link: Arc<MintLink>, shutdown: CancellationToken) {
    let quotes = &ctx.config.quotes;
    let mut batch = tokio::time::interval(Duration::from_millis(quotes.batch_interval_ms.max(10)));
    let mut retry = tokio::time::interval(Duration::from_millis(quotes.retry_interval_ms.max(10)));
    batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = batch.tick() => {
                match ctx.shares.ledger().create_batches().await {
                    Ok(created) => {
                        for b in &created {
                            debug!(amount = b.amount, shares = b.share_count, key = %b.locking_key, "batch created");
                            link.send(request(&ctx, b)).await;
                        }
                    }
                    Err(e) => error!("cannot create quote batches: {e}"),
                }
            }
            _ = retry.tick() => resend_open(&ctx, &link).await,
            _ = link.up.notified() => resend_open(&ctx, &link).await,
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn resend_open(ctx: &PoolContext, link: &MintLink) {
    if !link.is_up().await {
        return;
    }
    match ctx.shares.ledger().open_batches().await {
        Ok(open) => {
            if !open.is_empty() {
                info!(batches = open.len(), "sending unanswered quote requests");
            }
            for b in &open {
                if !link.send(request(ctx, b)).await {
                    break;
                }
            }
        }
        Err(e) => error!("cannot read open batches: {e}"),
    }
}

fn request(ctx: &PoolContext, b: &Batch) -> MintQuoteMessage {
    MintQuoteMessage::Request(MintQuoteRequestOwned {
        request_id: U256Owned::from(b.request_id),
        locking_key: B0255Owned::new(b.locking_key.as_bytes().to_vec()).expect("33 bytes"),
        unit: hashpool_sv2_io::str0255(&ctx.config.unit),
        amount: b.amount,
        share_count: b.share_count,
        share_commitment: U256Owned::from(b.share_commitment),
    })
}

/// Tells every connection with a channel locked to the batch's key (and the extension
/// negotiated) that its quote is ready. Offline wallets find it through the mint instead.
pub fn announce(ctx: &PoolContext, batch: &Batch, quote_id: &str) {
    for set in ctx.registry.connections() {
        let set = set.lock().unwrap_or_else(|p| p.into_inner());
        let Some(announcer) = &set.announcer else {
            continue;
        };
        let Some(channel_id) = set
            .channels
            .iter()
            .find(|(_, e)| e.locking_key == batch.locking_key)
            .map(|(id, _)| *id)
        else {
            continue;
        };
        let message = MintQuoteMessage::Announcement(QuoteAnnouncementOwned {
            channel_id,
            quote_id: hashpool_sv2_io::str0255(quote_id),
            amount: batch.amount,
            locking_key: B0255Owned::new(batch.locking_key.as_bytes().to_vec()).expect("33 bytes"),
        });
        let _ = announcer.send(message);
    }
}
