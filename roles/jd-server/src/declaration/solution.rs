//! A pushed solution: the block it makes with one of the connection's accepted jobs, if its
//! proof of work holds.

use std::collections::HashMap;

use bitcoin::{
    block::{Header, Version as BlockVersion},
    consensus,
    hashes::Hash,
    BlockHash, CompactTarget, Transaction, Txid,
};
use hashpool_job_declaration::coinbase_merkle_path;
use job_declaration_sv2::PushSolutionOwned;

/// An accepted job: what a solution for it needs.
#[derive(Debug, Clone)]
pub struct DeclaredJob {
    pub prefix: Vec<u8>,
    pub suffix: Vec<u8>,
    pub extranonce_len: usize,
    pub txids: Vec<Txid>,
    /// The transactions the client provided (the node has the others).
    pub provided: HashMap<Txid, Transaction>,
}

/// The coinbase and header of the block `solution` makes with `job`; `None` when it does not
/// fit the job (another extranonce length, no transaction) or its hash misses its own target.
/// Checked from the coinbase and the stored txids only, so a junk solution costs no call to the
/// node.
pub fn solve(job: &DeclaredJob, solution: &PushSolutionOwned) -> Option<(Transaction, Header)> {
    let extranonce = solution.extranonce.as_ref();
    if job.extranonce_len != extranonce.len() {
        return None;
    }
    let bytes = [job.prefix.as_slice(), extranonce, job.suffix.as_slice()].concat();
    let coinbase = consensus::deserialize::<Transaction>(&bytes).ok()?;
    let mut root = coinbase.compute_txid().to_byte_array();
    for step in coinbase_merkle_path(&job.txids) {
        let mut data = [0u8; 64];
        data[..32].copy_from_slice(&root);
        data[32..].copy_from_slice(&step);
        root = bitcoin::hashes::sha256d::Hash::hash(&data).to_byte_array();
    }
    let header = Header {
        version: BlockVersion::from_consensus(solution.version as i32),
        prev_blockhash: BlockHash::from_byte_array(solution.prev_hash.to_array()),
        merkle_root: bitcoin::TxMerkleNode::from_byte_array(root),
        time: solution.ntime,
        bits: CompactTarget::from_consensus(solution.nbits),
        nonce: solution.nonce,
    };
    header
        .target()
        .is_met_by(header.block_hash())
        .then_some((coinbase, header))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::fixtures::{declared_coinbase, own_transaction};
    use binary_sv2::{B032Owned, U256Owned};
    use bitcoin::{script::Builder, Block};

    /// Regtest's proof-of-work limit: about every other nonce meets it.
    const EASY: u32 = 0x207f_ffff;

    fn job(txs: &[Transaction]) -> DeclaredJob {
        let head = Builder::new().push_int(7).into_bytes();
        let wtxids: Vec<_> = txs.iter().map(Transaction::compute_wtxid).collect();
        let cb = declared_coinbase(head, vec![], &wtxids, |_| {});
        DeclaredJob {
            prefix: cb.prefix,
            suffix: cb.suffix,
            extranonce_len: 16,
            txids: txs.iter().map(Transaction::compute_txid).collect(),
            provided: HashMap::new(),
        }
    }

    fn solution(extranonce: Vec<u8>, nbits: u32, nonce: u32) -> PushSolutionOwned {
        PushSolutionOwned {
            extranonce: B032Owned::new(extranonce).unwrap(),
            prev_hash: U256Owned::from([9u8; 32]),
            nonce,
            ntime: 1_700_000_000,
            nbits,
            version: 0x2000_0000,
        }
    }

    /// The first nonce whose outcome (met or not) is `met`.
    fn nonce_where(job: &DeclaredJob, extranonce: &[u8], met: bool) -> u32 {
        (0..)
            .find(|n| solve(job, &solution(extranonce.to_vec(), EASY, *n)).is_some() == met)
            .unwrap()
    }

    #[test]
    fn a_solution_meeting_its_target_makes_the_jobs_block() {
        let txs = [own_transaction(1), own_transaction(2), own_transaction(3)];
        let job = job(&txs);
        let extranonce = vec![0x42; 16];
        let nonce = nonce_where(&job, &extranonce, true);
        let (coinbase, header) = solve(&job, &solution(extranonce.clone(), EASY, nonce)).unwrap();
        assert_eq!(
            consensus::serialize(&coinbase),
            [job.prefix.as_slice(), &extranonce, job.suffix.as_slice()].concat()
        );
        assert_eq!(header.nonce, nonce);
        assert_eq!(header.prev_blockhash, BlockHash::from_byte_array([9u8; 32]));
        // The merkle root is the block's, over the coinbase and the job's transactions.
        let block = Block {
            header,
            txdata: [vec![coinbase], txs.to_vec()].concat(),
        };
        assert!(block.check_merkle_root());
        assert!(header.validate_pow(header.target()).is_ok());
    }

    #[test]
    fn solutions_that_do_not_fit_the_job_are_dropped() {
        let job = job(&[own_transaction(1)]);
        let extranonce = vec![0x42; 16];
        let short = nonce_where(&job, &extranonce, false);
        let met = nonce_where(&job, &extranonce, true);
        let cases = [
            (
                "hash over the target",
                solution(extranonce.clone(), EASY, short),
            ),
            ("a shorter extranonce", solution(vec![0x42; 8], EASY, met)),
            ("a longer extranonce", solution(vec![0x42; 17], EASY, met)),
            // Mainnet's first target: no nonce of a test meets it.
            (
                "a harder target",
                solution(extranonce.clone(), 0x1d00_ffff, met),
            ),
        ];
        for (what, s) in cases {
            assert!(solve(&job, &s).is_none(), "{what}");
        }
        let broken = DeclaredJob {
            suffix: vec![],
            ..job.clone()
        };
        assert!(
            solve(&broken, &solution(extranonce, EASY, met)).is_none(),
            "no transaction"
        );
    }
}
