//! Quotes recorded by other pool instances on the same PostgreSQL ledger. The instance that
//! records the mint's answer announces the quote to the key's channels it holds itself; the
//! key's miner may be connected to another instance (it moved, or has rigs on both). Each
//! recorded quote is therefore also published with `pg_notify` on [`CHANNEL`], and every
//! instance listens and announces to its own channels of the key. A notification carries the
//! recording instance's token (it skips its own) and the batch id; the batch is read back from
//! the ledger. Notifications sent while an instance's listener reconnects are not replayed:
//! announcements are a convenience for wallets, what is owed is in the ledger and at the mint.

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{
    batches::batch_by_id,
    error::LedgerError,
    store::{Backend, Db},
    Batch,
};

/// The PostgreSQL notification channel of recorded quotes.
const CHANNEL: &str = "hashpool_quotes";

/// Publishes a quote this instance recorded to the others (PostgreSQL; nothing on SQLite). The
/// quote is recorded already: a lost notification only costs other instances' miners an
/// announcement.
pub(super) async fn publish(db: &Db, batch: &Batch) {
    if db.backend != Backend::Postgres {
        return;
    }
    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload(db.instance, batch.id))
        .execute(&db.pool)
        .await
    {
        warn!(
            batch = batch.id,
            "publishing a quote to the other instances: {e}"
        );
    }
}

/// The payload of one recorded quote's notification.
fn payload(instance: u64, batch_id: i64) -> String {
    format!("{instance:016x}:{batch_id}")
}

/// Another instance's notification: its batch id (`None`: this instance's own, or not ours).
fn parse(payload: &str, instance: u64) -> Option<i64> {
    let (from, id) = payload.split_once(':')?;
    let from = u64::from_str_radix(from, 16).ok()?;
    (from != instance).then(|| id.parse().ok()).flatten()
}

/// A listener on the ledger's database for recorded quotes.
pub(super) async fn listen(url: &str) -> Result<PgListener, LedgerError> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Sends each batch another instance answered, until `out` is closed.
pub(super) async fn follow(
    mut listener: PgListener,
    db: sqlx::AnyPool,
    instance: u64,
    out: mpsc::Sender<Batch>,
) {
    loop {
        // `recv` reconnects after a lost connection (what was sent meanwhile is lost).
        let notification = match listener.recv().await {
            Ok(n) => n,
            Err(e) => {
                warn!("quote notifications: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(id) = parse(notification.payload(), instance) else {
            continue;
        };
        match batch_by_id(&db, id).await {
            Ok(Some(batch)) if batch.quote_id.is_some() => {
                debug!(batch = id, "a quote recorded by another pool instance");
                if out.send(batch).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => warn!(batch = id, "reading another instance's quote: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_skips_its_own_notifications_and_malformed_ones() {
        assert_eq!(parse(&payload(7, 42), 8), Some(42));
        assert_eq!(parse(&payload(7, 42), 7), None);
        assert_eq!(parse("zz:1", 7), None);
        assert_eq!(parse("0000000000000008:x", 7), None);
        assert_eq!(parse("no colon", 7), None);
    }
}
