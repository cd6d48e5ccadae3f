//! Transactions waiting for a block. Synthetic ones make templates non-empty in local runs and
//! tests; their inputs reference outpoints this chain does not track (no UTXO validation here).

use bitcoin::{
    absolute::LockTime,
    hashes::{sha256d, Hash},
    transaction::Version,
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};

#[derive(Debug, Clone)]
pub struct MempoolTx {
    pub tx: Transaction,
    pub fee: Amount,
}

#[derive(Default)]
pub struct Mempool {
    txs: Vec<MempoolTx>,
    synthetic_counter: u64,
}

impl Mempool {
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn transactions(&self) -> &[MempoolTx] {
        &self.txs
    }

    /// Adds `tx` unless a transaction with its txid is already here.
    pub fn add(&mut self, tx: Transaction, fee: Amount) -> bool {
        let txid = tx.compute_txid();
        if self.txs.iter().any(|m| m.tx.compute_txid() == txid) {
            return false;
        }
        self.txs.push(MempoolTx { tx, fee });
        true
    }

    /// Drops the transactions a connected block included.
    pub fn remove_included(&mut self, included: &[Txid]) {
        self.txs
            .retain(|m| !included.contains(&m.tx.compute_txid()));
    }

    /// A new, unique synthetic segwit transaction (its fee is declared when it is added).
    pub fn synthetic(&mut self) -> Transaction {
        self.synthetic_counter += 1;
        let seed = sha256d::Hash::hash(&self.synthetic_counter.to_le_bytes());
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(Txid::from_raw_hash(seed), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::from(vec![seed.to_byte_array().to_vec()]),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(10_000),
                script_pubkey: ScriptBuf::new_op_return(seed.to_byte_array()),
            }],
        }
    }
}
