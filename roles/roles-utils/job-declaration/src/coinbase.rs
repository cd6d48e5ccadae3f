//! A declared coinbase arrives in two parts, before and after the extranonce
//! (`DeclareMiningJob.coinbase_tx_prefix` / `_suffix`), without the extranonce's length.

use bitcoin::{consensus, Transaction, VarInt};

/// Extranonces are at most this long in SV2.
const MAX_EXTRANONCE: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoinbaseError {
    #[error("prefix and suffix do not make a transaction with any extranonce of 0..=32 bytes")]
    Unparsable,
    #[error("the transaction is not a coinbase (one input spending nothing)")]
    NotCoinbase,
    #[error("the extranonce must end the coinbase scriptSig (as the pool's channel builds it)")]
    ExtranonceNotAtEnd,
}

/// The coinbase a miner's extranonce completes.
#[derive(Debug, Clone)]
pub struct SplitCoinbase {
    /// The transaction with an all-zero extranonce.
    pub tx: Transaction,
    pub extranonce_len: usize,
    /// The scriptSig bytes before the extranonce (`SetCustomMiningJob.coinbase_prefix`).
    pub script_sig_prefix: Vec<u8>,
}

impl SplitCoinbase {
    /// The serialized coinbase with `extranonce` in its place (None if it has the wrong length).
    pub fn with_extranonce(
        &self,
        prefix: &[u8],
        suffix: &[u8],
        extranonce: &[u8],
    ) -> Option<Vec<u8>> {
        (extranonce.len() == self.extranonce_len).then(|| [prefix, extranonce, suffix].concat())
    }
}

/// Finds the extranonce length that makes `prefix + extranonce + suffix` one coinbase
/// transaction, and where the scriptSig's bytes before the extranonce are. The extranonce must
/// end the scriptSig: a pool's channel rebuilds the coinbase as scriptSig prefix + extranonce,
/// so anything after it would make the pool credit shares on a coinbase nobody can rebuild.
pub fn split_coinbase(prefix: &[u8], suffix: &[u8]) -> Result<SplitCoinbase, CoinbaseError> {
    let mut parsed = false;
    for extranonce_len in 0..=MAX_EXTRANONCE {
        let bytes = [prefix, &vec![0u8; extranonce_len], suffix].concat();
        // Whole-buffer decoding: trailing bytes are an error, so only the right length fits.
        let Ok(tx) = consensus::deserialize::<Transaction>(&bytes) else {
            continue;
        };
        parsed = true;
        if !tx.is_coinbase() || tx.input.len() != 1 {
            return Err(CoinbaseError::NotCoinbase);
        }
        let script_sig = tx.input[0].script_sig.as_bytes();
        let segwit = prefix.get(4) == Some(&0) && prefix.get(5) == Some(&1);
        let start = 4
            + if segwit { 2 } else { 0 }
            + VarInt(1).size()
            + 36
            + VarInt(script_sig.len() as u64).size();
        let Some(before) = prefix.len().checked_sub(start) else {
            continue;
        };
        if before + extranonce_len != script_sig.len() {
            continue;
        }
        return Ok(SplitCoinbase {
            script_sig_prefix: script_sig[..before].to_vec(),
            tx,
            extranonce_len,
        });
    }
    Err(if parsed {
        CoinbaseError::ExtranonceNotAtEnd
    } else {
        CoinbaseError::Unparsable
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{
        absolute::LockTime, transaction::Version, Amount, OutPoint, ScriptBuf, Sequence, TxIn,
        TxOut, Witness,
    };

    fn coinbase(script_sig: Vec<u8>, segwit: bool) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::from_bytes(script_sig),
                sequence: Sequence::MAX,
                witness: if segwit {
                    Witness::from(vec![vec![0u8; 32]])
                } else {
                    Witness::new()
                },
            }],
            output: vec![TxOut {
                value: Amount::from_sat(5_000_000_000),
                script_pubkey: ScriptBuf::from_bytes(vec![
                    0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                ]),
            }],
        }
    }

    #[test]
    fn finds_the_extranonce_in_legacy_and_segwit_coinbases() {
        for segwit in [false, true] {
            for extranonce_len in [0usize, 8, 16, 32] {
                let head = vec![3, 1, 2, 3, b'h', b'p'];
                let mut sig = head.clone();
                sig.extend(std::iter::repeat_n(0xAB, extranonce_len));
                let tx = coinbase(sig, segwit);
                let bytes = consensus::serialize(&tx);
                // Where the extranonce starts: find `head` + the marker bytes.
                let at = bytes
                    .windows(head.len())
                    .position(|w| w == head.as_slice())
                    .unwrap()
                    + head.len();
                let (prefix, rest) = bytes.split_at(at);
                let suffix = &rest[extranonce_len..];
                let split = split_coinbase(prefix, suffix).unwrap();
                assert_eq!(split.extranonce_len, extranonce_len);
                assert_eq!(split.script_sig_prefix, head);
                let rebuilt = split
                    .with_extranonce(prefix, suffix, &vec![0xAB; extranonce_len])
                    .unwrap();
                assert_eq!(rebuilt, bytes);
            }
        }
    }

    #[test]
    fn bytes_after_the_extranonce_are_refused() {
        let head = vec![3, 1, 2, 3];
        let mut sig = head.clone();
        sig.extend([0xAB; 8]);
        sig.extend_from_slice(b"tail");
        let bytes = consensus::serialize(&coinbase(sig, true));
        let at = bytes.windows(4).position(|w| w == head.as_slice()).unwrap() + 4;
        let (prefix, rest) = bytes.split_at(at);
        assert_eq!(
            split_coinbase(prefix, &rest[8..]).unwrap_err(),
            CoinbaseError::ExtranonceNotAtEnd
        );
    }

    #[test]
    fn garbage_and_non_coinbases_are_refused() {
        assert_eq!(
            split_coinbase(&[1, 2, 3], &[4, 5]).unwrap_err(),
            CoinbaseError::Unparsable
        );
        let mut tx = coinbase(vec![1, 2], false);
        tx.input[0].previous_output = OutPoint::new(
            <bitcoin::Txid as bitcoin::hashes::Hash>::from_byte_array([1; 32]),
            0,
        );
        let bytes = consensus::serialize(&tx);
        assert_eq!(
            split_coinbase(&bytes, &[]).unwrap_err(),
            CoinbaseError::NotCoinbase
        );
    }
}
