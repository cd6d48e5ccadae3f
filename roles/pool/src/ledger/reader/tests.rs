use super::*;
use crate::{
    accepted_share::AcceptedShare,
    ledger::{
        test_db::{backends, key, unit, TestDb},
        AccrualLedger,
    },
};

fn share(n: u32, k: u8, work: u128, block: bool) -> AcceptedShare {
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&n.to_le_bytes());
    AcceptedShare {
        channel_id: 3,
        locking_key: key(k),
        share_hash: hash,
        work: Work::from_hashes(work),
        block_found: block,
        block: None,
        tip: 1,
    }
}

async fn record(ledger: &AccrualLedger, shares: impl IntoIterator<Item = AcceptedShare>) {
    let mut receipts = Vec::new();
    for s in shares {
        receipts.push(ledger.record(s).await);
    }
    for r in receipts {
        assert_eq!(r.await.unwrap(), Ok(true));
    }
}

/// Replaces key `k`'s per-minute work with `minutes` (time, work, shares) and its last share's
/// time with `last_ms`: the writer stamps work with the minute it commits in.
async fn place(ledger: &AccrualLedger, k: u8, minutes: &[(i64, u128, i64)], last_ms: i64) {
    let id: i64 = sqlx::query_scalar("SELECT key_id FROM accruals WHERE locking_key = $1")
        .bind(key(k).as_bytes().as_slice())
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM key_minutes WHERE key_id = $1")
        .bind(id)
        .execute(&ledger.db.pool)
        .await
        .unwrap();
    for (at, work, shares) in minutes {
        sqlx::query(
            "INSERT INTO key_minutes (key_id, minute, work, shares) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(at.div_euclid(60_000))
        .bind(work.to_le_bytes().as_slice())
        .bind(shares)
        .execute(&ledger.db.pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE accruals SET last_share_at = $1 WHERE key_id = $2")
        .bind(last_ms)
        .bind(id)
        .execute(&ledger.db.pool)
        .await
        .unwrap();
}

/// Puts found block `n` at `at_ms`.
async fn stamp_block(ledger: &AccrualLedger, n: u32, at_ms: i64) {
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&n.to_le_bytes());
    sqlx::query("UPDATE found_blocks SET found_at = $1 WHERE hash = $2")
        .bind(at_ms)
        .bind(hash.as_slice())
        .execute(&ledger.db.pool)
        .await
        .unwrap();
}

async fn setup(db: &TestDb, limits: ReadLimits) -> (AccrualLedger, LedgerReader) {
    let ledger = AccrualLedger::open(db.location(), "hash", unit())
        .await
        .unwrap();
    let reader = LedgerReader::open(db.location(), unit(), limits)
        .await
        .unwrap();
    (ledger, reader)
}

/// "Now" for these tests: the real time, fixed for the run, 20 s into its minute (the tests
/// place rows a second and a minute before it in distinct minutes). The writer
/// prunes per-minute rows older than a day by the real clock, at open and every minute: rows
/// placed around a fixed date in the past could vanish under a test that reads them.
fn now() -> i64 {
    static NOW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *NOW.get_or_init(|| {
        let ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is past 1970")
                .as_millis(),
        )
        .expect("milliseconds fit in i64");
        ms - ms % 60_000 + 20_000
    })
}

#[tokio::test]
async fn an_unknown_key_has_an_empty_report() {
    for db in backends().await {
        let (ledger, reader) = setup(&db, ReadLimits::default()).await;
        record(&ledger, [share(1, 1, 5_000, true)]).await;
        let r = reader
            .key_report(&key(2), now(), &[600, 3600])
            .await
            .unwrap();
        assert_eq!(r.accrual, None);
        assert_eq!((r.quoted, r.requested, r.blocks_found), (0, 0, 0));
        assert_eq!(r.last_share_ms, None);
        assert!(r.blocks.is_empty() && r.quotes.is_empty());
        assert_eq!(r.windows.len(), 2);
        assert!(r
            .windows
            .iter()
            .all(|w| w.work == Work::ZERO && w.shares == 0 && w.complete));
    }
}

#[tokio::test]
async fn a_keys_report_equals_its_ledger_rows() {
    for db in backends().await {
        let (ledger, reader) = setup(
            &db,
            ReadLimits {
                blocks: 2,
                ..Default::default()
            },
        )
        .await;
        // Key 1: 2,500 hashes, quoted as 2 ehash (500 left); 1,700 more make a second batch of 2,
        // not answered yet (200 left); then 900 more pending.
        record(
            &ledger,
            [share(1, 1, 1_000, false), share(2, 1, 1_500, true)],
        )
        .await;
        let first = ledger.create_batches().await.unwrap();
        assert_eq!(first[0].amount, 2);
        ledger
            .record_quote(&first[0].request_id, "quote-a")
            .await
            .unwrap()
            .unwrap();
        record(
            &ledger,
            [share(3, 1, 1_700, true), share(4, 2, 9_000, false)],
        )
        .await;
        let second = ledger.create_batches().await.unwrap();
        let ours = second.iter().find(|b| b.locking_key == key(1)).unwrap();
        assert_eq!(ours.amount, 2);
        // Another key's batch refused: nothing changes for key 1.
        let theirs = second.iter().find(|b| b.locking_key == key(2)).unwrap();
        ledger
            .record_refusal(&theirs.request_id, "amount-out-of-range")
            .await
            .unwrap();
        record(&ledger, [share(5, 1, 900, true)]).await;
        // The minutes the writer recorded hold all of key 1's work.
        let recorded = reader
            .key_report(&key(1), hashpool_role::unix_now_ms(), &[600])
            .await
            .unwrap();
        assert_eq!(
            (
                recorded.windows[0].work.hashes(),
                recorded.windows[0].shares
            ),
            (5_100, 4)
        );
        // Shares 1, 2, 3 and 5 at -2 h, -30 min, -1 min and -1 s.
        place(
            &ledger,
            1,
            &[
                (now() - 7_200_000, 1_000, 1),
                (now() - 1_800_000, 1_500, 1),
                (now() - 60_000, 1_700, 1),
                (now() - 1_000, 900, 1),
            ],
            now() - 1_000,
        )
        .await;
        for (n, at) in [
            (2, now() - 1_800_000),
            (3, now() - 60_000),
            (5, now() - 1_000),
        ] {
            stamp_block(&ledger, n, at).await;
        }

        let r = reader
            .key_report(&key(1), now(), &[600, 3_600, 86_400])
            .await
            .unwrap();
        let accrual = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(r.accrual, Some(accrual));
        assert_eq!(accrual.total, Work::from_hashes(5_100));
        // Quoted: what the answered batches say; requested: the open one.
        let batches = ledger.batches_of(&key(1)).await.unwrap();
        let answered: u64 = batches
            .iter()
            .filter(|b| b.quote_id.is_some() && b.refused_code.is_none())
            .map(|b| b.amount)
            .sum();
        let open: u64 = batches
            .iter()
            .filter(|b| b.quote_id.is_none() && b.refused_code.is_none())
            .map(|b| b.amount)
            .sum();
        assert_eq!((r.quoted, r.requested), (answered, open));
        assert_eq!((r.quoted, r.requested), (2, 2));
        assert_eq!(
            (r.quoted + r.requested) as u128 * 1_000 + accrual.pending.hashes(),
            accrual.total.hashes()
        );
        assert_eq!(r.last_share_ms, Some(now() - 1_000));
        let windows: Vec<_> = r
            .windows
            .iter()
            .map(|w| (w.secs, w.work.hashes(), w.shares, w.complete))
            .collect();
        assert_eq!(
            windows,
            vec![
                (600, 1_700 + 900, 2, true),
                (3_600, 1_500 + 1_700 + 900, 3, true),
                (86_400, 5_100, 4, true),
            ]
        );
        // Three blocks, the newest two listed, newest first.
        assert_eq!(r.blocks_found, 3);
        let listed: Vec<_> = r.blocks.iter().map(|b| (b.hash[0], b.at_ms)).collect();
        assert_eq!(listed, vec![(5, now() - 1_000), (3, now() - 60_000)]);
        assert_eq!(r.blocks[0].channel_id, 3);
        assert_eq!(r.quotes.len(), 1);
        assert_eq!(
            (r.quotes[0].quote_id.as_str(), r.quotes[0].amount),
            ("quote-a", 2)
        );
    }
}

#[tokio::test]
async fn windows_past_the_row_limit_say_what_they_cover() {
    for db in backends().await {
        let (ledger, reader) = setup(
            &db,
            ReadLimits {
                window_minutes: 3,
                ..Default::default()
            },
        )
        .await;
        record(&ledger, (1..=5).map(|n| share(n, 1, 100, false))).await;
        // Shares 1..5 at -50 min, -40, -30, -20 and -1 min.
        let minutes: Vec<_> = [50, 40, 30, 20, 1]
            .iter()
            .map(|m| (now() - m * 60_000, 100, 1))
            .collect();
        place(&ledger, 1, &minutes, now() - 60_000).await;
        let r = reader
            .key_report(&key(1), now(), &[600, 3_600])
            .await
            .unwrap();
        // 10 min: only share 5, and the rows read reach further back: whole.
        assert_eq!((r.windows[0].shares, r.windows[0].complete), (1, true));
        // 1 h: the limit of three rows was met; it covers shares 3..5, from share 3's minute on.
        let hour = r.windows[1];
        assert_eq!(
            (hour.shares, hour.work.hashes(), hour.complete),
            (3, 300, false)
        );
        assert_eq!(
            hour.covered_from_ms,
            (now() - 30 * 60_000).div_euclid(60_000) * 60_000
        );
    }
}

#[tokio::test]
async fn a_keys_quoted_ehash_is_summed_per_epoch_for_the_newest_epochs() {
    for db in backends().await {
        let (ledger, reader) = setup(&db, ReadLimits::default()).await;
        // Epochs of half of 4,000 hashes.
        ledger
            .observe_network_work(Work::from_hashes(4_000))
            .await
            .unwrap();
        record(&ledger, [share(1, 1, 1_500, false)]).await;
        let b = ledger.create_batches().await.unwrap();
        assert_eq!((b[0].amount, b[0].epoch), (1, Some(0)));
        ledger.record_quote(&b[0].request_id, "q0").await.unwrap();
        // 700 more in epoch 0; the next share starts at 2,200: the epoch turns, batching 1.
        record(&ledger, [share(2, 1, 700, false), share(3, 1, 300, false)]).await;
        let turned = ledger.open_batches().await.unwrap();
        assert_eq!((turned[0].amount, turned[0].epoch), (1, Some(0)));
        ledger
            .record_quote(&turned[0].request_id, "q1")
            .await
            .unwrap();
        record(&ledger, [share(4, 1, 1_600, false)]).await;
        let b = ledger.create_batches().await.unwrap();
        assert_eq!((b[0].amount, b[0].epoch), (2, Some(1)));
        ledger.record_quote(&b[0].request_id, "q2").await.unwrap();
        // Requested, not quoted: not counted.
        record(&ledger, [share(5, 1, 1_000, false)]).await;
        assert_eq!(ledger.create_batches().await.unwrap().len(), 1);

        let report = reader
            .key_report(&key(1), hashpool_role::unix_now_ms(), &[60])
            .await
            .unwrap();
        assert_eq!(report.ehash_by_epoch, vec![(1, 2), (0, 2)]);
        let newest_only = LedgerReader::open(
            db.location(),
            unit(),
            ReadLimits {
                epochs: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let report = newest_only
            .key_report(&key(1), hashpool_role::unix_now_ms(), &[60])
            .await
            .unwrap();
        assert_eq!(report.ehash_by_epoch, vec![(1, 2)]);
    }
}
