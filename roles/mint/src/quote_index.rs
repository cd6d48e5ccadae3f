//! The locking key -> quotes index that the wallets' signed lookup reads, kept in CDK's
//! key-value store in hourly buckets, so that a lookup reads the buckets from its cursor on
//! instead of every quote the key ever had (a key paid every 10 s has 8,640 quotes a day).
//!
//! - `hashpool_quote_hours` / `<key hex>` / `<hour:010>`: the hours in which the key has quotes.
//! - `hashpool_quotes_by_key` / `<key hex>-<hour:010>` / `<created:012>-<quote id>`: the quotes
//!   of one hour, in creation order. The entry's key is the lookup's cursor.
//!
//! Before the buckets, every quote of a key was one namespace `hashpool_quotes_by_key` /
//! `<key hex>`; a lookup moves what it finds there into the buckets first.

use cdk::nuts::PublicKey;
use cdk_common::database::Error as DbError;

use crate::db::MintDb;

/// KV namespace of the quotes, bucketed by the hour of their creation.
pub const INDEX_NAMESPACE: &str = "hashpool_quotes_by_key";
/// KV namespace of the hours in which a key has quotes.
pub const HOURS_NAMESPACE: &str = "hashpool_quote_hours";

const BUCKET_SECS: u64 = 3600;

/// Sorts by creation time; the quote id follows the first `-`.
pub fn index_key(created_time: u64, quote_id: &str) -> String {
    format!("{created_time:012}-{quote_id}")
}

pub fn quote_id_of_index_key(key: &str) -> Option<(u64, &str)> {
    let (time, id) = key.split_once('-')?;
    Some((time.parse().ok()?, id))
}

fn hour_key(created_time: u64) -> String {
    format!("{:010}", created_time / BUCKET_SECS)
}

fn bucket_namespace(pubkey: &str, hour: &str) -> String {
    format!("{pubkey}-{hour}")
}

/// Records `quote_id` under its key (idempotent: both writes are upserts).
pub async fn record(
    db: &MintDb,
    pubkey: &PublicKey,
    created_time: u64,
    quote_id: &str,
) -> Result<(), DbError> {
    let pubkey = pubkey.to_hex();
    let hour = hour_key(created_time);
    let mut tx = db.begin_transaction().await?;
    tx.kv_write(HOURS_NAMESPACE, &pubkey, &hour, &[]).await?;
    tx.kv_write(
        INDEX_NAMESPACE,
        &bucket_namespace(&pubkey, &hour),
        &index_key(created_time, quote_id),
        &[],
    )
    .await?;
    tx.commit().await
}

/// A page of a key's index entries after the cursor `after`.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// Index keys (`<created:012>-<quote id>`) in creation order, at most the page's size.
    pub keys: Vec<String>,
    /// Where the next page starts, when there are more entries than the page held.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("`after` is not a cursor this mint gave")]
    BadCursor,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Up to `limit` index keys of `pubkey` after `after` (from the first without it), reading only
/// the hourly buckets from the cursor's hour on.
pub async fn page(
    db: &MintDb,
    pubkey: &PublicKey,
    after: Option<&str>,
    limit: usize,
) -> Result<Page, PageError> {
    let after_time = match after {
        Some(a) => Some(quote_id_of_index_key(a).ok_or(PageError::BadCursor)?.0),
        None => None,
    };
    let pubkey = pubkey.to_hex();
    move_unbucketed(db, &pubkey).await?;
    let mut hours = db.kv_list(HOURS_NAMESPACE, &pubkey).await?;
    hours.sort_unstable();
    let first = after_time.map_or(0, |t| {
        let hour = hour_key(t);
        hours.partition_point(|h| *h < hour)
    });
    // One more than the page, to know whether a next page exists.
    let mut keys = Vec::with_capacity(limit.saturating_add(1).min(1024));
    for hour in &hours[first..] {
        let mut bucket = db
            .kv_list(INDEX_NAMESPACE, &bucket_namespace(&pubkey, hour))
            .await?;
        bucket.sort_unstable();
        let start = after.map_or(0, |a| bucket.partition_point(|k| k.as_str() <= a));
        let room = limit.saturating_add(1) - keys.len();
        keys.extend(bucket.into_iter().skip(start).take(room));
        if keys.len() > limit {
            break;
        }
    }
    let next = (keys.len() > limit).then(|| {
        keys.truncate(limit);
        keys.last().cloned()
    });
    Ok(Page {
        keys,
        next: next.flatten(),
    })
}

/// Moves a key's entries from the single namespace of earlier versions into the buckets, in
/// one transaction (a lookup racing it writes the same upserts and removes the same keys).
async fn move_unbucketed(db: &MintDb, pubkey: &str) -> Result<(), DbError> {
    let old = db.kv_list(INDEX_NAMESPACE, pubkey).await?;
    if old.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin_transaction().await?;
    for key in &old {
        if let Some((created, _)) = quote_id_of_index_key(key) {
            let hour = hour_key(created);
            tx.kv_write(HOURS_NAMESPACE, pubkey, &hour, &[]).await?;
            tx.kv_write(INDEX_NAMESPACE, &bucket_namespace(pubkey, &hour), key, &[])
                .await?;
        }
        tx.kv_remove(INDEX_NAMESPACE, pubkey, key).await?;
    }
    tx.commit().await?;
    tracing::info!(
        pubkey,
        entries = old.len(),
        "moved a key's quote index into hourly buckets"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cdk::nuts::SecretKey;

    use super::*;

    async fn memory_db() -> MintDb {
        Arc::new(cdk_sqlite::mint::memory::empty().await.unwrap())
    }

    fn key() -> PublicKey {
        SecretKey::generate().public_key()
    }

    /// Every entry of the key, page by page, as a wallet reads them.
    async fn read_all(db: &MintDb, pubkey: &PublicKey, limit: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = page(db, pubkey, after.as_deref(), limit).await.unwrap();
            assert!(page.keys.len() <= limit);
            all.extend(page.keys.iter().cloned());
            match page.next {
                Some(next) => {
                    assert_eq!(Some(&next), page.keys.last());
                    after = Some(next);
                }
                None => return all,
            }
        }
    }

    #[tokio::test]
    async fn pages_follow_creation_order_across_hours_and_skip_other_keys() {
        let db = memory_db().await;
        let (alice, bob) = (key(), key());
        // Quotes over three hours, two of them not adjacent, recorded out of order.
        let times = [
            7_200 * 1000 + 5,
            3_600 * 1000,
            3_600 * 1000 + 3_599,
            7_200 * 1000,
            3_600 * 1003,
        ];
        for (i, t) in times.iter().enumerate() {
            record(&db, &alice, *t, &format!("quote{i}")).await.unwrap();
        }
        record(&db, &bob, 3_600 * 1000 + 1, "bobs").await.unwrap();
        // Recording twice changes nothing.
        record(&db, &alice, times[0], "quote0").await.unwrap();

        let mut expected: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(i, t)| index_key(*t, &format!("quote{i}")))
            .collect();
        expected.sort();
        for limit in [1, 2, 4, 5, 500] {
            assert_eq!(
                read_all(&db, &alice, limit).await,
                expected,
                "page size {limit}"
            );
        }
        assert_eq!(
            read_all(&db, &bob, 500).await,
            vec![index_key(3_600 * 1000 + 1, "bobs")]
        );

        // A cursor in the middle of an hour continues within it, then into the later hours.
        let page = page(&db, &alice, Some(&expected[1]), 2).await.unwrap();
        assert_eq!(page.keys, expected[2..4].to_vec());
        assert_eq!(page.next.as_deref(), Some(expected[3].as_str()));
        // A cursor after the last entry: nothing more.
        let end = super::page(&db, &alice, expected.last().map(String::as_str), 500)
            .await
            .unwrap();
        assert_eq!(
            end,
            Page {
                keys: vec![],
                next: None
            }
        );
    }

    #[tokio::test]
    async fn a_cursor_the_mint_did_not_give_is_refused() {
        let db = memory_db().await;
        let alice = key();
        record(&db, &alice, 100, "q").await.unwrap();
        for bad in ["", "abc", "-q", "12x-q"] {
            assert!(
                matches!(
                    page(&db, &alice, Some(bad), 10).await,
                    Err(PageError::BadCursor)
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn entries_of_the_unbucketed_index_are_moved_and_listed_once() {
        let db = memory_db().await;
        let alice = key();
        let hex = alice.to_hex();
        // As an earlier version of the mint wrote them: one namespace per key.
        let old = [index_key(10, "old1"), index_key(3_600 * 5, "old2")];
        let mut tx = db.begin_transaction().await.unwrap();
        for k in &old {
            tx.kv_write(INDEX_NAMESPACE, &hex, k, &[]).await.unwrap();
        }
        tx.commit().await.unwrap();
        record(&db, &alice, 3_600 * 5 + 1, "new").await.unwrap();

        let expected = vec![
            old[0].clone(),
            old[1].clone(),
            index_key(3_600 * 5 + 1, "new"),
        ];
        assert_eq!(read_all(&db, &alice, 2).await, expected);
        assert!(db.kv_list(INDEX_NAMESPACE, &hex).await.unwrap().is_empty());
        // Read again (nothing left to move): the same entries, no duplicates.
        assert_eq!(read_all(&db, &alice, 500).await, expected);
    }
}
