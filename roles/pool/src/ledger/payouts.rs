//! Withdrawals paid in the pool's coinbases (docs/settlement.md, "Withdrawals in the
//! coinbase"): the rows the pool keeps of the mint's withdrawals, and their way from `queued`
//! through `offered` (in the pool's templates at one height) to `in_block` and `matured`.
//!
//! A payout is offered at one height at a time, written before any miner has a job paying it,
//! and is not offered at another height until the chain's block at that height has been read:
//! whatever block the chain holds there (the pool's, found on any template, or another's)
//! decides whether it was paid. So a pool restart at any moment, or a block the pool found but
//! never recorded, cannot make a payout go out twice.

use std::collections::HashMap;

use bitcoin::{hashes::Hash as _, BlockHash, ScriptBuf, Transaction, TxOut, Txid};
use hashpool_settlement::withdrawals::{Payout, PayoutState, Withdrawal};
use sqlx::{AnyPool, Row};

use super::{
    error::LedgerError,
    store::{begin_write, finish, Db},
};

/// A payout as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRow {
    pub quote_id: String,
    pub sats: u64,
    pub address: String,
    pub script: ScriptBuf,
    pub state: PayoutState,
    pub height: Option<u32>,
    pub block_hash: Option<BlockHash>,
    pub txid: Option<Txid>,
    pub vout: Option<u32>,
}

impl PayoutRow {
    pub fn output(&self) -> TxOut {
        TxOut {
            value: bitcoin::Amount::from_sat(self.sats),
            script_pubkey: self.script.clone(),
        }
    }

    pub fn public(&self) -> Payout {
        Payout {
            quote_id: self.quote_id.clone(),
            sats: self.sats,
            address: self.address.clone(),
            state: self.state,
            height: self.height,
            block_hash: self.block_hash.map(|h| h.to_string()),
            txid: self.txid.map(|t| t.to_string()),
            vout: self.vout,
        }
    }
}

const COLUMNS: &str = "quote_id, sats, address, script, state, height, block_hash, txid, vout";

fn row(r: &sqlx::any::AnyRow) -> Result<PayoutRow, LedgerError> {
    let corrupt = |what: &str| LedgerError::Database(format!("corrupt payout {what}"));
    let hash32 = |i: usize| -> Result<Option<[u8; 32]>, LedgerError> {
        r.get::<Option<Vec<u8>>, _>(i)
            .map(|b| b.try_into().map_err(|_| corrupt("hash")))
            .transpose()
    };
    Ok(PayoutRow {
        quote_id: r.get(0),
        sats: u64::try_from(r.get::<i64, _>(1)).map_err(|_| corrupt("amount"))?,
        address: r.get(2),
        script: ScriptBuf::from_bytes(r.get::<Vec<u8>, _>(3)),
        state: PayoutState::parse(&r.get::<String, _>(4)).ok_or_else(|| corrupt("state"))?,
        height: r
            .get::<Option<i64>, _>(5)
            .map(|h| u32::try_from(h).map_err(|_| corrupt("height")))
            .transpose()?,
        block_hash: hash32(6)?.map(BlockHash::from_byte_array),
        txid: hash32(7)?.map(Txid::from_byte_array),
        vout: r
            .get::<Option<i64>, _>(8)
            .map(|v| u32::try_from(v).map_err(|_| corrupt("vout")))
            .transpose()?,
    })
}

/// Adds the mint's withdrawals not held yet as `queued`; returns how many were new. A
/// withdrawal already held keeps its row (the mint's list is read again and again).
pub(super) async fn record(db: &Db, list: &[Withdrawal]) -> Result<usize, LedgerError> {
    let now = hashpool_role::unix_now_ms();
    let mut tx = begin_write(db).await?;
    let result: Result<_, LedgerError> = async {
        let mut added = 0;
        for w in list {
            let script = hex_bytes(&w.script).ok_or_else(|| {
                LedgerError::Database(format!("withdrawal {}: script is not hex", w.quote_id))
            })?;
            let sats = i64::try_from(w.sats)
                .map_err(|_| LedgerError::Database(format!("withdrawal {}: amount", w.quote_id)))?;
            added += sqlx::query(
                "INSERT INTO payouts (quote_id, sats, address, script, recorded_at, \
             changed_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (quote_id) DO NOTHING",
            )
            .bind(&w.quote_id)
            .bind(sats)
            .bind(&w.address)
            .bind(script)
            .bind(i64::try_from(w.recorded_at).unwrap_or(i64::MAX))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        Ok(added)
    }
    .await;
    finish(tx, result).await
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    use bitcoin::hex::FromHex;
    Vec::<u8>::from_hex(text).ok()
}

/// The payouts of a template at `height` whose coinbase leaves `value` sats: those already
/// offered there, then queued ones oldest first, each taken if it still fits, at most `max`.
/// The queued ones taken are marked offered at `height` before this returns.
pub(super) async fn offer(
    db: &Db,
    height: u32,
    value: u64,
    max: usize,
) -> Result<Vec<PayoutRow>, LedgerError> {
    let mut tx = begin_write(db).await?;
    let result: Result<_, LedgerError> = async {
        let candidates = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payouts WHERE (state = 'offered' AND height = $1) \
         OR state = 'queued' ORDER BY state = 'queued', recorded_at, quote_id"
        ))
        .bind(i64::from(height))
        .fetch_all(&mut *tx)
        .await?;
        let mut chosen = Vec::new();
        let mut left = value;
        for r in candidates.iter().map(row) {
            let r = r?;
            if chosen.len() >= max {
                break;
            }
            if r.sats > left {
                continue;
            }
            left -= r.sats;
            chosen.push(r);
        }
        let now = hashpool_role::unix_now_ms();
        for r in chosen.iter_mut().filter(|r| r.state == PayoutState::Queued) {
            sqlx::query(
                "UPDATE payouts SET state = 'offered', height = $1, changed_at = $2 \
             WHERE quote_id = $3 AND state = 'queued'",
            )
            .bind(i64::from(height))
            .bind(now)
            .bind(&r.quote_id)
            .execute(&mut *tx)
            .await?;
            r.state = PayoutState::Offered;
            r.height = Some(height);
        }
        Ok(chosen)
    }
    .await;
    finish(tx, result).await
}

/// Payouts in `states`, oldest first, at most `limit`.
pub(super) async fn in_states(
    db: &AnyPool,
    states: &[PayoutState],
    limit: u32,
) -> Result<Vec<PayoutRow>, LedgerError> {
    let list = states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payouts WHERE state IN ({list}) \
         ORDER BY recorded_at, quote_id LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(db)
    .await?;
    rows.iter().map(row).collect()
}

/// Every payout, newest first, at most `limit`.
pub(super) async fn newest(db: &AnyPool, limit: u32) -> Result<Vec<PayoutRow>, LedgerError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payouts ORDER BY recorded_at DESC, quote_id DESC LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(db)
    .await?;
    rows.iter().map(row).collect()
}

pub(super) async fn one(db: &AnyPool, quote_id: &str) -> Result<Option<PayoutRow>, LedgerError> {
    let found = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payouts WHERE quote_id = $1"
    ))
    .bind(quote_id)
    .fetch_optional(db)
    .await?;
    found.as_ref().map(row).transpose()
}

/// Settles the payouts offered at `height` by the chain's block there (`hash`, its
/// `coinbase`): each one an output of the coinbase pays (script and amount, one output per
/// payout) is `in_block`, the others are queued again. Returns (paid, queued again).
pub(super) async fn settle_offered(
    db: &Db,
    height: u32,
    hash: BlockHash,
    coinbase: &Transaction,
) -> Result<(usize, usize), LedgerError> {
    let mut tx = begin_write(db).await?;
    let result: Result<_, LedgerError> = async {
        let offered = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payouts WHERE state = 'offered' AND height = $1 \
         ORDER BY recorded_at, quote_id"
        ))
        .bind(i64::from(height))
        .fetch_all(&mut *tx)
        .await?;
        // Each output pays at most one payout.
        let mut unclaimed: HashMap<(Vec<u8>, u64), Vec<u32>> = HashMap::new();
        for (vout, out) in coinbase.output.iter().enumerate() {
            unclaimed
                .entry((out.script_pubkey.to_bytes(), out.value.to_sat()))
                .or_default()
                .push(vout as u32);
        }
        for outputs in unclaimed.values_mut() {
            outputs.reverse();
        }
        let txid = coinbase.compute_txid();
        let now = hashpool_role::unix_now_ms();
        let (mut paid, mut queued) = (0, 0);
        for r in offered.iter().map(row) {
            let r = r?;
            let vout = unclaimed
                .get_mut(&(r.script.to_bytes(), r.sats))
                .and_then(Vec::pop);
            match vout {
                Some(vout) => {
                    sqlx::query(
                    "UPDATE payouts SET state = 'in_block', block_hash = $1, txid = $2, vout = $3, \
                     changed_at = $4 WHERE quote_id = $5",
                )
                .bind(hash.as_byte_array().as_slice())
                .bind(txid.as_byte_array().as_slice())
                .bind(i64::from(vout))
                .bind(now)
                .bind(&r.quote_id)
                .execute(&mut *tx)
                .await?;
                    paid += 1;
                }
                None => {
                    requeue(&mut tx, &r.quote_id, now).await?;
                    queued += 1;
                }
            }
        }
        Ok((paid, queued))
    }
    .await;
    finish(tx, result).await
}

async fn requeue(
    tx: &mut sqlx::AnyConnection,
    quote_id: &str,
    now: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE payouts SET state = 'queued', height = NULL, block_hash = NULL, txid = NULL, \
         vout = NULL, changed_at = $1 WHERE quote_id = $2",
    )
    .bind(now)
    .bind(quote_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// The payouts of block `hash` (in it, under maturity) become `matured`, or `queued` again
/// when the block left the best chain. Returns how many changed.
pub(super) async fn block_settled(
    db: &Db,
    hash: BlockHash,
    matured: bool,
) -> Result<usize, LedgerError> {
    let now = hashpool_role::unix_now_ms();
    let mut tx = begin_write(db).await?;
    let result: Result<_, LedgerError> = async {
        let changed = if matured {
            sqlx::query(
                "UPDATE payouts SET state = 'matured', changed_at = $1 \
             WHERE state = 'in_block' AND block_hash = $2",
            )
            .bind(now)
            .bind(hash.as_byte_array().as_slice())
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize
        } else {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT quote_id FROM payouts WHERE state = 'in_block' AND block_hash = $1",
            )
            .bind(hash.as_byte_array().as_slice())
            .fetch_all(&mut *tx)
            .await?;
            for id in &ids {
                requeue(&mut tx, id, now).await?;
            }
            ids.len()
        };
        Ok(changed)
    }
    .await;
    finish(tx, result).await
}

/// Payouts and their sats, by state.
pub(super) async fn totals(db: &AnyPool) -> Result<Vec<(PayoutState, u64, u64)>, LedgerError> {
    let rows = sqlx::query(
        "SELECT state, COUNT(*), CAST(COALESCE(SUM(sats), 0) AS BIGINT) FROM payouts GROUP BY state ORDER BY state",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let state = PayoutState::parse(&r.get::<String, _>(0))
                .ok_or_else(|| LedgerError::Database("corrupt payout state".into()))?;
            let count = u64::try_from(r.get::<i64, _>(1)).unwrap_or_default();
            let sats = u64::try_from(r.get::<i64, _>(2)).unwrap_or_default();
            Ok((state, count, sats))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bitcoin::{absolute::LockTime, transaction::Version};
    use hashpool_settlement::withdrawals::{PayoutState, Withdrawal};

    use crate::ledger::AccrualLedger;

    fn withdrawal(id: &str, sats: u64, script: u8, at: u64) -> Withdrawal {
        Withdrawal {
            quote_id: id.into(),
            sats,
            address: format!("addr-{id}"),
            script: format!("0014{}", format!("{script:02x}").repeat(20)),
            recorded_at: at,
        }
    }

    fn coinbase(outputs: &[(u8, u64)]) -> bitcoin::Transaction {
        bitcoin::Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![],
            output: outputs
                .iter()
                .map(|(script, sats)| bitcoin::TxOut {
                    value: bitcoin::Amount::from_sat(*sats),
                    script_pubkey: bitcoin::ScriptBuf::from_hex(&format!(
                        "0014{}",
                        format!("{script:02x}").repeat(20)
                    ))
                    .unwrap(),
                })
                .collect(),
        }
    }

    fn hash(n: u8) -> bitcoin::BlockHash {
        use bitcoin::hashes::Hash as _;
        bitcoin::BlockHash::from_byte_array([n; 32])
    }

    async fn states(ledger: &AccrualLedger) -> Vec<(String, PayoutState, Option<u32>)> {
        let mut all: Vec<_> = ledger
            .payouts(100)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.quote_id, p.state, p.height))
            .collect();
        all.sort();
        all
    }

    #[tokio::test]
    async fn a_payout_is_offered_at_one_height_paid_by_the_chains_block_there_and_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = super::super::tests::open(&dir.path().join("l.sqlite")).await;
        let list = vec![
            withdrawal("a", 30_000, 1, 1),
            withdrawal("b", 50_000, 2, 2),
            withdrawal("c", 20_000, 3, 3),
        ];
        assert_eq!(ledger.record_withdrawals(list.clone()).await.unwrap(), 3);
        // The mint's list read again adds nothing.
        assert_eq!(ledger.record_withdrawals(list).await.unwrap(), 0);

        // A template leaving 60,000 sats: `a` fits, `b` does not, `c` does; at most 5.
        let offered = ledger.offer_payouts(10, 60_000, 5).await.unwrap();
        let ids: Vec<_> = offered.iter().map(|p| p.quote_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        // Another template at the same height pays the same ones first; `b` still does not
        // fit. At a new height nothing offered at 10 is offered again until 10 is settled.
        let again = ledger.offer_payouts(10, 60_000, 5).await.unwrap();
        assert_eq!(again.len(), 2);
        let next = ledger.offer_payouts(11, 1_000_000, 5).await.unwrap();
        let ids: Vec<_> = next.iter().map(|p| p.quote_id.as_str()).collect();
        assert_eq!(ids, ["b"]);
        // At most `max` a template.
        assert!(ledger
            .offer_payouts(11, 1_000_000, 0)
            .await
            .unwrap()
            .is_empty());

        // The chain's block at 10 pays `a` only (another template, or another's block): `c`
        // is queued again, `a` is in the block at its output.
        let block_10 = coinbase(&[(9, 1_000), (1, 30_000)]);
        let (paid, requeued) = ledger
            .settle_offered_payouts(10, hash(10), block_10.clone())
            .await
            .unwrap();
        assert_eq!((paid, requeued), (1, 1));
        let a = ledger.payout("a").await.unwrap().unwrap();
        assert_eq!(a.state, PayoutState::InBlock);
        assert_eq!((a.block_hash, a.vout), (Some(hash(10)), Some(1)));
        assert_eq!(a.txid, Some(block_10.compute_txid()));
        // Settled again (the follower's next pass): nothing changes.
        assert_eq!(
            ledger
                .settle_offered_payouts(10, hash(10), block_10)
                .await
                .unwrap(),
            (0, 0)
        );
        // An output pays one payout: two payouts of the same script and amount need two.
        ledger
            .record_withdrawals(vec![withdrawal("d", 20_000, 3, 4)])
            .await
            .unwrap();
        let both = ledger.offer_payouts(12, 1_000_000, 5).await.unwrap();
        let ids: Vec<_> = both.iter().map(|p| p.quote_id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
        let (paid, requeued) = ledger
            .settle_offered_payouts(12, hash(12), coinbase(&[(3, 20_000)]))
            .await
            .unwrap();
        assert_eq!((paid, requeued), (1, 1));

        // `a`'s block leaves the best chain: `a` is queued again; `b`'s block matures.
        ledger
            .settle_offered_payouts(11, hash(11), coinbase(&[(2, 50_000)]))
            .await
            .unwrap();
        assert_eq!(
            ledger.settle_block_payouts(hash(10), false).await.unwrap(),
            1
        );
        assert_eq!(
            ledger.settle_block_payouts(hash(11), true).await.unwrap(),
            1
        );
        assert_eq!(
            states(&ledger).await,
            vec![
                ("a".into(), PayoutState::Queued, None),
                ("b".into(), PayoutState::Matured, Some(11)),
                ("c".into(), PayoutState::InBlock, Some(12)),
                ("d".into(), PayoutState::Queued, None),
            ]
        );
        let totals = ledger.payout_totals().await.unwrap();
        assert!(totals.contains(&(PayoutState::Queued, 2, 50_000)));

        // The rows survive a restart as they were.
        drop(ledger);
        let reopened = super::super::tests::open(&dir.path().join("l.sqlite")).await;
        assert_eq!(
            reopened.payout("a").await.unwrap().unwrap().state,
            PayoutState::Queued
        );
        assert_eq!(
            reopened.payout("c").await.unwrap().unwrap().state,
            PayoutState::InBlock
        );
    }
}
