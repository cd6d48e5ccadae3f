use std::{path::Path, str::FromStr};

use sqlx::{sqlite::SqliteConnectOptions, SqlitePool};

use super::{
    store::work_bytes,
    test_db::{backends, key, unit},
    *,
};

fn share(n: u32, k: u8, work: u128) -> AcceptedShare {
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&n.to_le_bytes());
    AcceptedShare {
        channel_id: 1,
        locking_key: key(k),
        share_hash: hash,
        work: Work::from_hashes(work),
        block_found: false,
        block: None,
        tip: 1,
    }
}

pub(super) async fn open(location: impl Into<LedgerLocation>) -> AccrualLedger {
    AccrualLedger::open(location, "hash", unit()).await.unwrap()
}

#[tokio::test]
async fn accruals_survive_reopening_and_match_share_rows() {
    for db in backends().await {
        let path = db.location();
        let ledger = open(&path).await;
        let mut receipts = Vec::new();
        for i in 0..1000u32 {
            receipts.push(
                ledger
                    .record(share(i, (i % 3) as u8 + 1, 1_000 + i as u128))
                    .await,
            );
        }
        for r in receipts {
            assert_eq!(r.await.unwrap(), Ok(true));
        }
        drop(ledger);
        let ledger = open(&path).await;
        let mut all = 0u128;
        for k in 1..=3u8 {
            let a = ledger.accrual(&key(k)).await.unwrap().unwrap();
            let (rows, count) = ledger.share_work(&key(k)).await.unwrap();
            assert_eq!(a.total, rows);
            assert_eq!(a.pending, rows);
            assert_eq!(a.shares, count);
            all += a.total.hashes();
        }
        assert_eq!(all, (0..1000u128).map(|i| 1_000 + i).sum::<u128>());
        assert!(ledger.accrual(&key(9)).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_replayed_share_is_not_credited_twice() {
    for db in backends().await {
        let ledger = open(&db.location()).await;
        assert_eq!(
            ledger.record(share(7, 1, 500)).await.await.unwrap(),
            Ok(true)
        );
        assert_eq!(
            ledger.record(share(7, 1, 500)).await.await.unwrap(),
            Ok(false)
        );
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.total.hashes(), 500);
        assert_eq!(a.shares, 1);
    }
}

/// Holds the ledger's write lock on a connection of its own, so the writer cannot commit.
async fn block_writer(ledger: &AccrualLedger) -> store::Conn {
    store::begin_write(&ledger.db).await.unwrap()
}

#[tokio::test]
async fn record_waits_for_room_when_the_queue_is_full() {
    for db in backends().await {
        let ledger = AccrualLedger::open_with_queue(
            &db.location(),
            "hash",
            unit(),
            LedgerOptions::default(),
            2,
        )
        .await
        .unwrap();
        let mut lock = block_writer(&ledger).await;
        let mut receipts = Vec::new();
        let mut waiting = None;
        for i in 0..50u32 {
            let mut record = Box::pin(ledger.record(share(i, 1, 100)));
            match tokio::time::timeout(Duration::from_millis(200), &mut record).await {
                Ok(receipt) => receipts.push(receipt),
                Err(_) => {
                    waiting = Some(record);
                    break;
                }
            }
        }
        let waiting = waiting.expect("record returned with the queue full");
        // The blocked writer holds one group (at most the queue's 2) and the queue 2 more.
        assert!(receipts.len() <= 4, "{} shares queued", receipts.len());
        sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
        drop(lock);
        // Room again: the waiting share is queued and everything commits.
        receipts.push(waiting.await);
        let queued = receipts.len() as u64;
        for r in receipts {
            assert_eq!(r.await.unwrap(), Ok(true));
        }
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.shares, queued);
        assert_eq!(a.total.hashes(), 100 * queued as u128);
    }
}

#[test]
fn a_share_recorded_after_the_writer_stopped_resolves_to_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    let ledger = first.block_on(open(&dir.path().join("l.sqlite")));
    // The writer task ends with the runtime it runs on.
    drop(first);
    let outcome = runtime().block_on(async move { ledger.record(share(1, 1, 100)).await.await });
    assert_eq!(outcome, Ok(Err(LedgerError::Stopped)));
}

#[tokio::test]
async fn an_overflowing_share_is_refused_alone_and_the_group_commits() {
    for db in backends().await {
        let ledger = open(&db.location()).await;
        assert_eq!(
            ledger.record(share(1, 1, 1_000)).await.await.unwrap(),
            Ok(true)
        );
        // One group: honest A, A's overflow, honest B, honest A again. The writer is held on a
        // share of key 3 while the four queue behind it, so they commit together.
        let mut lock = block_writer(&ledger).await;
        let held = ledger.record(share(99, 3, 1)).await;
        let group = [
            share(2, 1, 500),
            share(3, 1, u128::MAX - 1_000),
            share(4, 2, 700),
            share(5, 1, 250),
        ];
        let mut receipts = Vec::new();
        for s in group {
            receipts.push(ledger.record(s).await);
        }
        sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
        drop(lock);
        assert_eq!(held.await.unwrap(), Ok(true));
        let mut outcomes = Vec::new();
        for r in receipts {
            outcomes.push(r.await.unwrap());
        }
        assert_eq!(outcomes[0], Ok(true));
        assert_eq!(
            outcomes[1],
            Err(LedgerError::AccrualOverflow {
                key: key(1).to_hex(),
                work: u128::MAX - 1_000
            })
        );
        let message = outcomes[1].clone().unwrap_err().to_string();
        assert!(
            message.contains("overflow") && message.contains(&key(1).to_hex()),
            "{message}"
        );
        assert_eq!(outcomes[2], Ok(true));
        assert_eq!(outcomes[3], Ok(true));
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(
            (a.total.hashes(), a.pending.hashes(), a.shares),
            (1_750, 1_750, 3)
        );
        assert_eq!(ledger.share_work(&key(1)).await.unwrap(), (a.total, 3));
        let b = ledger.accrual(&key(2)).await.unwrap().unwrap();
        assert_eq!(
            (b.total.hashes(), b.pending.hashes(), b.shares),
            (700, 700, 1)
        );
        // The refused share was not stored: sent again, it is refused again, not a replay.
        assert!(matches!(
            ledger
                .record(share(3, 1, u128::MAX - 1_000))
                .await
                .await
                .unwrap(),
            Err(LedgerError::AccrualOverflow { .. })
        ));
    }
}

#[tokio::test]
async fn batches_take_whole_units_and_carry_the_remainder() {
    for db in backends().await {
        let ledger = open(&db.location()).await;
        for i in 0..10u32 {
            ledger
                .record(share(i, 1, 350))
                .await
                .await
                .unwrap()
                .unwrap();
        }
        ledger
            .record(share(100, 2, 999))
            .await
            .await
            .unwrap()
            .unwrap();
        let batches = ledger.create_batches().await.unwrap();
        // Key 1: 3,500 of work -> 3 ehash, 500 carried; key 2: 999 -> nothing yet.
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].locking_key, key(1));
        assert_eq!(batches[0].amount, 3);
        assert_eq!(batches[0].share_count, 10);
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.pending.hashes(), 500);
        assert_eq!(a.total.hashes(), 3_500);
        // Nothing new: no second batch; the open one is waiting for the mint.
        assert!(ledger.create_batches().await.unwrap().is_empty());
        assert_eq!(ledger.open_batches().await.unwrap(), batches);
        // The mint answers; a repeated answer changes nothing.
        let answered = ledger
            .record_quote(&batches[0].request_id, "q1")
            .await
            .unwrap();
        assert_eq!(answered.unwrap().quote_id.as_deref(), Some("q1"));
        assert!(ledger
            .record_quote(&batches[0].request_id, "q2")
            .await
            .unwrap()
            .is_none());
        assert!(ledger.open_batches().await.unwrap().is_empty());
        // A refusal after the answer changes nothing either: the quote was issued.
        assert!(ledger
            .record_refusal(&batches[0].request_id, "amount-out-of-range")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            ledger
                .accrual(&key(1))
                .await
                .unwrap()
                .unwrap()
                .pending
                .hashes(),
            500
        );
        // More work tops the carried remainder up past a unit.
        for i in 10..12u32 {
            ledger
                .record(share(i, 1, 250))
                .await
                .await
                .unwrap()
                .unwrap();
        }
        let next = ledger.create_batches().await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].amount, 1);
        assert_eq!(next[0].share_count, 2);
        assert_ne!(next[0].request_id, batches[0].request_id);
        assert_eq!(
            ledger
                .accrual(&key(1))
                .await
                .unwrap()
                .unwrap()
                .pending
                .hashes(),
            0
        );
    }
}

/// Ehash of the batches of `k` not refused (issued or waiting for the mint).
async fn issued(ledger: &AccrualLedger, k: u8) -> u64 {
    ledger
        .batches_of(&key(k))
        .await
        .unwrap()
        .iter()
        .filter(|b| b.refused_code.is_none())
        .map(|b| b.amount)
        .sum()
}

#[tokio::test]
async fn a_refused_batch_returns_its_work_to_pending_once() {
    for db in backends().await {
        let path = db.location();
        let ledger = open(&path).await;
        for i in 0..10u32 {
            ledger
                .record(share(i, 1, 350))
                .await
                .await
                .unwrap()
                .unwrap();
        }
        let first = ledger.create_batches().await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].amount, 3);
        let refused = ledger
            .record_refusal(&first[0].request_id, "amount-out-of-range")
            .await
            .unwrap()
            .expect("a new refusal");
        assert_eq!(refused.request_id, first[0].request_id);
        assert_eq!(refused.amount, 3);
        assert_eq!(refused.refused_code.as_deref(), Some("amount-out-of-range"));
        // All of it is pending again: the 3,000 taken plus the 500 carried.
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!((a.pending.hashes(), a.total.hashes()), (3_500, 3_500));
        assert!(ledger.open_batches().await.unwrap().is_empty());
        // Refused again (a resent request), answered late, or unknown: nothing changes.
        assert!(ledger
            .record_refusal(&first[0].request_id, "amount-out-of-range")
            .await
            .unwrap()
            .is_none());
        assert!(ledger
            .record_quote(&first[0].request_id, "late")
            .await
            .unwrap()
            .is_none());
        assert!(ledger
            .record_refusal(&[9; 32], "unit-mismatch")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            ledger
                .accrual(&key(1))
                .await
                .unwrap()
                .unwrap()
                .pending
                .hashes(),
            3_500
        );
        assert_eq!(issued(&ledger, 1).await, 0);
        // The next batch asks for it again, with its shares, under a new request id.
        ledger
            .record(share(10, 1, 600))
            .await
            .await
            .unwrap()
            .unwrap();
        let second = ledger.create_batches().await.unwrap();
        assert_eq!(second.len(), 1);
        assert_ne!(second[0].request_id, first[0].request_id);
        assert_eq!(second[0].amount, 4);
        assert_eq!(second[0].share_count, 11);
        drop(ledger);
        // Durable: reopened, the refusal and the new batch are there, and the ehash issued
        // plus the work pending is all the work.
        let ledger = open(&path).await;
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.pending.hashes(), 100);
        assert_eq!(issued(&ledger, 1).await, 4);
        assert_eq!(
            issued(&ledger, 1).await as u128 * unit().work().hashes() + a.pending.hashes(),
            a.total.hashes()
        );
        assert_eq!(a.total, ledger.share_work(&key(1)).await.unwrap().0);
        let all = ledger.batches_of(&key(1)).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].refused_code.as_deref(), Some("amount-out-of-range"));
        assert_eq!(ledger.open_batches().await.unwrap(), second);
    }
}

#[tokio::test]
async fn the_ledger_opens_only_with_the_unit_and_unit_work_it_was_written_with() {
    for db in backends().await {
        let path = db.location();
        let ledger = open(&path).await;
        ledger
            .record(share(1, 1, 500))
            .await
            .await
            .unwrap()
            .unwrap();
        drop(ledger);
        // Same values: fine.
        let ledger = open(&path).await;
        assert_eq!(ledger.unit(), "hash");
        assert_eq!(ledger.unit_work(), unit());
        drop(ledger);
        let other = UnitWork::from_work(Work::from_hashes(2_000)).unwrap();
        let err = AccrualLedger::open(&path, "hash", other)
            .await
            .err()
            .expect("another unit_work is refused");
        assert_eq!(
            err,
            LedgerError::UnitMismatch {
                stored_unit: "hash".into(),
                stored_unit_work: 1_000,
                configured_unit: "hash".into(),
                configured_unit_work: 2_000,
            }
        );
        let message = err.to_string();
        for part in [
            "1000 hashes",
            "2000 hashes",
            "ehash.unit_work",
            "pool.ledger_path",
        ] {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
        let err = AccrualLedger::open(&path, "sat", unit())
            .await
            .err()
            .expect("another unit is refused");
        let message = err.to_string();
        assert!(
            message.contains("unit `hash`") && message.contains("unit `sat`"),
            "{message}"
        );
        // A refused open changed nothing.
        let ledger = open(&path).await;
        assert_eq!(
            ledger
                .accrual(&key(1))
                .await
                .unwrap()
                .unwrap()
                .total
                .hashes(),
            500
        );
    }
}

/// A ledger file at `path` with the migrations before `version` only: the schema of an older
/// pool.
pub(super) async fn old_schema(path: &Path, version: i64) -> SqlitePool {
    let options = SqliteConnectOptions::from_str("sqlite://")
        .unwrap()
        .filename(path)
        .create_if_missing(true);
    let db = SqlitePool::connect_with(options).await.unwrap();
    let mut old = sqlx::migrate!("./migrations");
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    old.run(&db).await.unwrap();
    db
}

#[tokio::test]
async fn a_ledger_from_before_the_unit_was_recorded_adopts_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        // The schema of the version before `ledger_meta`, with an accrual in it.
        let db = old_schema(&path, 3).await;
        sqlx::query("INSERT INTO accruals VALUES ($1, $2, $3, 1)")
            .bind(key(1).as_bytes().as_slice())
            .bind(work_bytes(Work::from_hashes(4_000)))
            .bind(work_bytes(Work::from_hashes(4_000)))
            .execute(&db)
            .await
            .unwrap();
        db.close().await;
    }
    let other = UnitWork::from_work(Work::from_hashes(2_000)).unwrap();
    let ledger = AccrualLedger::open(&path, "hash", other).await.unwrap();
    assert_eq!(ledger.create_batches().await.unwrap()[0].amount, 2);
    drop(ledger);
    // From now on the adopted values are the ledger's.
    assert!(matches!(
        AccrualLedger::open(&path, "hash", unit()).await,
        Err(LedgerError::UnitMismatch { .. })
    ));
}

#[tokio::test]
async fn an_unwritable_ledger_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = AccrualLedger::open(&file.join("ledger.sqlite"), "hash", unit())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[tokio::test]
async fn batch_creation_reads_only_keys_with_new_work() {
    for db in backends().await {
        let path = db.location();
        let unit = hashpool_ehash::UnitWork::from_work(Work::from_hashes(1_000)).unwrap();
        let ledger = AccrualLedger::open(&path, "hash", unit).await.unwrap();
        // Many keys with less than a unit each (one share each under fresh keys).
        for k in 1..=200u8 {
            ledger
                .record(share(k as u32, k, 10))
                .await
                .await
                .unwrap()
                .unwrap();
        }
        // The first creation after start reads every key.
        assert!(ledger.create_batches().await.unwrap().is_empty());
        assert_eq!(ledger.keys_examined(), 200);
        // Nothing new: nothing read.
        assert!(ledger.create_batches().await.unwrap().is_empty());
        assert_eq!(ledger.keys_examined(), 200);
        // New work for one key: that key alone, and its unit is issued.
        ledger
            .record(share(1_000, 7, 995))
            .await
            .await
            .unwrap()
            .unwrap();
        let batches = ledger.create_batches().await.unwrap();
        assert_eq!(ledger.keys_examined(), 201);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].locking_key, key(7));
        assert_eq!(batches[0].amount, 1);
        // A refusal puts that key back among those to read, and its work is issued again.
        ledger
            .record_refusal(&batches[0].request_id, "amount-out-of-range")
            .await
            .unwrap();
        let again = ledger.create_batches().await.unwrap();
        assert_eq!(ledger.keys_examined(), 202);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].amount, 1);
        // After a restart every key is read once more (work left from before it).
        drop(ledger);
        let ledger = AccrualLedger::open(&path, "hash", unit).await.unwrap();
        assert!(ledger.create_batches().await.unwrap().is_empty());
        assert_eq!(ledger.keys_examined(), 200);
    }
}

#[tokio::test]
async fn the_metrics_follow_pending_work_open_batches_and_commits() {
    for db in backends().await {
        let path = db.location();
        let ledger = open(&path).await;
        let m = ledger.metrics().clone();
        assert_eq!((m.pending_work(), m.open_batches()), (0, 0));
        assert_eq!(m.oldest_open_batch_age(i64::MAX), 0.0);
        for (i, k) in [(1, 1), (2, 2), (3, 3)] {
            let r = ledger.record(share(i, k, 2_500)).await;
            assert_eq!(r.await.unwrap(), Ok(true));
        }
        assert_eq!(m.pending_work(), 7_500);
        assert!(m.commit_seconds.count() >= 1);

        // Two units per key: 6,000 hashes into three batches, 500 left per key.
        let batches = ledger.create_batches().await.unwrap();
        assert_eq!(batches.len(), 3);
        assert_eq!((m.pending_work(), m.open_batches()), (1_500, 3));
        let now = hashpool_role::unix_now_ms();
        assert!(m.oldest_open_batch_age(now + 60_000) >= 59.0);

        ledger
            .record_quote(&batches[0].request_id, "q1")
            .await
            .unwrap();
        ledger
            .record_refusal(&batches[1].request_id, "unit-mismatch")
            .await
            .unwrap();
        // A repeated answer changes nothing.
        ledger
            .record_quote(&batches[0].request_id, "q1")
            .await
            .unwrap();
        assert_eq!((m.pending_work(), m.open_batches()), (3_500, 1));
        assert!(m.oldest_open_batch_age(now + 60_000) > 0.0);
        ledger
            .record_quote(&batches[2].request_id, "q3")
            .await
            .unwrap();
        assert_eq!(m.open_batches(), 0);
        assert_eq!(m.oldest_open_batch_age(now + 60_000), 0.0);

        // Reopened, the ledger reads the same figures back.
        ledger.create_batches().await.unwrap();
        let (pending, open_batches) = (m.pending_work(), m.open_batches());
        drop(ledger);
        let ledger = open(&path).await;
        let m = ledger.metrics();
        assert_eq!(
            (m.pending_work(), m.open_batches()),
            (pending, open_batches)
        );
    }
}

fn block_share(n: u32, k: u8, work: u128, height: u32) -> AcceptedShare {
    AcceptedShare {
        block_found: true,
        block: Some(crate::accepted_share::BlockFacts {
            height,
            value_sats: 5_000_000_000 + u64::from(height),
            network_work: Work::from_hashes(2),
        }),
        ..share(n, k, work)
    }
}

#[tokio::test]
async fn a_found_block_records_its_reward_and_the_pools_work_up_to_it_across_restarts() {
    for db in backends().await {
        let path = db.location();
        let ledger = open(&path).await;
        assert_eq!(
            ledger.record(share(1, 1, 100)).await.await.unwrap(),
            Ok(true)
        );
        assert_eq!(
            ledger.record(share(2, 2, 50)).await.await.unwrap(),
            Ok(true)
        );
        let found = block_share(3, 1, 7, 11);
        assert_eq!(ledger.record(found).await.await.unwrap(), Ok(true));
        // A replay of the block's share is neither credited nor a second block.
        assert_eq!(ledger.record(found).await.await.unwrap(), Ok(false));
        drop(ledger);

        // The pool's work goes on from where it was, not from zero.
        let ledger = open(&path).await;
        assert_eq!(
            ledger.record(share(4, 3, 1_000)).await.await.unwrap(),
            Ok(true)
        );
        assert_eq!(
            ledger.record(block_share(5, 2, 3, 12)).await.await.unwrap(),
            Ok(true)
        );
        let blocks = ledger.found_blocks(10).await.unwrap();
        assert_eq!(blocks.len(), 2);
        let by_height = |h: u32| blocks.iter().find(|b| b.height == Some(h)).unwrap();
        assert_eq!(by_height(11).pool_work, Some(Work::from_hashes(157)));
        assert_eq!(by_height(11).value_sats, Some(5_000_000_011));
        assert_eq!(by_height(11).network_work, Some(Work::from_hashes(2)));
        assert_eq!(by_height(12).pool_work, Some(Work::from_hashes(1_160)));
        assert!(blocks.iter().all(|b| b.status == BlockStatus::Pending));
    }
}

#[tokio::test]
async fn found_blocks_are_followed_until_matured_and_orphans_until_a_reorg_cannot_return_them() {
    for db in backends().await {
        let ledger = open(&db.location()).await;
        for (n, height) in [(1u32, 10u32), (2, 11), (3, 12)] {
            assert_eq!(
                ledger
                    .record(block_share(n, 1, 10, height))
                    .await
                    .await
                    .unwrap(),
                Ok(true)
            );
        }
        let blocks = ledger.found_blocks(10).await.unwrap();
        let hash = |h: u32| blocks.iter().find(|b| b.height == Some(h)).unwrap().hash;
        assert!(ledger
            .set_block_status(hash(10), BlockStatus::Matured, 100)
            .await
            .unwrap());
        assert!(ledger
            .set_block_status(hash(11), BlockStatus::Orphaned, -1)
            .await
            .unwrap());
        // The same standing again changes nothing.
        assert!(!ledger
            .set_block_status(hash(11), BlockStatus::Orphaned, -1)
            .await
            .unwrap());
        let followed = |tip| {
            let ledger = ledger.clone();
            async move {
                let mut heights: Vec<_> = ledger
                    .blocks_to_follow(tip, 100)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|b| b.height)
                    .collect();
                heights.sort();
                heights
            }
        };
        assert_eq!(followed(109).await, vec![11, 12]);
        // The tip is 100 past the orphan: no reorg brings it back.
        assert_eq!(followed(111).await, vec![12]);
    }
}

/// Epochs of exactly the network's work per block (1,000 hashes here, one ehash's worth).
async fn open_with_epochs(path: impl Into<LedgerLocation>) -> AccrualLedger {
    let options = LedgerOptions {
        epochs: EpochSizing {
            ppm: 1_000_000,
            min_work: Work::from_hashes(1),
        },
        ..LedgerOptions::default()
    };
    AccrualLedger::open_with(path, "hash", unit(), options)
        .await
        .unwrap()
}

async fn credit(ledger: &AccrualLedger, s: AcceptedShare) {
    assert_eq!(ledger.record(s).await.await.unwrap(), Ok(true));
}

#[tokio::test]
async fn epochs_turn_where_a_share_starts_past_the_planned_end_and_batch_every_key_into_the_closing_one(
) {
    for db in backends().await {
        let path = db.location();
        let ledger = open_with_epochs(&path).await;
        // Work before the network's work per block is known belongs to no epoch.
        credit(&ledger, share(1, 3, 1_000)).await;
        let before = ledger.create_batches().await.unwrap();
        assert_eq!((before.len(), before[0].epoch), (1, None));

        ledger
            .observe_network_work(Work::from_hashes(1_000))
            .await
            .unwrap();
        // A control command after it: the epoch is open once this answers.
        assert!(ledger.create_batches().await.unwrap().is_empty());
        let epochs = ledger.epochs().await.unwrap();
        assert_eq!(epochs.len(), 1);
        assert_eq!(
            (
                epochs[0].start.hashes(),
                epochs[0].length.hashes(),
                epochs[0].end
            ),
            (1_000, 1_000, None)
        );

        // Epoch 0 is [1,000, 2,000) planned. Shares starting at 1,000, 1,600 and 1,900 are its
        // own (the last ends past the planned end, at 2,400); the next starts epoch 1.
        credit(&ledger, share(2, 1, 600)).await;
        credit(&ledger, share(3, 2, 300)).await;
        credit(&ledger, share(4, 1, 500)).await;
        let outcomes = ledger
            .record_all(vec![share(5, 2, 200), share(6, 2, 700), share(4, 1, 500)])
            .await
            .await
            .unwrap();
        assert_eq!(outcomes, vec![Ok(true), Ok(true), Ok(false)]);

        let epochs = ledger.epochs().await.unwrap();
        assert_eq!(epochs.len(), 2);
        assert_eq!(epochs[0].end, Some(Work::from_hashes(2_400)));
        assert_eq!(
            (epochs[1].index, epochs[1].start.hashes(), epochs[1].end),
            (1, 2_400, None)
        );
        // At the turn key 1 had 1,100 pending: one ehash in epoch 0, 100 carried on; key 2 had
        // 300: nothing yet.
        let key1 = ledger.batches_of(&key(1)).await.unwrap();
        assert_eq!(key1.len(), 1);
        assert_eq!((key1[0].amount, key1[0].epoch), (1, Some(0)));
        assert_eq!(
            ledger.accrual(&key(1)).await.unwrap().unwrap().pending,
            Work::from_hashes(100)
        );
        // Key 2's 1,200 now: one ehash of epoch 1.
        let made = ledger.create_batches().await.unwrap();
        assert_eq!(made.len(), 1);
        assert_eq!(
            (made[0].locking_key, made[0].amount, made[0].epoch),
            (key(2), 1, Some(1))
        );
        drop(ledger);

        // After a restart the open epoch (planned end 3,400) goes on, and turns at the first share
        // starting past it.
        let ledger = open_with_epochs(&path).await;
        credit(&ledger, share(7, 1, 1_000)).await; // starts at 3,300: epoch 1's
        credit(&ledger, share(8, 1, 50)).await; // starts at 4,300: epoch 2's
        let epochs = ledger.epochs().await.unwrap();
        assert_eq!(epochs.len(), 3);
        assert_eq!(epochs[1].end, Some(Work::from_hashes(4_300)));
        assert_eq!(epochs[2].start, Work::from_hashes(4_300));
        // Key 1 had 100 + 1,000 at the turn: one ehash of epoch 1.
        let key1 = ledger.batches_of(&key(1)).await.unwrap();
        assert_eq!(
            key1.iter().map(|b| (b.amount, b.epoch)).collect::<Vec<_>>(),
            vec![(1, Some(0)), (1, Some(1))]
        );
        // Every credited share is counted once, the replay not at all.
        let mut total = 0u128;
        for k in [1u8, 2, 3] {
            total += ledger
                .accrual(&key(k))
                .await
                .unwrap()
                .unwrap()
                .total
                .hashes();
        }
        assert_eq!(total, 4_350);
    }
}
