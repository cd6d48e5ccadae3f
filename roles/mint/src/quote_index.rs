//! The locking key -> quotes index that the wallets' signed lookup reads, kept in CDK's
//! key-value store. CDK's store lists a whole namespace at a time, so the entries are bucketed
//! by the minute of their creation under a day -> hour -> minute tree: a lookup lists the
//! levels from its cursor on, and no listing grows with the key's history (a key paid ten times
//! a second has 600 quotes a minute but 36,000 an hour; listing an hour's bucket on every
//! lookup made the mint's CPU and transient memory grow through each hour).
//!
//! - `hashpool_quote_days` / `<key hex>` / `<day:08>`: the days in which the key has quotes.
//! - `hashpool_quote_day_hours` / `<key hex>-<day:08>` / `<hour:010>`: the hours of one day.
//! - `hashpool_quote_hour_minutes` / `<key hex>-<hour:010>` / `<minute:012>`: the minutes of
//!   one hour.
//! - `hashpool_quotes_by_minute` / `<key hex>-<minute:012>` / `<created:012>-<quote id>`: the
//!   quotes of one minute. The entry's key is the lookup's cursor.
//!
//! Earlier versions wrote `hashpool_quotes_by_key` / `<key hex>` (every quote of a key) and then
//! `hashpool_quote_hours` / `<key hex>` / `<hour:010>` with `hashpool_quotes_by_key` /
//! `<key hex>-<hour:010>`; a lookup moves what it finds there into the tree first.

use cdk::nuts::PublicKey;
use cdk_common::database::{DynMintTransaction, Error as DbError};

use crate::db::MintDb;

/// KV namespace of the days in which a key has quotes.
pub const DAYS_NAMESPACE: &str = "hashpool_quote_days";
/// KV namespace of the hours of one day in which a key has quotes.
pub const DAY_HOURS_NAMESPACE: &str = "hashpool_quote_day_hours";
/// KV namespace of the minutes of one hour in which a key has quotes.
pub const HOUR_MINUTES_NAMESPACE: &str = "hashpool_quote_hour_minutes";
/// KV namespace of the quotes, bucketed by the minute of their creation.
pub const MINUTE_QUOTES_NAMESPACE: &str = "hashpool_quotes_by_minute";
/// Earlier layouts' namespaces: every quote of a key, then the quotes of one hour.
const EARLIER_INDEX_NAMESPACE: &str = "hashpool_quotes_by_key";
/// The earlier layout's hours in which a key had quotes.
const EARLIER_HOURS_NAMESPACE: &str = "hashpool_quote_hours";

/// Sorts by creation time; the quote id follows the first `-`.
pub fn index_key(created_time: u64, quote_id: &str) -> String {
    format!("{created_time:012}-{quote_id}")
}

pub fn quote_id_of_index_key(key: &str) -> Option<(u64, &str)> {
    let (time, id) = key.split_once('-')?;
    Some((time.parse().ok()?, id))
}

/// The buckets of one creation time, fixed width so that the KV keys sort as the numbers do.
struct Buckets {
    day: String,
    hour: String,
    minute: String,
}

impl Buckets {
    fn of(created_time: u64) -> Self {
        Self {
            day: format!("{:08}", created_time / 86_400),
            hour: format!("{:010}", created_time / 3_600),
            minute: format!("{:012}", created_time / 60),
        }
    }
}

fn namespace_of(pubkey: &str, bucket: &str) -> String {
    format!("{pubkey}-{bucket}")
}

/// Writes one entry and its path through the tree (every write an upsert, so idempotent).
async fn write_entry(
    tx: &mut DynMintTransaction,
    pubkey: &str,
    created_time: u64,
    entry: &str,
) -> Result<(), DbError> {
    let b = Buckets::of(created_time);
    // Each level's entry: (namespace, its parent's bucket, this bucket).
    let path = [
        (DAYS_NAMESPACE, pubkey.to_owned(), b.day.as_str()),
        (
            DAY_HOURS_NAMESPACE,
            namespace_of(pubkey, &b.day),
            b.hour.as_str(),
        ),
        (
            HOUR_MINUTES_NAMESPACE,
            namespace_of(pubkey, &b.hour),
            b.minute.as_str(),
        ),
        (
            MINUTE_QUOTES_NAMESPACE,
            namespace_of(pubkey, &b.minute),
            entry,
        ),
    ];
    for (namespace, secondary, key) in &path {
        tx.kv_write(namespace, secondary, key, &[]).await?;
    }
    Ok(())
}

/// Records `quote_id` under its key (idempotent: every write is an upsert).
pub async fn record(
    db: &MintDb,
    pubkey: &PublicKey,
    created_time: u64,
    quote_id: &str,
) -> Result<(), DbError> {
    let pubkey = pubkey.to_hex();
    let mut tx = db.begin_transaction().await?;
    write_entry(
        &mut tx,
        &pubkey,
        created_time,
        &index_key(created_time, quote_id),
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
    #[error("the cursor is not one the mint gave")]
    BadCursor,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One level of the tree, in order (CDK lists in key order; sorted again because the trait does
/// not promise it), without the buckets before `from`.
async fn list_from(
    db: &MintDb,
    namespace: &str,
    secondary: &str,
    from: Option<&str>,
) -> Result<Vec<String>, DbError> {
    let mut keys = db.kv_list(namespace, secondary).await?;
    keys.sort_unstable();
    if let Some(from) = from {
        let start = keys.partition_point(|k| k.as_str() < from);
        keys.drain(..start);
    }
    Ok(keys)
}

/// Up to `limit` index keys of `pubkey` after `after` (from the first without it), reading only
/// the buckets from the cursor's minute on.
pub async fn page(
    db: &MintDb,
    pubkey: &PublicKey,
    after: Option<&str>,
    limit: usize,
) -> Result<Page, PageError> {
    let from = match after {
        Some(a) => Some(Buckets::of(
            quote_id_of_index_key(a).ok_or(PageError::BadCursor)?.0,
        )),
        None => None,
    };
    let pubkey = pubkey.to_hex();
    move_earlier_layouts(db, &pubkey).await?;
    // One more than the page, to know whether a next page exists.
    let want = limit.saturating_add(1);
    let mut keys = Vec::with_capacity(want.min(1024));
    let days = list_from(db, DAYS_NAMESPACE, &pubkey, from.as_ref().map(|b| &*b.day)).await?;
    'walk: for day in &days {
        let day_ns = namespace_of(&pubkey, day);
        // Hours and minutes are absolute, so the cursor's bound holds in every later bucket too.
        let hours = list_from(
            db,
            DAY_HOURS_NAMESPACE,
            &day_ns,
            from.as_ref().map(|b| &*b.hour),
        )
        .await?;
        for hour in &hours {
            let hour_ns = namespace_of(&pubkey, hour);
            let minutes = list_from(
                db,
                HOUR_MINUTES_NAMESPACE,
                &hour_ns,
                from.as_ref().map(|b| &*b.minute),
            )
            .await?;
            for minute in &minutes {
                let mut bucket = db
                    .kv_list(MINUTE_QUOTES_NAMESPACE, &namespace_of(&pubkey, minute))
                    .await?;
                bucket.sort_unstable();
                let start = after.map_or(0, |a| bucket.partition_point(|k| k.as_str() <= a));
                let room = want - keys.len();
                keys.extend(bucket.into_iter().skip(start).take(room));
                if keys.len() == want {
                    break 'walk;
                }
            }
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

/// Moves a key's entries from the layouts of earlier versions into the tree, in one
/// transaction (a lookup racing it writes the same upserts and removes the same keys).
async fn move_earlier_layouts(db: &MintDb, pubkey: &str) -> Result<(), DbError> {
    let unbucketed = db.kv_list(EARLIER_INDEX_NAMESPACE, pubkey).await?;
    let hours = db.kv_list(EARLIER_HOURS_NAMESPACE, pubkey).await?;
    if unbucketed.is_empty() && hours.is_empty() {
        return Ok(());
    }
    let mut old = Vec::with_capacity(unbucketed.len());
    old.extend(unbucketed.into_iter().map(|k| (pubkey.to_owned(), k)));
    for hour in &hours {
        let ns = namespace_of(pubkey, hour);
        for key in db.kv_list(EARLIER_INDEX_NAMESPACE, &ns).await? {
            old.push((ns.clone(), key));
        }
    }
    let mut tx = db.begin_transaction().await?;
    for (ns, key) in &old {
        if let Some((created, _)) = quote_id_of_index_key(key) {
            write_entry(&mut tx, pubkey, created, key).await?;
        }
        tx.kv_remove(EARLIER_INDEX_NAMESPACE, ns, key).await?;
    }
    for hour in &hours {
        tx.kv_remove(EARLIER_HOURS_NAMESPACE, pubkey, hour).await?;
    }
    tx.commit().await?;
    tracing::info!(
        pubkey,
        entries = old.len(),
        "moved a key's quote index into the day/hour/minute buckets"
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
    async fn pages_follow_creation_order_across_minutes_hours_and_days_and_skip_other_keys() {
        let db = memory_db().await;
        let (alice, bob) = (key(), key());
        // Quotes in one minute, the next minute, a later hour, the next day and a day much
        // later, recorded out of order.
        let base = 86_400 * 20_000 + 3_600 * 5 + 60 * 7;
        let times = [
            base + 86_400 * 40 + 1,
            base + 59,
            base,
            base + 60,
            base + 3_600 * 3 + 5,
            base + 86_400,
            base + 1,
            base + 61,
        ];
        for (i, t) in times.iter().enumerate() {
            record(&db, &alice, *t, &format!("quote{i}")).await.unwrap();
        }
        record(&db, &bob, base + 2, "bobs").await.unwrap();
        // Recording twice changes nothing.
        record(&db, &alice, times[0], "quote0").await.unwrap();

        let mut expected: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(i, t)| index_key(*t, &format!("quote{i}")))
            .collect();
        expected.sort();
        for limit in [1, 2, 3, 4, 7, 8, 500] {
            assert_eq!(
                read_all(&db, &alice, limit).await,
                expected,
                "page size {limit}"
            );
        }
        assert_eq!(
            read_all(&db, &bob, 500).await,
            vec![index_key(base + 2, "bobs")]
        );

        // A cursor in the middle of a minute continues within it, then into the later buckets.
        let page = page(&db, &alice, Some(&expected[1]), 3).await.unwrap();
        assert_eq!(page.keys, expected[2..5].to_vec());
        assert_eq!(page.next.as_deref(), Some(expected[4].as_str()));
        // The last entry of a minute as the cursor: the next minute's first.
        let page = super::page(&db, &alice, Some(&expected[2]), 1)
            .await
            .unwrap();
        assert_eq!(page.keys, vec![expected[3].clone()]);
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
        // A cursor between entries (a quote the key never had, as after a restore): the next.
        let between = index_key(base + 3_600, "none");
        let page = super::page(&db, &alice, Some(&between), 1).await.unwrap();
        assert_eq!(page.keys, vec![expected[5].clone()]);
    }

    #[tokio::test]
    async fn every_listing_is_bounded_by_its_bucket_not_by_the_keys_history() {
        let db = memory_db().await;
        let alice = key();
        // Ten quotes a second for two hours.
        let start = 86_400 * 20_000;
        for i in 0..72_000u64 {
            let t = start + i / 10;
            record(&db, &alice, t, &format!("q{i}")).await.unwrap();
        }
        let hex = alice.to_hex();
        let day = Buckets::of(start);
        assert_eq!(db.kv_list(DAYS_NAMESPACE, &hex).await.unwrap().len(), 1);
        let hours = db
            .kv_list(DAY_HOURS_NAMESPACE, &namespace_of(&hex, &day.day))
            .await
            .unwrap();
        assert_eq!(hours.len(), 2);
        for hour in &hours {
            let minutes = db
                .kv_list(HOUR_MINUTES_NAMESPACE, &namespace_of(&hex, hour))
                .await
                .unwrap();
            assert_eq!(minutes.len(), 60);
            for minute in &minutes {
                let quotes = db
                    .kv_list(MINUTE_QUOTES_NAMESPACE, &namespace_of(&hex, minute))
                    .await
                    .unwrap();
                assert_eq!(quotes.len(), 600, "minute {minute}");
            }
        }
        // The wallet's cursor near the end: the rest, from the last minute's bucket.
        let last = index_key(start + 7_199, "q71989");
        let page = page(&db, &alice, Some(&last), 100).await.unwrap();
        let rest: Vec<String> = (71_990..72_000u64)
            .map(|i| index_key(start + i / 10, &format!("q{i}")))
            .collect();
        assert_eq!(page.keys, rest);
        assert_eq!(page.next, None);
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
    async fn entries_of_the_earlier_layouts_are_moved_and_listed_once() {
        let db = memory_db().await;
        let alice = key();
        let hex = alice.to_hex();
        // As earlier versions of the mint wrote them: one namespace per key, then hourly
        // buckets with the key's hours beside them.
        let unbucketed = [index_key(10, "old1"), index_key(3_600 * 5, "old2")];
        let hourly = [
            index_key(3_600 * 5 + 30, "old3"),
            index_key(3_600 * 7, "old4"),
        ];
        let mut tx = db.begin_transaction().await.unwrap();
        for k in &unbucketed {
            tx.kv_write(EARLIER_INDEX_NAMESPACE, &hex, k, &[])
                .await
                .unwrap();
        }
        for k in &hourly {
            let (created, _) = quote_id_of_index_key(k).unwrap();
            let hour = format!("{:010}", created / 3_600);
            tx.kv_write(EARLIER_HOURS_NAMESPACE, &hex, &hour, &[])
                .await
                .unwrap();
            tx.kv_write(EARLIER_INDEX_NAMESPACE, &namespace_of(&hex, &hour), k, &[])
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        record(&db, &alice, 3_600 * 7 + 1, "new").await.unwrap();

        let mut expected: Vec<String> = unbucketed.iter().chain(&hourly).cloned().collect();
        expected.push(index_key(3_600 * 7 + 1, "new"));
        assert_eq!(read_all(&db, &alice, 2).await, expected);
        assert!(db
            .kv_list(EARLIER_INDEX_NAMESPACE, &hex)
            .await
            .unwrap()
            .is_empty());
        assert!(db
            .kv_list(EARLIER_HOURS_NAMESPACE, &hex)
            .await
            .unwrap()
            .is_empty());
        for hour in ["0000000005", "0000000007"] {
            assert!(db
                .kv_list(EARLIER_INDEX_NAMESPACE, &namespace_of(&hex, hour))
                .await
                .unwrap()
                .is_empty());
        }
        // Read again (nothing left to move): the same entries, no duplicates.
        assert_eq!(read_all(&db, &alice, 500).await, expected);
    }
}
