//! What the jd-client's miners mine: a job as the pool knows it (a custom job the jd-server
//! accepted, or the pool's own job while declaring is not possible), and the checks of a
//! miner's share against it (the ntime, version-rolling and target rules are the shared
//! checker's, [`hashpool_shares`], so they answer with the same verdicts as the translator's).

use bitcoin::{
    block::{Header, Version},
    hashes::{sha256d, Hash},
    BlockHash, CompactTarget, Target, TxMerkleNode, Txid,
};
use channels_sv2::merkle_root::merkle_root_from_path_;
use hashpool_shares::{check_target, NtimeRule, VersionRule};

/// Bytes of the pool channel's extranonce each downstream channel owns (its index): up to
/// 65,536 channels behind one jd-client.
pub const INDEX_BYTES: usize = 2;

/// A job declared by this jd-client and set on the pool: what a block on it needs.
#[derive(Debug, Clone)]
pub struct Declared {
    pub template_id: u64,
    /// The declared coinbase (with its segwit marker and witness) around the full extranonce.
    pub coinbase_prefix_bip141: Vec<u8>,
    pub coinbase_suffix_bip141: Vec<u8>,
    pub txids: Vec<Txid>,
}

/// One job on the pool channel, as every downstream channel mines it.
#[derive(Debug, Clone)]
pub struct Work {
    /// The job's id on the pool channel (what forwarded shares carry).
    pub upstream_job_id: u32,
    /// Which opening of the pool channel the job belongs to.
    pub opening: u64,
    pub version: u32,
    pub version_rolling_allowed: bool,
    /// The coinbase without witness, split where the pool channel's extranonce prefix starts.
    pub coinbase_prefix: Vec<u8>,
    pub coinbase_suffix: Vec<u8>,
    /// The pool channel's extranonce prefix and the size after it, when the job was set.
    pub pool_prefix: Vec<u8>,
    pub pool_size: usize,
    pub merkle_path: Vec<[u8; 32]>,
    pub prev_hash: [u8; 32],
    pub nbits: u32,
    pub min_ntime: u32,
    /// The pool channel's target when the pool set the job: the pool judges its shares by it.
    pub upstream_target: Target,
    /// `Some` for a declared job (this jd-client submits its blocks); `None` for a pool job
    /// (the pool submits them).
    pub declared: Option<Declared>,
}

/// Why a share is refused: the shared checker's verdicts, whose `code()` is the
/// SubmitShares.Error code (`ExtranonceSize`, `Ntime`, `Version`, `Difficulty` as before, and
/// the job and duplicate verdicts).
pub use hashpool_shares::Rejection as ShareError;

/// A share's header fields.
#[derive(Debug, Clone, Copy)]
pub struct ShareHeader {
    pub version: u32,
    pub ntime: u32,
    pub nonce: u32,
}

/// A share that met its channel's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub hash: BlockHash,
    /// It also meets the pool channel's target: forward it.
    pub for_pool: bool,
    /// It also meets the network's: a block.
    pub block: bool,
}

impl Checked {
    /// The share's hash as a number to compare with targets (and the shared checker's key).
    pub fn hash_target(&self) -> Target {
        hash_target(&self.hash)
    }
}

fn hash_target(hash: &BlockHash) -> Target {
    Target::from_le_bytes(hash.to_byte_array())
}

impl Work {
    /// The full extranonce of a downstream channel's share: the pool channel's prefix, the
    /// channel's index, what the miner rolled, zeros for the rest.
    pub fn extranonce(&self, index: &[u8; INDEX_BYTES], rolled: &[u8]) -> Vec<u8> {
        let mut e = [&self.pool_prefix[..], &index[..], rolled].concat();
        e.resize(self.pool_prefix.len() + self.pool_size, 0);
        e
    }

    /// The coinbase txid with `extranonce` (the pool channel's prefix and the rest).
    fn coinbase_txid(&self, extranonce: &[u8]) -> [u8; 32] {
        let mut engine = sha256d::Hash::engine();
        bitcoin::hashes::HashEngine::input(&mut engine, &self.coinbase_prefix);
        bitcoin::hashes::HashEngine::input(&mut engine, extranonce);
        bitcoin::hashes::HashEngine::input(&mut engine, &self.coinbase_suffix);
        sha256d::Hash::from_engine(engine).to_byte_array()
    }

    /// The merkle root for a full extranonce (standard channels get it in their job).
    pub fn merkle_root(&self, extranonce: &[u8]) -> [u8; 32] {
        merkle_root_from_path_(self.coinbase_txid(extranonce), &self.merkle_path)
    }

    pub fn header(&self, extranonce: &[u8], share: ShareHeader) -> Header {
        Header {
            version: Version::from_consensus(share.version as i32),
            prev_blockhash: BlockHash::from_byte_array(self.prev_hash),
            merkle_root: TxMerkleNode::from_byte_array(self.merkle_root(extranonce)),
            time: share.ntime,
            bits: CompactTarget::from_consensus(self.nbits),
            nonce: share.nonce,
        }
    }

    /// Checks a share with its full extranonce against `channel_target` (the target its job may
    /// have been worked at: the shared checker's `required`). Duplicates are the checker's.
    pub fn check(
        &self,
        extranonce: &[u8],
        share: ShareHeader,
        channel_target: &Target,
    ) -> Result<Checked, ShareError> {
        NtimeRule::FromMinNtime(self.min_ntime).check(share.ntime)?;
        VersionRule::new(self.version, self.version_rolling_allowed).check(share.version)?;
        let hash = self.header(extranonce, share).block_hash();
        check_target(&hash_target(&hash), channel_target)?;
        let network = Target::from_compact(CompactTarget::from_consensus(self.nbits));
        Ok(Checked {
            hash,
            for_pool: self.upstream_target.is_met_by(hash),
            block: network.is_met_by(hash),
        })
    }

    /// The block's coinbase (with witness) for a declared job.
    pub fn full_coinbase(&self, extranonce: &[u8]) -> Option<Vec<u8>> {
        let d = self.declared.as_ref()?;
        Some(
            [
                &d.coinbase_prefix_bip141[..],
                extranonce,
                &d.coinbase_suffix_bip141[..],
            ]
            .concat(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{
        absolute::LockTime, consensus, transaction, Amount, OutPoint, ScriptBuf, Sequence,
        Transaction, TxIn, TxOut, Witness,
    };

    const EXTRANONCE: usize = 12;

    /// Met by every hash.
    fn easy() -> Target {
        Target::from_le_bytes([0xff; 32])
    }

    /// A coinbase split around a 12-byte extranonce, and two other txids.
    fn work(nbits: u32, upstream: Target) -> (Work, Transaction, Vec<Txid>) {
        let mut sig = vec![0x01, 0x07];
        sig.push(EXTRANONCE as u8);
        let script_head = sig.len();
        sig.extend([0u8; EXTRANONCE]);
        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::from_bytes(sig),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(50),
                script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
            }],
        };
        let bytes = consensus::serialize(&tx);
        // version(4) + input count(1) + outpoint(36) + script length(1) + script head
        let at = 4 + 1 + 36 + 1 + script_head;
        let others: Vec<Txid> = (1..=2u8).map(|i| Txid::from_byte_array([i; 32])).collect();
        let path = {
            // coinbase + 2 txs: the path is tx1, then hash(tx2, tx2).
            let mut e = sha256d::Hash::engine();
            bitcoin::hashes::HashEngine::input(&mut e, &[2u8; 32]);
            bitcoin::hashes::HashEngine::input(&mut e, &[2u8; 32]);
            vec![[1u8; 32], sha256d::Hash::from_engine(e).to_byte_array()]
        };
        let w = Work {
            upstream_job_id: 9,
            opening: 1,
            version: 0x2000_0000,
            version_rolling_allowed: true,
            coinbase_prefix: bytes[..at].to_vec(),
            coinbase_suffix: bytes[at + EXTRANONCE..].to_vec(),
            pool_prefix: vec![0xA0, 0xA1, 0xA2, 0xA3],
            pool_size: EXTRANONCE - 4,
            merkle_path: path,
            prev_hash: [7; 32],
            nbits,
            min_ntime: 1_000,
            upstream_target: upstream,
            declared: None,
        };
        (w, tx, others)
    }

    fn with_extranonce(tx: &Transaction, e: &[u8]) -> Transaction {
        let mut t = tx.clone();
        let mut sig = t.input[0].script_sig.to_bytes();
        let n = sig.len();
        sig[n - EXTRANONCE..].copy_from_slice(e);
        t.input[0].script_sig = ScriptBuf::from_bytes(sig);
        t
    }

    #[test]
    fn the_header_commits_to_the_coinbase_with_its_extranonce_and_the_transactions() {
        let (w, tx, others) = work(0x207f_ffff, easy());
        let e = [0xAB; EXTRANONCE];
        let cb = with_extranonce(&tx, &e);
        let root = bitcoin::merkle_tree::calculate_root(
            std::iter::once(cb.compute_txid()).chain(others.iter().copied()),
        )
        .unwrap();
        assert_eq!(w.merkle_root(&e), root.to_byte_array());
        assert_ne!(w.merkle_root(&[0xAC; EXTRANONCE]), root.to_byte_array());
    }

    #[test]
    fn a_downstream_extranonce_is_pool_prefix_index_rolled_and_zero_padding() {
        let (w, _, _) = work(0x207f_ffff, easy());
        let e = w.extranonce(&[0x01, 0x02], &[0xEE; 3]);
        assert_eq!(e.len(), EXTRANONCE);
        assert_eq!(&e[..4], &[0xA0, 0xA1, 0xA2, 0xA3]);
        assert_eq!(&e[4..6], &[0x01, 0x02]);
        assert_eq!(&e[6..9], &[0xEE; 3]);
        assert!(e[9..].iter().all(|b| *b == 0));
        // A standard channel rolls nothing.
        assert!(w.extranonce(&[9, 9], &[])[6..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_share_is_checked_for_time_version_and_each_target() {
        let (w, _, _) = work(0x207f_ffff, easy());
        let e = [1u8; EXTRANONCE];
        let at = |ntime, version| ShareHeader {
            version,
            ntime,
            nonce: 0,
        };
        assert_eq!(
            w.check(&e, at(999, 0x2000_0000), &easy()),
            Err(ShareError::Ntime)
        );
        assert_eq!(
            w.check(&e, at(1_000 + 7_201, 0x2000_0000), &easy()),
            Err(ShareError::Ntime)
        );
        // BIP320 bits may roll; others may not.
        assert!(w.check(&e, at(1_000, 0x2000_2000), &easy()).is_ok());
        assert_eq!(
            w.check(&e, at(1_000, 0x2000_0001), &easy()),
            Err(ShareError::Version)
        );
        let mut fixed = w.clone();
        fixed.version_rolling_allowed = false;
        assert_eq!(
            fixed.check(&e, at(1_000, 0x2000_2000), &easy()),
            Err(ShareError::Version)
        );
        // A nonce meeting the easy network target but not a hard channel target.
        let hard = Target::from_le_bytes([0u8; 32]);
        assert_eq!(
            w.check(&e, at(1_000, 0x2000_0000), &hard),
            Err(ShareError::Difficulty)
        );
        let ok = w.check(&e, at(1_000, 0x2000_0000), &easy()).unwrap();
        assert!(ok.for_pool);
        assert_eq!(
            ok.block,
            Target::from_compact(CompactTarget::from_consensus(0x207f_ffff)).is_met_by(ok.hash)
        );
        // A hard pool target: valid for the channel, not forwarded.
        let (strict, _, _) = work(0x1d00_ffff, Target::from_le_bytes([0u8; 32]));
        let ok = strict.check(&e, at(1_000, 0x2000_0000), &easy()).unwrap();
        assert!(!ok.for_pool);
        assert!(!ok.block);
    }
}
