//! Several pool instances on one ledger (PostgreSQL in production; a SQLite file shared by two
//! processes behaves the same, so both backends run these): a share is credited once whichever
//! instances it reaches, each whole unit is batched once whichever instance batches, each
//! epoch turns once, and a refusal returns its work once.

use std::collections::{HashMap, HashSet};

use super::{
    test_db::{backends, key, unit},
    *,
};

fn share(n: u32, k: u8, work: u128, tip: i64) -> AcceptedShare {
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&n.to_le_bytes());
    hash[31] = 0xa7;
    AcceptedShare {
        channel_id: 1,
        locking_key: key(k),
        share_hash: hash,
        work: Work::from_hashes(work),
        block_found: false,
        block: None,
        tip,
    }
}

async fn open(location: &LedgerLocation, epochs: Option<EpochSizing>) -> AccrualLedger {
    let options = LedgerOptions {
        epochs: epochs.unwrap_or_default(),
        ..LedgerOptions::default()
    };
    AccrualLedger::open_with(location, "hash", unit(), options)
        .await
        .unwrap()
}

/// Share `n`'s work: distinct per share, so a double credit shows in the totals.
fn work_of(n: u32) -> u128 {
    300 + u128::from(n % 97)
}

#[tokio::test]
async fn a_share_sent_to_two_instances_is_credited_once() {
    for db in backends().await {
        let location = db.location();
        let (a, b) = (open(&location, None).await, open(&location, None).await);
        // Every share goes to both instances, in bursts, both writing at once; the tip changes
        // halfway (shares of the previous tip can still come).
        let mut receipts = Vec::new();
        for burst in 0..40u32 {
            let tip = if burst < 20 { 1 } else { 2 };
            let shares: Vec<_> = (0..25)
                .map(|i| {
                    let n = burst * 25 + i;
                    share(n, (n % 5) as u8 + 1, work_of(n), tip)
                })
                .collect();
            let (ra, rb) = tokio::join!(a.record_all(shares.clone()), b.record_all(shares));
            receipts.push((ra, rb));
        }
        let mut credited = 0;
        for (ra, rb) in receipts {
            let (oa, ob) = (ra.await.unwrap(), rb.await.unwrap());
            for (x, y) in oa.iter().zip(&ob) {
                // One instance credits it, the other finds it in the ledger.
                assert!(
                    matches!((x, y), (Ok(true), Ok(false)) | (Ok(false), Ok(true))),
                    "{x:?} {y:?}"
                );
                credited += 1;
            }
        }
        assert_eq!(credited, 1000);
        let mut expected: HashMap<u8, (u128, u64)> = HashMap::new();
        for n in 0..1000u32 {
            let e = expected.entry((n % 5) as u8 + 1).or_default();
            e.0 += work_of(n);
            e.1 += 1;
        }
        for (k, (work, count)) in expected {
            for ledger in [&a, &b] {
                let acc = ledger.accrual(&key(k)).await.unwrap().unwrap();
                assert_eq!((acc.total.hashes(), acc.shares), (work, count));
            }
            // The log holds each share once.
            let (logged, n) = a.share_work(&key(k)).await.unwrap();
            assert_eq!((logged.hashes(), n), (work, count));
        }
        // A replay to either instance later is refused too.
        for ledger in [&a, &b] {
            let again = ledger
                .record_all(vec![share(999, 5, work_of(999), 2)])
                .await;
            assert_eq!(again.await.unwrap(), vec![Ok(false)]);
        }
    }
}

#[tokio::test]
async fn each_whole_unit_is_batched_once_whichever_instance_batches() {
    for db in backends().await {
        let location = db.location();
        let (a, b) = (open(&location, None).await, open(&location, None).await);
        let mut all = Vec::new();
        for round in 0..30u32 {
            let (sa, sb): (Vec<_>, Vec<_>) = (0..20u32)
                .map(|i| {
                    let n = round * 40 + i;
                    (
                        share(n, (n % 3) as u8 + 1, work_of(n), 1),
                        share(n + 20, (n % 4) as u8 + 1, work_of(n + 20), 1),
                    )
                })
                .unzip();
            let (ra, rb) = tokio::join!(a.record_all(sa), b.record_all(sb));
            assert!(ra.await.unwrap().iter().all(|o| *o == Ok(true)));
            assert!(rb.await.unwrap().iter().all(|o| *o == Ok(true)));
            // Both instances batch at once, every round.
            let (ba, bb) = tokio::join!(a.create_batches(), b.create_batches());
            all.extend(ba.unwrap());
            all.extend(bb.unwrap());
        }
        let (ba, bb) = tokio::join!(a.create_batches(), b.create_batches());
        all.extend(ba.unwrap());
        all.extend(bb.unwrap());
        let ids: HashSet<_> = all.iter().map(|b| b.request_id).collect();
        assert_eq!(ids.len(), all.len());
        for k in 1..=4u8 {
            let acc = a.accrual(&key(k)).await.unwrap().unwrap();
            let batched: u64 = all
                .iter()
                .filter(|b| b.locking_key == key(k))
                .map(|b| b.amount)
                .sum();
            // Every whole unit batched once, the remainder pending.
            assert_eq!(u128::from(batched), acc.total.hashes() / 1_000);
            assert_eq!(acc.pending.hashes(), acc.total.hashes() % 1_000);
            // The batches in the ledger are the ones returned, and their share counts add up
            // to the key's shares (no share in two batches).
            let stored = a.batches_of(&key(k)).await.unwrap();
            assert_eq!(
                stored.iter().map(|b| b.amount).sum::<u64>(),
                batched,
                "key {k}"
            );
            let shares: u64 = stored.iter().map(|b| u64::from(b.share_count)).sum();
            let unbatched = acc.shares - shares;
            assert!(
                unbatched < acc.shares,
                "key {k}: {unbatched} of {}",
                acc.shares
            );
        }
    }
}

#[tokio::test]
async fn a_refusal_at_either_instance_returns_the_work_once() {
    for db in backends().await {
        let location = db.location();
        let (a, b) = (open(&location, None).await, open(&location, None).await);
        let r = a.record_all(vec![share(1, 1, 2_500, 1)]).await;
        assert_eq!(r.await.unwrap(), vec![Ok(true)]);
        let made = a.create_batches().await.unwrap();
        assert_eq!(made.len(), 1);
        // Refused through both instances at once: the work comes back once.
        let (x, y) = tokio::join!(
            a.record_refusal(&made[0].request_id, "refused"),
            b.record_refusal(&made[0].request_id, "refused")
        );
        let returned = [x.unwrap(), y.unwrap()];
        assert_eq!(returned.iter().filter(|r| r.is_some()).count(), 1);
        // B batches the returned work again, once.
        let again = b.create_batches().await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].amount, 2);
        assert!(a.create_batches().await.unwrap().is_empty());
        let acc = b.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(acc.pending.hashes(), 500);
        assert_eq!(acc.total.hashes(), 2_500);
    }
}

#[tokio::test]
async fn epochs_turn_once_when_two_instances_cross_the_end() {
    for db in backends().await {
        let location = db.location();
        // Epochs as long as the network's work per block.
        let sizing = EpochSizing {
            ppm: 1_000_000,
            min_work: Work::from_hashes(1),
        };
        let (a, b) = (
            open(&location, Some(sizing)).await,
            open(&location, Some(sizing)).await,
        );
        a.observe_network_work(Work::from_hashes(5_000))
            .await
            .unwrap();
        b.observe_network_work(Work::from_hashes(5_000))
            .await
            .unwrap();
        let mut total = 0u128;
        for round in 0..40u32 {
            let (sa, sb): (Vec<_>, Vec<_>) = (0..5u32)
                .map(|i| {
                    let n = round * 10 + i;
                    total += work_of(n) + work_of(n + 5);
                    (
                        share(n, (n % 3) as u8 + 1, work_of(n), 1),
                        share(n + 5, (n % 2) as u8 + 1, work_of(n + 5), 1),
                    )
                })
                .unzip();
            let (ra, rb) = tokio::join!(a.record_all(sa), b.record_all(sb));
            assert!(ra.await.unwrap().iter().all(|o| *o == Ok(true)));
            assert!(rb.await.unwrap().iter().all(|o| *o == Ok(true)));
        }
        let epochs = a.epochs().await.unwrap();
        // One first epoch, and each next one starting where the last closed.
        assert!(epochs.len() > 10, "{} epochs", epochs.len());
        for (i, e) in epochs.iter().enumerate() {
            assert_eq!(e.index as usize, i);
            if let Some(next) = epochs.get(i + 1) {
                let end = e.end.expect("a closed epoch");
                assert_eq!(next.start, end);
                assert!(end.hashes() >= e.start.hashes() + e.length.hashes());
            }
        }
        let pool_work: u128 = {
            let mut sum = 0;
            for k in 1..=3u8 {
                sum += a.accrual(&key(k)).await.unwrap().unwrap().total.hashes();
            }
            sum
        };
        assert_eq!(pool_work, total);
        // Every batch belongs to an epoch and the closed epochs' whole units were batched.
        let mut batched = 0u64;
        for k in 1..=3u8 {
            for batch in a.batches_of(&key(k)).await.unwrap() {
                assert!(batch.epoch.is_some());
                batched += batch.amount;
            }
        }
        assert!(batched > 0);
    }
}

#[tokio::test]
async fn a_quote_one_instance_records_reaches_the_others() {
    for db in backends().await {
        let location = db.location();
        let (a, b) = (open(&location, None).await, open(&location, None).await);
        let (feed_a, feed_b) = (
            a.quotes_of_other_instances().await.unwrap(),
            b.quotes_of_other_instances().await.unwrap(),
        );
        let (Some(mut feed_a), Some(mut feed_b)) = (feed_a, feed_b) else {
            // SQLite: one instance, nothing to follow.
            assert!(matches!(location, LedgerLocation::File(_)));
            continue;
        };
        let r = a.record_all(vec![share(1, 2, 3_400, 1)]).await;
        assert_eq!(r.await.unwrap(), vec![Ok(true)]);
        let made = a.create_batches().await.unwrap();
        let recorded = a
            .record_quote(&made[0].request_id, "quote-a")
            .await
            .unwrap()
            .unwrap();
        // A resent answer is not published again.
        assert!(a
            .record_quote(&made[0].request_id, "quote-a")
            .await
            .unwrap()
            .is_none());
        let seen = tokio::time::timeout(Duration::from_secs(30), feed_b.recv())
            .await
            .expect("the other instance hears of the quote")
            .unwrap();
        assert_eq!(seen, recorded);
        assert_eq!(
            (seen.quote_id.as_deref(), seen.amount, seen.locking_key),
            (Some("quote-a"), 3, key(2))
        );
        // B records one: A hears of it, and of nothing of its own.
        let r = b.record_all(vec![share(2, 3, 1_000, 1)]).await;
        assert_eq!(r.await.unwrap(), vec![Ok(true)]);
        let made = b.create_batches().await.unwrap();
        b.record_quote(&made[0].request_id, "quote-b")
            .await
            .unwrap()
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(30), feed_a.recv())
            .await
            .expect("the other instance hears of the quote")
            .unwrap();
        assert_eq!(seen.quote_id.as_deref(), Some("quote-b"));
        assert!(feed_a.try_recv().is_err() && feed_b.try_recv().is_err());
    }
}

/// A ledger reached over TLS (`sslmode=require`; Debian's server has TLS on with its
/// snakeoil certificate) works, and its sessions are encrypted.
#[tokio::test]
async fn a_postgresql_ledger_is_reached_over_tls_when_the_url_asks_for_it() {
    let Some(db) = super::test_db::TestDb::postgres().await else {
        return;
    };
    let LedgerLocation::Postgres(url) = db.location() else {
        unreachable!()
    };
    let location = LedgerLocation::Postgres(format!("{url}?sslmode=require"));
    let ledger = open(&location, None).await;
    let r = ledger.record_all(vec![share(1, 1, 1_500, 1)]).await;
    assert_eq!(r.await.unwrap(), vec![Ok(true)]);
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&ledger.db.pool)
            .await
            .unwrap();
    assert!(encrypted);
    assert_eq!(ledger.accrual(&key(1)).await.unwrap().unwrap().shares, 1);
}

/// The per-minute work behind the miner API's hashrate windows adds up across instances: each
/// instance adds to the minute's figure the others stored, never overwrites it.
#[tokio::test]
async fn per_minute_work_adds_up_across_instances() {
    for db in backends().await {
        let location = db.location();
        let (a, b) = (open(&location, None).await, open(&location, None).await);
        for round in 0..20u32 {
            let (sa, sb): (Vec<_>, Vec<_>) = (0..10u32)
                .map(|i| {
                    let n = round * 20 + i;
                    (
                        share(n, (n % 3) as u8 + 1, work_of(n), 1),
                        share(n + 10, (n % 3) as u8 + 1, work_of(n + 10), 1),
                    )
                })
                .unzip();
            let (ra, rb) = tokio::join!(a.record_all(sa), b.record_all(sb));
            assert!(ra.await.unwrap().iter().all(|o| *o == Ok(true)));
            assert!(rb.await.unwrap().iter().all(|o| *o == Ok(true)));
        }
        for k in 1..=3u8 {
            let acc = a.accrual(&key(k)).await.unwrap().unwrap();
            let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
                "SELECT m.work, m.shares FROM key_minutes m \
                 JOIN accruals a ON a.key_id = m.key_id WHERE a.locking_key = $1",
            )
            .bind(key(k).as_bytes().as_slice())
            .fetch_all(&a.db.pool)
            .await
            .unwrap();
            let work: u128 = rows
                .iter()
                .map(|(w, _)| super::store::work_from(w.clone()).unwrap().hashes())
                .sum();
            let shares: i64 = rows.iter().map(|(_, n)| n).sum();
            assert_eq!((work, shares as u64), (acc.total.hashes(), acc.shares));
        }
    }
}
