//! Regtest consensus rules the embedded chain enforces: subsidy schedule, BIP34 height in the
//! coinbase, witness commitment, merkle root and proof of work. Script and UTXO validation are
//! out of scope: the chain exists to check what a pool builds, not to replace Bitcoin Core.

use bitcoin::{
    block::Header,
    hashes::{sha256d, Hash},
    script::Builder,
    Amount, Block, CompactTarget, ScriptBuf, Transaction, TxMerkleNode, TxOut, Wtxid,
};

/// Regtest halves the subsidy every 150 blocks.
pub const SUBSIDY_HALVING_INTERVAL: u32 = 150;
/// 50 BTC.
pub const INITIAL_SUBSIDY_SATS: u64 = 50 * 100_000_000;
/// Regtest proof-of-work limit.
pub const REGTEST_NBITS: u32 = 0x207f_ffff;
/// Prefix of a witness commitment output script: OP_RETURN, push 36, 0xaa21a9ed.
pub const WITNESS_COMMITMENT_HEADER: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
/// Version of every template's and generated block's header: BIP9 top bits, nothing
/// signalled.
pub const BLOCK_VERSION: u32 = 0x2000_0000;
/// Consensus block weight limit.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;

/// Block subsidy at `height`, regtest schedule.
pub fn subsidy(height: u32) -> Amount {
    let halvings = height / SUBSIDY_HALVING_INTERVAL;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat(INITIAL_SUBSIDY_SATS >> halvings)
}

/// The script a coinbase's scriptSig must start with at `height` (BIP34): the height as a
/// minimally encoded script number push.
pub fn bip34_prefix(height: u32) -> ScriptBuf {
    Builder::new().push_int(height as i64).into_script()
}

/// Witness merkle root of a block's transactions; the coinbase's wtxid counts as zero.
pub fn witness_root(transactions: &[Transaction]) -> sha256d::Hash {
    let wtxids = std::iter::once(Wtxid::all_zeros())
        .chain(transactions.iter().map(|t| t.compute_wtxid()))
        .map(|w| w.to_raw_hash());
    bitcoin::merkle_tree::calculate_root(wtxids).unwrap_or_else(sha256d::Hash::all_zeros)
}

/// The witness commitment output for a block whose non-coinbase transactions are
/// `transactions`, with an all-zero witness reserved value (what channels_sv2 puts in the
/// coinbase witness); the same computation the jd-server checks declared coinbases with.
pub fn witness_commitment_output(transactions: &[Transaction]) -> TxOut {
    let wtxids: Vec<_> = transactions.iter().map(|t| t.compute_wtxid()).collect();
    TxOut {
        value: Amount::ZERO,
        script_pubkey: hashpool_job_declaration::witness_commitment_script(&wtxids),
    }
}

/// Merkle path of the coinbase (position 0) given the other transactions, deepest first: what
/// a miner needs to compute the merkle root from its own coinbase (the one computation the
/// jd-server and jd-client share: hashpool-job-declaration).
pub fn coinbase_merkle_path(transactions: &[Transaction]) -> Vec<[u8; 32]> {
    let txids: Vec<_> = transactions.iter().map(|t| t.compute_txid()).collect();
    hashpool_job_declaration::coinbase_merkle_path(&txids)
}

/// Why a block was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("block does not build on the tip (prev {got}, tip {tip})")]
    NotOnTip { got: String, tip: String },
    #[error("proof of work does not meet nBits {0:#010x}")]
    InsufficientWork(u32),
    #[error("header nBits {got:#010x}, chain requires {want:#010x}")]
    WrongBits { got: u32, want: u32 },
    #[error("header time {time} is not after the median time past {mtp}")]
    TimeTooOld { time: u32, mtp: u32 },
    #[error("merkle root does not match the transactions")]
    BadMerkleRoot,
    #[error("block has no transactions")]
    Empty,
    #[error("first transaction is not a coinbase")]
    NoCoinbase,
    #[error("a transaction after the first is a coinbase")]
    ExtraCoinbase,
    #[error("coinbase scriptSig does not start with the BIP34 height {0}")]
    BadHeightPrefix(u32),
    #[error("coinbase scriptSig length {0} outside 2..=100")]
    BadCoinbaseLength(usize),
    #[error("coinbase pays {paid} sat, allowed {allowed} sat")]
    CoinbaseOverpays { paid: u64, allowed: u64 },
    #[error("witness commitment missing or wrong")]
    BadWitnessCommitment,
    #[error("block weight {0} exceeds the limit")]
    TooHeavy(u64),
    #[error("duplicate transaction {0}")]
    DuplicateTransaction(String),
}

/// Context a block is checked against.
pub struct BlockContext {
    pub tip: bitcoin::BlockHash,
    pub height: u32,
    pub nbits: u32,
    pub median_time_past: u32,
    /// Sum of the fees of the block's non-coinbase transactions (known to the template that
    /// produced it).
    pub fees: Amount,
}

/// Checks `block` against the regtest rules for connection on top of `ctx.tip`.
pub fn check_block(block: &Block, ctx: &BlockContext) -> Result<(), BlockError> {
    check_header(&block.header, ctx)?;
    let coinbase = block.txdata.first().ok_or(BlockError::Empty)?;
    if !coinbase.is_coinbase() {
        return Err(BlockError::NoCoinbase);
    }
    if block.txdata.iter().skip(1).any(|t| t.is_coinbase()) {
        return Err(BlockError::ExtraCoinbase);
    }
    let mut seen = std::collections::HashSet::new();
    for tx in &block.txdata {
        let txid = tx.compute_txid();
        if !seen.insert(txid) {
            return Err(BlockError::DuplicateTransaction(txid.to_string()));
        }
    }
    if !block.check_merkle_root() {
        return Err(BlockError::BadMerkleRoot);
    }
    let script_sig = coinbase.input[0].script_sig.as_bytes();
    if !(2..=100).contains(&script_sig.len()) {
        return Err(BlockError::BadCoinbaseLength(script_sig.len()));
    }
    if !script_sig.starts_with(bip34_prefix(ctx.height).as_bytes()) {
        return Err(BlockError::BadHeightPrefix(ctx.height));
    }
    let paid: Amount = coinbase.output.iter().map(|o| o.value).sum();
    let allowed = subsidy(ctx.height) + ctx.fees;
    if paid > allowed {
        return Err(BlockError::CoinbaseOverpays {
            paid: paid.to_sat(),
            allowed: allowed.to_sat(),
        });
    }
    // Every block we template carries a commitment (channels_sv2 always gives the coinbase a
    // witness), so a block without a valid one is refused.
    if !has_commitment(coinbase) || !block.check_witness_commitment() {
        return Err(BlockError::BadWitnessCommitment);
    }
    let weight = block.weight().to_wu();
    if weight > MAX_BLOCK_WEIGHT {
        return Err(BlockError::TooHeavy(weight));
    }
    Ok(())
}

fn has_commitment(coinbase: &Transaction) -> bool {
    coinbase.output.iter().any(|o| {
        o.script_pubkey
            .as_bytes()
            .starts_with(&WITNESS_COMMITMENT_HEADER)
    })
}

/// Header checks: builds on the tip, carries the chain's nBits, is after the median time past
/// and meets its target.
pub fn check_header(header: &Header, ctx: &BlockContext) -> Result<(), BlockError> {
    if header.prev_blockhash != ctx.tip {
        return Err(BlockError::NotOnTip {
            got: header.prev_blockhash.to_string(),
            tip: ctx.tip.to_string(),
        });
    }
    if header.bits != CompactTarget::from_consensus(ctx.nbits) {
        return Err(BlockError::WrongBits {
            got: header.bits.to_consensus(),
            want: ctx.nbits,
        });
    }
    if header.time <= ctx.median_time_past {
        return Err(BlockError::TimeTooOld {
            time: header.time,
            mtp: ctx.median_time_past,
        });
    }
    header
        .validate_pow(header.target())
        .map_err(|_| BlockError::InsufficientWork(ctx.nbits))?;
    Ok(())
}

/// Merkle root of `txdata` (txids).
pub fn merkle_root(txdata: &[Transaction]) -> Option<TxMerkleNode> {
    bitcoin::merkle_tree::calculate_root(txdata.iter().map(|t| t.compute_txid().to_raw_hash()))
        .map(TxMerkleNode::from_raw_hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{
        absolute::LockTime, transaction::Version, Network, OutPoint, Sequence, TxIn, Witness,
    };

    #[test]
    fn subsidy_halves_every_150_blocks() {
        assert_eq!(subsidy(0).to_sat(), 5_000_000_000);
        assert_eq!(subsidy(149).to_sat(), 5_000_000_000);
        assert_eq!(subsidy(150).to_sat(), 2_500_000_000);
        assert_eq!(subsidy(300).to_sat(), 1_250_000_000);
        assert_eq!(subsidy(150 * 33).to_sat(), 0);
        assert_eq!(subsidy(u32::MAX).to_sat(), 0);
    }

    #[test]
    fn bip34_prefix_encodes_height_minimally() {
        assert_eq!(bip34_prefix(1).as_bytes(), &[0x51]); // OP_1
        assert_eq!(bip34_prefix(16).as_bytes(), &[0x60]); // OP_16
        assert_eq!(bip34_prefix(17).as_bytes(), &[0x01, 17]);
        assert_eq!(bip34_prefix(200).as_bytes(), &[0x02, 200, 0]); // sign bit needs a pad byte
        assert_eq!(bip34_prefix(70_000).as_bytes(), &[0x03, 0x70, 0x11, 0x01]);
        assert!(bip34_prefix(u32::MAX).len() <= 8);
    }

    pub(crate) fn spend(tag: u8) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(bitcoin::Txid::from_byte_array([tag; 32]), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from(vec![vec![tag; 10]]),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1000),
                script_pubkey: ScriptBuf::new_op_return([tag]),
            }],
        }
    }

    fn coinbase(height: u32, value: Amount, txs: &[Transaction]) -> Transaction {
        let mut sig = bip34_prefix(height).into_bytes();
        sig.extend_from_slice(&[0xab; 8]);
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::from_bytes(sig),
                sequence: Sequence::MAX,
                witness: Witness::from(vec![vec![0u8; 32]]),
            }],
            output: vec![
                TxOut {
                    value,
                    script_pubkey: ScriptBuf::new_op_return([1]),
                },
                witness_commitment_output(txs),
            ],
        }
    }

    fn mined_block(height: u32, value: Amount, txs: Vec<Transaction>) -> (Block, BlockContext) {
        let genesis = bitcoin::blockdata::constants::genesis_block(Network::Regtest);
        let mut txdata = vec![coinbase(height, value, &txs)];
        txdata.extend(txs);
        let mut header = Header {
            version: bitcoin::block::Version::from_consensus(0x2000_0000),
            prev_blockhash: genesis.block_hash(),
            merkle_root: merkle_root(&txdata).unwrap(),
            time: genesis.header.time + 1,
            bits: CompactTarget::from_consensus(REGTEST_NBITS),
            nonce: 0,
        };
        while header.validate_pow(header.target()).is_err() {
            header.nonce += 1;
        }
        let ctx = BlockContext {
            tip: genesis.block_hash(),
            height,
            nbits: REGTEST_NBITS,
            median_time_past: genesis.header.time,
            fees: Amount::from_sat(2000),
        };
        (Block { header, txdata }, ctx)
    }

    fn remine(block: &mut Block) {
        block.header.merkle_root = merkle_root(&block.txdata).unwrap();
        block.header.nonce = 0;
        while block.header.validate_pow(block.header.target()).is_err() {
            block.header.nonce += 1;
        }
    }

    #[test]
    fn a_well_formed_block_is_accepted() {
        let (block, ctx) = mined_block(
            1,
            subsidy(1) + Amount::from_sat(2000),
            vec![spend(1), spend(2)],
        );
        assert_eq!(check_block(&block, &ctx), Ok(()));
    }

    #[test]
    fn witness_commitment_matches_bitcoin_crate() {
        let (block, _) = mined_block(1, subsidy(1), vec![spend(1), spend(2), spend(3)]);
        assert!(block.check_witness_commitment());
    }

    #[test]
    fn merkle_path_reconstructs_root() {
        for n in 0..7u8 {
            let txs: Vec<_> = (0..n).map(spend).collect();
            let (block, _) = mined_block(1, subsidy(1), txs.clone());
            let path = coinbase_merkle_path(&txs);
            let mut acc = block.txdata[0].compute_txid().to_byte_array();
            for sibling in path {
                let mut buf = [0u8; 64];
                buf[..32].copy_from_slice(&acc);
                buf[32..].copy_from_slice(&sibling);
                acc = sha256d::Hash::hash(&buf).to_byte_array();
            }
            assert_eq!(acc, block.header.merkle_root.to_byte_array(), "{n} txs");
        }
    }

    #[test]
    fn overpaying_coinbase_is_refused() {
        let (mut block, ctx) = mined_block(1, subsidy(1) + Amount::from_sat(2001), vec![spend(1)]);
        remine(&mut block);
        assert!(matches!(
            check_block(&block, &ctx),
            Err(BlockError::CoinbaseOverpays { .. })
        ));
    }

    #[test]
    fn wrong_height_is_refused() {
        let (block, ctx) = mined_block(2, subsidy(1), vec![]);
        let ctx = BlockContext { height: 1, ..ctx };
        assert_eq!(
            check_block(&block, &ctx),
            Err(BlockError::BadHeightPrefix(1))
        );
    }

    #[test]
    fn bad_merkle_root_is_refused() {
        let (mut block, ctx) = mined_block(1, subsidy(1), vec![spend(1)]);
        block.txdata.push(spend(9));
        assert_eq!(check_block(&block, &ctx), Err(BlockError::BadMerkleRoot));
    }

    #[test]
    fn missing_witness_commitment_is_refused() {
        let (mut block, ctx) = mined_block(1, subsidy(1), vec![spend(1)]);
        block.txdata[0].output.pop();
        remine(&mut block);
        assert_eq!(
            check_block(&block, &ctx),
            Err(BlockError::BadWitnessCommitment)
        );
    }

    #[test]
    fn insufficient_work_is_refused() {
        let (mut block, ctx) = mined_block(1, subsidy(1), vec![]);
        // Find a nonce whose hash misses the target.
        block.header.nonce = 0;
        while block.header.validate_pow(block.header.target()).is_ok() {
            block.header.nonce += 1;
        }
        assert_eq!(
            check_block(&block, &ctx),
            Err(BlockError::InsufficientWork(REGTEST_NBITS))
        );
    }

    #[test]
    fn block_not_on_tip_or_old_time_is_refused() {
        let (block, ctx) = mined_block(1, subsidy(1), vec![]);
        let other = BlockContext {
            tip: block.block_hash(),
            ..ctx
        };
        assert!(matches!(
            check_block(&block, &other),
            Err(BlockError::NotOnTip { .. })
        ));
        let (block, ctx) = mined_block(1, subsidy(1), vec![]);
        let late = BlockContext {
            median_time_past: block.header.time,
            ..ctx
        };
        assert!(matches!(
            check_block(&block, &late),
            Err(BlockError::TimeTooOld { .. })
        ));
    }
}
