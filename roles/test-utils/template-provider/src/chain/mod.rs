//! The embedded regtest chain: genesis, the blocks connected on top of it, and their storage.

pub mod rules;
mod store;

use std::path::Path;

use bitcoin::{Amount, Block, BlockHash, Network, Txid};

pub use rules::BlockError;
pub use store::StoreError;

use rules::{check_block, BlockContext};

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored block at height {height} does not build on the block before it")]
    BrokenLink { height: u32 },
    #[error("block refused: {0}")]
    Refused(#[from] BlockError),
}

impl ChainError {
    /// The reason bitcoind's `submitblock` would give (its BlockValidationState strings).
    pub fn reason(&self) -> &'static str {
        match self {
            ChainError::Refused(e) => match e {
                BlockError::NotOnTip { .. } => "inconclusive",
                BlockError::InsufficientWork(_) => "high-hash",
                BlockError::WrongBits { .. } => "bad-diffbits",
                BlockError::TimeTooOld { .. } => "time-too-old",
                BlockError::BadMerkleRoot => "bad-txnmrklroot",
                BlockError::Empty => "bad-blk-length",
                BlockError::NoCoinbase => "bad-cb-missing",
                BlockError::ExtraCoinbase => "bad-cb-multiple",
                BlockError::BadHeightPrefix(_) => "bad-cb-height",
                BlockError::BadCoinbaseLength(_) => "bad-cb-length",
                BlockError::CoinbaseOverpays { .. } => "bad-cb-amount",
                BlockError::BadWitnessCommitment => "bad-witness-merkle-match",
                BlockError::TooHeavy(_) => "bad-blk-weight",
                BlockError::DuplicateTransaction(_) => "bad-txns-duplicate",
            },
            ChainError::Store(_) | ChainError::BrokenLink { .. } => "internal-error",
        }
    }
}

/// A chain of blocks on top of the regtest genesis, persisted block by block.
pub struct Chain {
    blocks: Vec<Block>,
    store: store::BlockStore,
    nbits: u32,
}

impl Chain {
    /// Opens the chain kept in `dir`; a new directory starts at genesis.
    pub fn open(dir: &Path, nbits: u32) -> Result<Self, ChainError> {
        let (store, stored) = store::BlockStore::open(dir)?;
        let mut blocks = vec![bitcoin::blockdata::constants::genesis_block(
            Network::Regtest,
        )];
        for block in stored {
            let height = blocks.len() as u32;
            if block.header.prev_blockhash != blocks[blocks.len() - 1].block_hash() {
                return Err(ChainError::BrokenLink { height });
            }
            blocks.push(block);
        }
        Ok(Self {
            blocks,
            store,
            nbits,
        })
    }

    pub fn nbits(&self) -> u32 {
        self.nbits
    }

    /// Height of the tip (genesis is 0).
    pub fn height(&self) -> u32 {
        (self.blocks.len() - 1) as u32
    }

    pub fn tip(&self) -> BlockHash {
        self.blocks[self.blocks.len() - 1].block_hash()
    }

    pub fn block_at(&self, height: u32) -> Option<&Block> {
        self.blocks.get(height as usize)
    }

    /// Median of the last 11 block times.
    pub fn median_time_past(&self) -> u32 {
        let mut times: Vec<u32> = self
            .blocks
            .iter()
            .rev()
            .take(11)
            .map(|b| b.header.time)
            .collect();
        times.sort_unstable();
        times[times.len() / 2]
    }

    /// The earliest valid time for the next block, or now if later.
    pub fn next_block_time(&self) -> u32 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        now.max(self.median_time_past() + 1)
    }

    /// Whether `txid` is in a connected block.
    pub fn contains_tx(&self, txid: &Txid) -> bool {
        self.find_tx(txid).is_some()
    }

    /// The transaction `txid` from a connected block.
    pub fn find_tx(&self, txid: &Txid) -> Option<bitcoin::Transaction> {
        self.blocks
            .iter()
            .skip(1)
            .flat_map(|b| b.txdata.iter())
            .find(|t| t.compute_txid() == *txid)
            .cloned()
    }

    /// Checks `block` against the regtest rules and, if valid, stores it and makes it the tip.
    /// `fees` is what its non-coinbase transactions pay (known to the template).
    pub fn connect(&mut self, block: Block, fees: Amount) -> Result<u32, ChainError> {
        let ctx = BlockContext {
            tip: self.tip(),
            height: self.height() + 1,
            nbits: self.nbits,
            median_time_past: self.median_time_past(),
            fees,
        };
        check_block(&block, &ctx)?;
        self.store.append(&block)?;
        self.blocks.push(block);
        Ok(self.height())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{
        absolute::LockTime, block::Header, transaction::Version, CompactTarget, OutPoint,
        ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
    };

    pub(crate) fn mine_next(chain: &Chain) -> Block {
        let height = chain.height() + 1;
        let mut sig = rules::bip34_prefix(height).into_bytes();
        sig.extend_from_slice(b"test");
        let coinbase = Transaction {
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
                    value: rules::subsidy(height),
                    script_pubkey: ScriptBuf::new_op_return([7]),
                },
                rules::witness_commitment_output(&[]),
            ],
        };
        let txdata = vec![coinbase];
        let mut header = Header {
            version: bitcoin::block::Version::from_consensus(0x2000_0000),
            prev_blockhash: chain.tip(),
            merkle_root: rules::merkle_root(&txdata).unwrap(),
            time: chain.median_time_past() + 1,
            bits: CompactTarget::from_consensus(chain.nbits()),
            nonce: 0,
        };
        while header.validate_pow(header.target()).is_err() {
            header.nonce += 1;
        }
        Block { header, txdata }
    }

    #[test]
    fn chain_persists_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::open(dir.path(), rules::REGTEST_NBITS).unwrap();
        assert_eq!(chain.height(), 0);
        for _ in 0..3 {
            let block = mine_next(&chain);
            chain.connect(block, Amount::ZERO).unwrap();
        }
        let tip = chain.tip();
        drop(chain);
        let chain = Chain::open(dir.path(), rules::REGTEST_NBITS).unwrap();
        assert_eq!(chain.height(), 3);
        assert_eq!(chain.tip(), tip);
    }

    #[test]
    fn torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::open(dir.path(), rules::REGTEST_NBITS).unwrap();
        let block = mine_next(&chain);
        chain.connect(block, Amount::ZERO).unwrap();
        drop(chain);
        let path = dir.path().join("blocks.dat");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&path, bytes).unwrap();
        let mut chain = Chain::open(dir.path(), rules::REGTEST_NBITS).unwrap();
        assert_eq!(chain.height(), 1);
        let block = mine_next(&chain);
        chain.connect(block, Amount::ZERO).unwrap();
        drop(chain);
        assert_eq!(
            Chain::open(dir.path(), rules::REGTEST_NBITS)
                .unwrap()
                .height(),
            2
        );
    }

    #[test]
    fn refused_block_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::open(dir.path(), rules::REGTEST_NBITS).unwrap();
        let mut block = mine_next(&chain);
        block.txdata[0].output[0].value = rules::subsidy(1) + Amount::from_sat(1);
        block.header.merkle_root = rules::merkle_root(&block.txdata).unwrap();
        while block.header.validate_pow(block.header.target()).is_err() {
            block.header.nonce += 1;
        }
        assert!(matches!(
            chain.connect(block, Amount::ZERO),
            Err(ChainError::Refused(BlockError::CoinbaseOverpays { .. }))
        ));
        assert_eq!(chain.height(), 0);
        drop(chain);
        assert_eq!(
            Chain::open(dir.path(), rules::REGTEST_NBITS)
                .unwrap()
                .height(),
            0
        );
    }
}
