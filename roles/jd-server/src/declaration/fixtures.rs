//! Transactions and declared coinbases for the checks' tests.

use bitcoin::{
    absolute::LockTime, consensus, hashes::Hash, transaction::Version, Amount, OutPoint, ScriptBuf,
    Sequence, Transaction, TxIn, TxOut, Txid, Witness, Wtxid,
};
use hashpool_job_declaration::witness_commitment_script;

/// The script the pool is paid to in the tests.
pub fn pool_script() -> ScriptBuf {
    let mut bytes = vec![0x00, 0x14];
    bytes.extend([0x7a; 20]);
    ScriptBuf::from_bytes(bytes)
}

/// A segwit transaction of its own, distinct per `tag`.
pub fn own_transaction(tag: u8) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([tag; 32]), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from(vec![vec![tag; 64]]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: pool_script(),
        }],
    }
}

/// A coinbase with `script_sig`, no outputs.
pub fn coinbase_at(script_sig: ScriptBuf) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![],
    }
}

/// A declared coinbase and its two parts around a 16-byte extranonce.
pub struct Declared {
    pub tx: Transaction,
    pub prefix: Vec<u8>,
    pub suffix: Vec<u8>,
}

/// The coinbase a job declarator client declares: scriptSig `head` then the extranonce, the
/// reserved witness, `outputs` and the commitment to `wtxids`; `edit` changes it before it is
/// split.
pub fn declared_coinbase(
    head: Vec<u8>,
    outputs: Vec<TxOut>,
    wtxids: &[Wtxid],
    edit: impl FnOnce(&mut Transaction),
) -> Declared {
    const EXTRANONCE: usize = 16;
    let mut sig = head;
    sig.extend([0xEE; EXTRANONCE]);
    let mut tx = coinbase_at(ScriptBuf::from_bytes(sig));
    tx.input[0].witness = Witness::from(vec![vec![0u8; 32]]);
    tx.output = outputs;
    tx.output.push(TxOut {
        value: Amount::ZERO,
        script_pubkey: witness_commitment_script(wtxids),
    });
    edit(&mut tx);
    let bytes = consensus::serialize(&tx);
    let at = bytes
        .windows(EXTRANONCE)
        .position(|w| w.iter().all(|b| *b == 0xEE))
        .expect("the extranonce in the coinbase");
    Declared {
        prefix: bytes[..at].to_vec(),
        suffix: bytes[at + EXTRANONCE..].to_vec(),
        tx,
    }
}
