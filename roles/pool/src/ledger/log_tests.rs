//! The share log's guarantees: duplicates across restarts, batch commitments that follow from
//! the log, retention that keeps totals exact, a ledger from before the log, bytes per share.

use std::collections::HashMap;

use super::{
    log,
    store::work_bytes,
    test_db::{backends, key, unit},
    *,
};

fn hash(n: u32) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&n.to_le_bytes());
    h[31] = 0x5a;
    h
}

fn share(n: u32, k: u8, work: u128, tip: i64) -> AcceptedShare {
    AcceptedShare {
        channel_id: 2,
        locking_key: key(k),
        share_hash: hash(n),
        work: Work::from_hashes(work),
        block_found: false,
        block: None,
        tip,
    }
}

async fn open(location: impl Into<LedgerLocation>) -> AccrualLedger {
    AccrualLedger::open(location, "hash", unit()).await.unwrap()
}

/// Records `shares` and waits for each to be durable; returns their outcomes.
async fn record(ledger: &AccrualLedger, shares: &[AcceptedShare]) -> Vec<bool> {
    let mut receipts = Vec::new();
    for s in shares {
        receipts.push(ledger.record(*s).await);
    }
    let mut out = Vec::new();
    for r in receipts {
        out.push(r.await.unwrap().unwrap());
    }
    out
}

/// Every log row: (first_seq, committed_at, records).
async fn log_rows(ledger: &AccrualLedger) -> Vec<(i64, i64, Vec<log::Record>, Vec<u8>)> {
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT first_seq, committed_at, count, records FROM share_log ORDER BY first_seq",
    )
    .fetch_all(&ledger.db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(seq, at, count, bytes)| {
            let records = log::decode(&bytes, count as usize).unwrap();
            (seq, at, records, bytes)
        })
        .collect()
}

#[tokio::test]
async fn a_share_replayed_after_a_restart_within_its_tip_is_refused_as_duplicate() {
    for db in backends().await {
        let path = db.location();
        let ledger = open(&path).await;
        assert_eq!(
            record(&ledger, &[share(1, 1, 500, 7), share(2, 1, 500, 7)]).await,
            [true, true]
        );
        drop(ledger);
        let ledger = open(&path).await;
        // Both replayed on the same tip, and one again on the next tip (still held: a share in
        // flight across a block change), next to a new share: only the new one is credited.
        assert_eq!(
            record(
                &ledger,
                &[
                    share(1, 1, 500, 7),
                    share(3, 1, 500, 7),
                    share(2, 1, 500, 8)
                ]
            )
            .await,
            [false, true, false]
        );
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!((a.total.hashes(), a.shares), (1_500, 3));
        assert_eq!(ledger.share_work(&key(1)).await.unwrap(), (a.total, 3));
    }
}

/// Folds key `k`'s records in `[from, until)` into `chain`.
fn fold(
    rows: &[(i64, i64, Vec<log::Record>, Vec<u8>)],
    key_id: u64,
    from: i64,
    until: i64,
    mut chain: [u8; 32],
) -> ([u8; 32], u32) {
    let mut count = 0;
    for (first, _, records, _) in rows {
        for (i, r) in records.iter().enumerate() {
            let seq = first + i as i64;
            if r.key_id == key_id && seq >= from && seq < until {
                chain = chain_step(&chain, &r.hash);
                count += 1;
            }
        }
    }
    (chain, count)
}

#[tokio::test]
async fn every_batch_commitment_follows_from_the_log() {
    for db in backends().await {
        let ledger = open(&db.location()).await;
        let mut n = 0;
        let mut next = |k: u8, work: u128| {
            n += 1;
            share(n, k, work, 1)
        };
        // Key 1 and key 2 interleaved over several groups and batches; key 1's second batch is
        // refused (its shares go to its third), key 2's first is refused after its second exists
        // (its shares stay with it).
        let round1: Vec<_> = (0..6).map(|i| next(1 + i % 2, 700)).collect();
        record(&ledger, &round1).await;
        let b1 = ledger.create_batches().await.unwrap();
        let round2: Vec<_> = (0..4).map(|i| next(1 + i % 2, 900)).collect();
        record(&ledger, &round2).await;
        let b2 = ledger.create_batches().await.unwrap();
        let of =
            |batches: &[Batch], k: u8| batches.iter().find(|b| b.locking_key == key(k)).cloned();
        ledger
            .record_refusal(&of(&b2, 1).unwrap().request_id, "amount-out-of-range")
            .await
            .unwrap()
            .unwrap();
        ledger
            .record_refusal(&of(&b1, 2).unwrap().request_id, "amount-out-of-range")
            .await
            .unwrap()
            .unwrap();
        let round3: Vec<_> = (0..3).map(|_| next(1, 400)).collect();
        record(&ledger, &round3).await;
        ledger.create_batches().await.unwrap();

        let rows = log_rows(&ledger).await;
        let ids: HashMap<Vec<u8>, i64> =
            sqlx::query_as::<_, (Vec<u8>, i64)>("SELECT locking_key, key_id FROM accruals")
                .fetch_all(&ledger.db.pool)
                .await
                .unwrap()
                .into_iter()
                .collect();
        let mut checked = 0;
        for k in [1u8, 2] {
            let key_id = ids[&key(k).as_bytes().to_vec()] as u64;
            let mut covered = 0;
            for b in ledger.batches_of(&key(k)).await.unwrap() {
                let (from, until, chain_from): (i64, i64, Vec<u8>) = sqlx::query_as(
                    "SELECT log_from, log_until, chain_from FROM batches WHERE id = $1",
                )
                .bind(b.id)
                .fetch_one(&ledger.db.pool)
                .await
                .unwrap();
                let (chain, count) =
                    fold(&rows, key_id, from, until, chain_from.try_into().unwrap());
                assert_eq!(chain, b.share_commitment, "batch {} of key {k}", b.id);
                assert_eq!(count, b.share_count, "batch {} of key {k}", b.id);
                if b.refused_code.is_none() {
                    covered += count;
                }
                checked += 1;
            }
            // Key 1: every share is in a batch not refused. Key 2: its refused first batch kept
            // its three shares; its second holds the other two.
            let expected = if k == 1 { 3 + 2 + 3 } else { 2 };
            assert_eq!(covered, expected, "key {k}");
        }
        // Three each: key 1's third took over its refused second's shares; key 2's third has none
        // of its own (only work its refused first returned).
        assert_eq!(checked, 6);
        // Whatever was refused is pending again: issued + pending = total for both keys.
        for k in [1u8, 2] {
            let a = ledger.accrual(&key(k)).await.unwrap().unwrap();
            let issued: u64 = ledger
                .batches_of(&key(k))
                .await
                .unwrap()
                .iter()
                .filter(|b| b.refused_code.is_none())
                .map(|b| b.amount)
                .sum();
            assert_eq!(
                issued as u128 * 1_000 + a.pending.hashes(),
                a.total.hashes()
            );
        }
    }
}

#[tokio::test]
async fn retention_prunes_only_rows_older_than_the_window_and_totals_stay_exact() {
    for db in backends().await {
        let path = db.location();
        let ledger = open(&path).await;
        // Three groups of key 1 (and one share of key 2 in the second).
        record(&ledger, &[share(1, 1, 600, 1), share(2, 1, 600, 1)]).await;
        record(&ledger, &[share(3, 1, 600, 1), share(4, 2, 450, 1)]).await;
        record(&ledger, &[share(5, 1, 600, 1)]).await;
        let before = log_rows(&ledger).await;
        assert_eq!(before.len(), 3);
        // The first two groups are older than the window; the third is inside it.
        let now = hashpool_role::unix_now_ms();
        for (i, (seq, _, _, _)) in before.iter().enumerate() {
            let at = if i < 2 { now - 7_200_000 } else { now - 60_000 };
            sqlx::query("UPDATE share_log SET committed_at = $1 WHERE first_seq = $2")
                .bind(at)
                .bind(seq)
                .execute(&ledger.db.pool)
                .await
                .unwrap();
        }
        let accrual_before = ledger.accrual(&key(1)).await.unwrap().unwrap();
        let pruned = ledger.prune(now - 3_600_000).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                rows: 2,
                shares: 4,
                more: false
            }
        );
        let after = log_rows(&ledger).await;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].0, before[2].0);
        // Nothing more to prune.
        assert_eq!(ledger.prune(now - 3_600_000).await.unwrap().rows, 0);
        // The summary's digest is the chain over the pruned rows.
        let (from, through, shares, digest): (i64, i64, i64, Vec<u8>) =
            sqlx::query_as("SELECT from_seq, through_seq, shares, digest FROM share_log_pruned")
                .fetch_one(&ledger.db.pool)
                .await
                .unwrap();
        let mut expected = [0u8; 32];
        for (seq, _, _, bytes) in &before[..2] {
            expected = chain_row(&expected, *seq, bytes);
        }
        assert_eq!((from, through, shares), (before[0].0, before[2].0, 4));
        assert_eq!(digest, expected.to_vec());
        // Totals are exact: the accrual is untouched, the log holds what is left of it, and the
        // next batch takes the whole units of all of it.
        assert_eq!(
            ledger.accrual(&key(1)).await.unwrap().unwrap(),
            accrual_before
        );
        assert_eq!(
            ledger.share_work(&key(1)).await.unwrap(),
            (Work::from_hashes(600), 1)
        );
        drop(ledger);
        let ledger = open(&path).await;
        // 2,400 before the restart and 1,100 after: 3 ehash, 500 carried.
        record(&ledger, &[share(6, 1, 1_100, 1)]).await;
        let batches = ledger.create_batches().await.unwrap();
        let mine = batches.iter().find(|b| b.locking_key == key(1)).unwrap();
        assert_eq!((mine.amount, mine.share_count), (3, 5));
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
        // The seq goes on after the pruned range: a new row never reuses a pruned number.
        let rows = log_rows(&ledger).await;
        assert_eq!(rows.last().unwrap().0, before[2].0 + 1);
    }
}

#[tokio::test]
async fn a_ledger_from_before_the_log_keeps_its_shares_and_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    let now = hashpool_role::unix_now_ms();
    {
        let db = super::tests::old_schema(&path, 5).await;
        sqlx::query("INSERT INTO ledger_meta VALUES (1, 'hash', $1, 0)")
            .bind(work_bytes(Work::from_hashes(1_000)))
            .execute(&db)
            .await
            .unwrap();
        // Key 1: a batched share (batch 1) and two unbatched, one a block; 1,500 pending.
        sqlx::query(
            "INSERT INTO batches (id, request_id, locking_key, amount, work, share_count, \
             share_commitment, created_at, quote_id) VALUES (1, $1, $2, 1, $3, 1, $4, 0, 'q')",
        )
        .bind([1u8; 32].as_slice())
        .bind(key(1).as_bytes().as_slice())
        .bind(work_bytes(Work::from_hashes(1_000)))
        .bind([0u8; 32].as_slice())
        .execute(&db)
        .await
        .unwrap();
        for (n, batch, block) in [(1u32, Some(1i64), false), (2, None, true), (3, None, false)] {
            sqlx::query(
                "INSERT INTO shares (share_hash, locking_key, channel_id, work, block_found, \
                 accepted_at, batch_id) VALUES ($1, $2, 9, $3, $4, $5, $6)",
            )
            .bind(hash(n).as_slice())
            .bind(key(1).as_bytes().as_slice())
            .bind(work_bytes(Work::from_hashes(
                1_000 + 250 * u128::from(n > 1),
            )))
            .bind(block)
            .bind(now - 60_000 * i64::from(n))
            .bind(batch)
            .execute(&db)
            .await
            .unwrap();
        }
        sqlx::query("INSERT INTO accruals VALUES ($1, $2, $3, 3)")
            .bind(key(1).as_bytes().as_slice())
            .bind(work_bytes(Work::from_hashes(2_500)))
            .bind(work_bytes(Work::from_hashes(3_500)))
            .execute(&db)
            .await
            .unwrap();
        db.close().await;
    }
    let ledger = open(&path).await;
    // A replay of a recent old share is a duplicate; a new share is credited.
    assert_eq!(
        record(&ledger, &[share(3, 1, 1_250, 4), share(10, 1, 500, 4)]).await,
        [false, true]
    );
    // The next batch covers the two unbatched old shares and the new one, chained in order.
    let batch = ledger.create_batches().await.unwrap().remove(0);
    assert_eq!((batch.amount, batch.share_count), (3, 3));
    let mut chain = [0u8; 32];
    for n in [3u32, 2, 10] {
        chain = chain_step(&chain, &hash(n));
    }
    assert_eq!(batch.share_commitment, chain);
    let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
    assert_eq!(
        (a.total.hashes(), a.pending.hashes(), a.shares),
        (4_000, 0, 4)
    );
    assert_eq!(
        ledger.share_work(&key(1)).await.unwrap(),
        (Work::from_hashes(4_000), 4)
    );
    // The old block and the last day's work are in the miner API's tables.
    let blocks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM found_blocks")
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap();
    assert_eq!(blocks, 1);
    let minutes: Vec<(i64,)> = sqlx::query_as("SELECT shares FROM key_minutes")
        .fetch_all(&ledger.db.pool)
        .await
        .unwrap();
    assert_eq!(minutes.iter().map(|m| m.0).sum::<i64>(), 4);
    // Retention ages the old rows out with the same window.
    ledger.prune(now).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shares")
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(ledger.accrual(&key(1)).await.unwrap().unwrap(), a);
}

#[tokio::test]
async fn a_share_costs_under_64_bytes_on_disk_in_full_groups() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("l.sqlite")).await;
    let empty = ledger.bytes_on_disk().await.unwrap();
    // 40,000 shares of 8 keys at difficulty 2^20 (2^52 hashes each), queued at once so the
    // writer commits them in full groups.
    const SHARES: u32 = 40_000;
    let shares: Vec<_> = (0..SHARES)
        .map(|n| share(n, (n % 8) as u8 + 1, 1u128 << 52, 3))
        .collect();
    record(&ledger, &shares).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&ledger.db.pool)
        .await
        .unwrap();
    let used = ledger.bytes_on_disk().await.unwrap() - empty;
    let per_share = used as f64 / f64::from(SHARES);
    assert!(per_share <= 64.0, "{per_share:.1} bytes per share");
    let mut total = 0u128;
    for k in 1..=8 {
        total += ledger
            .accrual(&key(k))
            .await
            .unwrap()
            .unwrap()
            .total
            .hashes();
    }
    assert_eq!(total, u128::from(SHARES) << 52);
}

#[tokio::test]
async fn a_group_that_fails_to_commit_leaves_nothing_and_the_next_one_commits() {
    for db in backends().await {
        let ledger = open(&db.location()).await;
        record(&ledger, &[share(1, 1, 500, 1)]).await;
        // Every write of an accrual fails from now on: the group's log row was already inserted
        // in its transaction when that statement fails.
        let (create, drop) = match ledger.backend() {
            Backend::Sqlite => (
                vec![
                    "CREATE TRIGGER refuse_accruals BEFORE UPDATE ON accruals \
                 BEGIN SELECT RAISE(ABORT, 'disk trouble'); END",
                ],
                "DROP TRIGGER refuse_accruals",
            ),
            Backend::Postgres => (
                vec![
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'disk trouble'; END $$",
                    "CREATE TRIGGER refuse_accruals BEFORE UPDATE ON accruals \
                 FOR EACH ROW EXECUTE FUNCTION refuse()",
                ],
                "DROP TRIGGER refuse_accruals ON accruals",
            ),
        };
        for sql in create {
            sqlx::query(sql).execute(&ledger.db.pool).await.unwrap();
        }
        let outcomes: Vec<_> = {
            let mut receipts = Vec::new();
            for s in [share(2, 1, 700, 1), share(3, 1, 800, 1)] {
                receipts.push(ledger.record(s).await);
            }
            let mut out = Vec::new();
            for r in receipts {
                out.push(r.await.unwrap());
            }
            out
        };
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Err(LedgerError::Database(m)) if m.contains("disk trouble"))),
            "{outcomes:?}"
        );
        // Nothing of the failed group stayed: one log row, the first share's accrual.
        assert_eq!(log_rows(&ledger).await.len(), 1);
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!((a.total.hashes(), a.shares), (500, 1));
        sqlx::query(drop).execute(&ledger.db.pool).await.unwrap();
        // The same shares again: credited (they were never stored), numbered right after the
        // first.
        assert_eq!(
            record(&ledger, &[share(2, 1, 700, 1), share(3, 1, 800, 1)]).await,
            [true, true]
        );
        let rows = log_rows(&ledger).await;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].0, 1);
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!((a.total.hashes(), a.shares), (2_000, 3));
        assert_eq!(ledger.share_work(&key(1)).await.unwrap(), (a.total, 3));
    }
}
