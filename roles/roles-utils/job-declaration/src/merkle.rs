//! The coinbase's merkle path: what a miner needs, with the coinbase's txid, to rebuild the
//! block's merkle root.

use bitcoin::{
    hashes::{sha256d, Hash},
    script::{Builder, PushBytesBuf},
    ScriptBuf, Txid, Wtxid,
};

/// The witness commitment output script of a block whose non-coinbase transactions have these
/// wtxids, with the all-zero witness reserved value every coinbase here carries (BIP141).
pub fn witness_commitment_script(wtxids: &[Wtxid]) -> ScriptBuf {
    let hashes = std::iter::once(Wtxid::all_zeros())
        .chain(wtxids.iter().copied())
        .map(|w| w.to_raw_hash());
    let root =
        bitcoin::merkle_tree::calculate_root(hashes).unwrap_or_else(sha256d::Hash::all_zeros);
    let mut preimage = root.to_byte_array().to_vec();
    preimage.extend_from_slice(&[0u8; 32]);
    let mut data = vec![0xaa, 0x21, 0xa9, 0xed];
    data.extend_from_slice(sha256d::Hash::hash(&preimage).as_byte_array());
    let push = PushBytesBuf::try_from(data).expect("36 bytes always fit a push");
    Builder::new()
        .push_opcode(bitcoin::opcodes::all::OP_RETURN)
        .push_slice(push)
        .into_script()
}

/// Merkle path of the coinbase (position 0) in a block whose other transactions are `txids`,
/// deepest level first (the order `SetCustomMiningJob.merkle_path` and channels_sv2 use).
pub fn coinbase_merkle_path(txids: &[Txid]) -> Vec<[u8; 32]> {
    // Level 0 with a placeholder for the coinbase, whose hash never enters the path.
    let mut level: Vec<[u8; 32]> = std::iter::once([0u8; 32])
        .chain(txids.iter().map(|t| t.to_byte_array()))
        .collect();
    let mut path = Vec::new();
    while level.len() > 1 {
        path.push(level[1]);
        if level.len() % 2 == 1 {
            let last = level[level.len() - 1];
            level.push(last);
        }
        level = level
            .chunks(2)
            .map(|pair| {
                let mut data = [0u8; 64];
                data[..32].copy_from_slice(&pair[0]);
                data[32..].copy_from_slice(&pair[1]);
                sha256d::Hash::hash(&data).to_byte_array()
            })
            .collect();
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{
        absolute::LockTime, transaction::Version, Amount, OutPoint, ScriptBuf, Sequence,
        Transaction, TxIn, TxOut, Witness,
    };

    fn tx(n: u8) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(Txid::from_byte_array([n; 32]), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(u64::from(n)),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    /// Folding the coinbase's txid up the path gives the block's merkle root, for every block
    /// size (odd levels duplicate their last hash).
    #[test]
    fn the_path_rebuilds_the_merkle_root() {
        for n in 0..9u8 {
            let mut txs = vec![tx(200)];
            txs.extend((1..=n).map(tx));
            let txids: Vec<Txid> = txs[1..].iter().map(|t| t.compute_txid()).collect();
            let path = coinbase_merkle_path(&txids);
            let mut acc = txs[0].compute_txid().to_byte_array();
            for step in &path {
                let mut data = [0u8; 64];
                data[..32].copy_from_slice(&acc);
                data[32..].copy_from_slice(step);
                acc = sha256d::Hash::hash(&data).to_byte_array();
            }
            let root = bitcoin::merkle_tree::calculate_root(txs.iter().map(|t| t.compute_txid()))
                .expect("transactions");
            assert_eq!(
                acc,
                root.to_byte_array(),
                "{n} transactions after the coinbase"
            );
        }
    }
}
