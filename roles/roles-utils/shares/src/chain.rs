//! What a block's coinbase and a tip's nBits say about the chain: height (BIP34), reward and
//! difficulty, for the pages that show blocks and the network.

use bitcoin::{
    blockdata::{
        opcodes::all as op,
        script::{self, Instruction},
    },
    consensus, CompactTarget, Script, Target, Transaction,
};

/// The height a coinbase scriptSig (or an SV2 template's `coinbase_prefix`) starts with
/// (BIP34): `OP_0`, `OP_1`..`OP_16`, or a minimal push of a script number of up to 4 bytes.
/// The jd-server checks declared coinbases with it, the pool reads its templates and blocks.
pub fn bip34_height(script_sig: &[u8]) -> Option<u32> {
    let height = match Script::from_bytes(script_sig).instructions().next()?.ok()? {
        Instruction::PushBytes(bytes) => script::read_scriptint(bytes.as_bytes()).ok()?,
        Instruction::Op(o) => {
            let code = o.to_u8();
            (op::OP_PUSHNUM_1.to_u8()..=op::OP_PUSHNUM_16.to_u8())
                .contains(&code)
                .then(|| i64::from(code - op::OP_PUSHNUM_1.to_u8() + 1))?
        }
    };
    u32::try_from(height).ok()
}

/// A found block's height and what its coinbase pays in all (satoshis), from the serialized
/// coinbase transaction; `None` if it does not parse as one.
pub fn coinbase_summary(coinbase: &[u8]) -> Option<(u32, u64)> {
    let tx: Transaction = consensus::deserialize(coinbase).ok()?;
    let input = tx.input.first()?;
    let height = bip34_height(input.script_sig.as_bytes())?;
    let reward = tx
        .output
        .iter()
        .try_fold(0u64, |sum, o| sum.checked_add(o.value.to_sat()))?;
    Some((height, reward))
}

/// The difficulty of a block with `n_bits` (1.0 at 0x1d00ffff, as Bitcoin Core reports it).
pub fn difficulty(n_bits: u32) -> f64 {
    Target::from_compact(CompactTarget::from_consensus(n_bits)).difficulty_float()
}

#[cfg(test)]
mod tests {
    use bitcoin::{
        absolute::LockTime, script::Builder, transaction::Version, Amount, OutPoint, ScriptBuf,
        Sequence, TxIn, TxOut, Witness,
    };

    use super::*;

    fn coinbase(script_sig: ScriptBuf, values: &[u64]) -> Vec<u8> {
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: values
                .iter()
                .map(|v| TxOut {
                    value: Amount::from_sat(*v),
                    script_pubkey: ScriptBuf::new(),
                })
                .collect(),
        };
        consensus::serialize(&tx)
    }

    #[test]
    fn heights_read_as_bitcoin_core_writes_them() {
        for height in [
            0i64,
            1,
            16,
            17,
            127,
            128,
            255,
            256,
            32_768,
            840_000,
            1_000_000_000,
        ] {
            let script = Builder::new()
                .push_int(height)
                .push_slice([0xab; 4])
                .into_script();
            assert_eq!(
                bip34_height(script.as_bytes()),
                Some(height as u32),
                "{height}: {script:?}"
            );
        }
        // Not a height: an opcode that pushes no number, a negative number, nothing.
        assert_eq!(bip34_height(&[0x6a]), None);
        assert_eq!(bip34_height(&[0x01, 0x81]), None);
        assert_eq!(bip34_height(&[]), None);
        assert_eq!(bip34_height(&[0x03, 0x01]), None, "a push cut short");
    }

    #[test]
    fn a_coinbase_gives_its_height_and_reward() {
        let script = Builder::new()
            .push_int(840_000)
            .push_slice([1u8; 8])
            .into_script();
        let cb = coinbase(script, &[312_500_000, 1_234, 0]);
        assert_eq!(coinbase_summary(&cb), Some((840_000, 312_501_234)));
        assert_eq!(coinbase_summary(&cb[..cb.len() - 1]), None);
        assert_eq!(coinbase_summary(b"not a transaction"), None);
    }

    #[test]
    fn difficulty_is_relative_to_nbits_1d00ffff() {
        assert_eq!(difficulty(0x1d00_ffff), 1.0);
        // Regtest's minimum difficulty.
        assert!((difficulty(0x207f_ffff) - 4.656_542_373_906_925e-10).abs() < 1e-18);
        let hard = difficulty(0x1703_0ecd);
        // Mainnet in mid-2024: about 92 T.
        assert!(hard > 9.0e13 && hard < 9.3e13, "{hard}");
    }
}
