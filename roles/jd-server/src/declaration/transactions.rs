//! A declaration's transactions: listed once each, looked up in the node's mempool, the
//! missing ones provided by the client exactly as declared.

use std::collections::HashSet;

use bitcoin::{consensus, hashes::Hash, Amount, Transaction, Txid, Wtxid};
use job_declaration_sv2::{
    ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB, ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS,
};

use super::Refusal;
use crate::rpc::Mempool;

/// Where a declared transaction comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    Mempool { txid: Txid, fee: Amount },
    Provided(Transaction),
}

impl Known {
    pub fn txid(&self) -> Txid {
        match self {
            Known::Mempool { txid, .. } => *txid,
            Known::Provided(tx) => tx.compute_txid(),
        }
    }
}

/// `DeclareMiningJob.wtxid_list` as wtxids.
pub fn wtxids(list: &[[u8; 32]]) -> Vec<Wtxid> {
    list.iter().map(|w| Wtxid::from_byte_array(*w)).collect()
}

/// No transaction listed twice (a block cannot hold it twice).
pub fn check_distinct(list: &[[u8; 32]]) -> Result<(), Refusal> {
    let mut seen = HashSet::new();
    if let Some(i) = list.iter().position(|w| !seen.insert(*w)) {
        return Err(Refusal(
            ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
            format!("the transaction at position {i} is listed twice"),
        ));
    }
    Ok(())
}

/// Each declared transaction as the mempool knows it (`None` where it does not), and the
/// positions of the missing ones, to ask the client for.
pub fn look_up(
    wtxids: &[Wtxid],
    mempool: &Mempool,
) -> Result<(Vec<Option<Known>>, Vec<u16>), Refusal> {
    let mut known = Vec::with_capacity(wtxids.len());
    let mut missing = Vec::new();
    for (i, wtxid) in wtxids.iter().enumerate() {
        match mempool.get(wtxid) {
            Some(e) => known.push(Some(Known::Mempool {
                txid: e.txid,
                fee: e.fee,
            })),
            None => {
                known.push(None);
                missing.push(u16::try_from(i).map_err(|_| {
                    Refusal(
                        ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
                        "too many transactions".into(),
                    )
                })?);
            }
        }
    }
    Ok((known, missing))
}

/// The transactions a client provided for the `missing` positions of its `declared` wtxids:
/// one for each, in order, each the very transaction declared there.
pub fn check_provided(
    declared: &[[u8; 32]],
    missing: &[u16],
    provided: &[&[u8]],
) -> Result<Vec<Transaction>, Refusal> {
    if provided.len() != missing.len() {
        return Err(Refusal(
            ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS,
            format!(
                "{} transactions asked for, {} provided",
                missing.len(),
                provided.len()
            ),
        ));
    }
    let mut txs = Vec::with_capacity(provided.len());
    for (position, raw) in missing.iter().zip(provided) {
        let tx: Transaction = consensus::deserialize(raw).map_err(|e| {
            Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS,
                format!("transaction at position {position} does not decode: {e}"),
            )
        })?;
        if tx.compute_wtxid().to_byte_array() != declared[usize::from(*position)] {
            return Err(Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS,
                format!("the transaction provided for position {position} is not the one declared"),
            ));
        }
        txs.push(tx);
    }
    Ok(txs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::fixtures::own_transaction;
    use crate::rpc::MempoolEntry;

    fn wtxid(tx: &Transaction) -> [u8; 32] {
        tx.compute_wtxid().to_byte_array()
    }

    #[test]
    fn a_transaction_listed_twice_is_refused() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let cases: [(&[[u8; 32]], Option<usize>); 5] = [
            (&[], None),
            (&[a, b], None),
            (&[a, a], Some(1)),
            (&[a, b, b], Some(2)),
            (&[a, b, a], Some(2)),
        ];
        for (list, twice) in cases {
            match (check_distinct(list), twice) {
                (Ok(()), None) => {}
                (Err(Refusal(code, details)), Some(i)) => {
                    assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB);
                    assert_eq!(
                        details,
                        format!("the transaction at position {i} is listed twice")
                    );
                }
                (got, want) => panic!("{list:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn transactions_not_in_the_mempool_are_missing() {
        let (a, b, c) = (own_transaction(1), own_transaction(2), own_transaction(3));
        let fee = Amount::from_sat(700);
        let mempool: Mempool = [(
            b.compute_wtxid(),
            MempoolEntry {
                txid: b.compute_txid(),
                fee,
            },
        )]
        .into();
        let list = wtxids(&[wtxid(&a), wtxid(&b), wtxid(&c)]);
        let (known, missing) = look_up(&list, &mempool).unwrap();
        assert_eq!(
            known,
            vec![
                None,
                Some(Known::Mempool {
                    txid: b.compute_txid(),
                    fee
                }),
                None
            ]
        );
        assert_eq!(missing, vec![0, 2]);
        assert_eq!(look_up(&[], &mempool).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn provided_transactions_must_be_the_declared_ones() {
        let (a, b, c) = (own_transaction(1), own_transaction(2), own_transaction(3));
        let declared = [wtxid(&a), wtxid(&b), wtxid(&c)];
        let raw = |tx: &Transaction| consensus::serialize(tx);
        let (ra, rc) = (raw(&a), raw(&c));
        let junk = vec![0xde, 0xad];

        // Accepted: the missing ones, in order.
        let txs = check_provided(&declared, &[0, 2], &[&ra, &rc]).unwrap();
        assert_eq!(txs, vec![a.clone(), c.clone()]);
        assert_eq!(check_provided(&declared, &[], &[]).unwrap(), vec![]);

        // What, the positions asked for, the transactions provided, the refusal's details.
        type Case<'a> = (&'a str, &'a [u16], Vec<&'a [u8]>, &'a str);
        let cases: [Case; 4] = [
            (
                "too few",
                &[0, 2],
                vec![&ra],
                "2 transactions asked for, 1 provided",
            ),
            (
                "too many",
                &[0],
                vec![&ra, &rc],
                "1 transactions asked for, 2 provided",
            ),
            (
                "undecodable",
                &[0, 2],
                vec![&ra, &junk],
                "transaction at position 2 does not decode",
            ),
            (
                "swapped",
                &[0, 2],
                vec![&rc, &ra],
                "the transaction provided for position 0 is not the one declared",
            ),
        ];
        for (what, missing, provided, details) in cases {
            let Refusal(code, got) = check_provided(&declared, missing, &provided).unwrap_err();
            assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS, "{what}");
            assert!(got.contains(details), "{what}: {got}");
        }
    }
}
