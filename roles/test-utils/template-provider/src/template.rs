//! Templates: what the chain offers a pool to mine next, in SV2 Template Distribution form.

use binary_sv2::{B0255Owned, B064KOwned, Seq0255Owned, U256Owned};
use bitcoin::{consensus, Amount, BlockHash, Target, Transaction};
use template_distribution_sv2::{NewTemplateOwned, SetNewPrevHashOwned};

use crate::{
    chain::{rules, Chain},
    mempool::Mempool,
};

pub use crate::chain::rules::BLOCK_VERSION;
/// Weight kept free for the coinbase and header beside the pool's reserved output space.
const COINBASE_AND_HEADER_WEIGHT: u64 = 4 * 1_000;

/// One template as sent, kept so solutions and transaction-data requests can refer to it.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: u64,
    pub prev_hash: BlockHash,
    pub height: u32,
    pub nbits: u32,
    pub transactions: Vec<Transaction>,
    pub fees: Amount,
    pub message: NewTemplateOwned,
}

/// Builds the template for the block after the current tip, filling it from the mempool up to
/// the weight left after `reserved_output_size` bytes of pool coinbase outputs.
pub fn build(
    id: u64,
    chain: &Chain,
    mempool: &Mempool,
    reserved_output_size: u32,
    future: bool,
) -> Template {
    let height = chain.height() + 1;
    let budget = rules::MAX_BLOCK_WEIGHT
        .saturating_sub(COINBASE_AND_HEADER_WEIGHT)
        .saturating_sub(4 * reserved_output_size as u64);
    let mut used = 0u64;
    let mut transactions = Vec::new();
    let mut fees = Amount::ZERO;
    for entry in mempool.transactions() {
        let weight = entry.tx.weight().to_wu();
        if used + weight > budget {
            continue;
        }
        used += weight;
        fees += entry.fee;
        transactions.push(entry.tx.clone());
    }
    let commitment = rules::witness_commitment_output(&transactions);
    let merkle_path: Vec<U256Owned> = rules::coinbase_merkle_path(&transactions)
        .into_iter()
        .map(U256Owned::from)
        .collect();
    let message = NewTemplateOwned {
        template_id: id,
        future_template: future,
        version: BLOCK_VERSION,
        coinbase_tx_version: 2,
        coinbase_prefix: B0255Owned::new(rules::bip34_prefix(height).into_bytes())
            .expect("a height push is at most 5 bytes"),
        coinbase_tx_input_sequence: u32::MAX,
        coinbase_tx_value_remaining: (rules::subsidy(height) + fees).to_sat(),
        coinbase_tx_outputs_count: 1,
        coinbase_tx_outputs: B064KOwned::new(consensus::serialize(&commitment))
            .expect("one output fits 64 KiB"),
        coinbase_tx_locktime: 0,
        merkle_path: Seq0255Owned::new(merkle_path)
            .expect("a merkle path of a 4 MWU block has far fewer than 255 levels"),
    };
    Template {
        id,
        prev_hash: chain.tip(),
        height,
        nbits: chain.nbits(),
        transactions,
        fees,
        message,
    }
}

/// SetNewPrevHash announcing the current tip, to be mined with template `template_id`.
pub fn prev_hash_message(chain: &Chain, template_id: u64) -> SetNewPrevHashOwned {
    let target = Target::from_compact(bitcoin::CompactTarget::from_consensus(chain.nbits()));
    SetNewPrevHashOwned {
        template_id,
        prev_hash: U256Owned::from(chain.tip().to_byte_array()),
        header_timestamp: chain.next_block_time(),
        n_bits: chain.nbits(),
        target: U256Owned::from(target.to_le_bytes()),
    }
}

use bitcoin::hashes::Hash as _;

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{consensus::Decodable, TxOut};

    #[test]
    fn template_carries_height_subsidy_fees_and_commitment() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::open(dir.path(), rules::REGTEST_NBITS).unwrap();
        let mut mempool = Mempool::default();
        for _ in 0..3 {
            let tx = mempool.synthetic();
            mempool.add(tx, Amount::from_sat(500));
        }
        let t = build(7, &chain, &mempool, 100, true);
        assert_eq!(t.height, 1);
        assert_eq!(t.transactions.len(), 3);
        assert_eq!(t.message.template_id, 7);
        assert!(t.message.future_template);
        assert_eq!(t.message.coinbase_prefix.as_bytes(), &[0x51]);
        assert_eq!(t.message.coinbase_tx_value_remaining, 5_000_000_000 + 1_500);
        let out = TxOut::consensus_decode(&mut t.message.coinbase_tx_outputs.as_bytes()).unwrap();
        assert_eq!(out, rules::witness_commitment_output(&t.transactions));
        assert!(out
            .script_pubkey
            .as_bytes()
            .starts_with(&rules::WITNESS_COMMITMENT_HEADER));
        assert_eq!(t.message.merkle_path.len(), 2);
    }

    #[test]
    fn reserved_space_limits_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::open(dir.path(), rules::REGTEST_NBITS).unwrap();
        let mut mempool = Mempool::default();
        let tx = mempool.synthetic();
        mempool.add(tx, Amount::from_sat(1));
        // The pool reserves (nearly) the whole block: nothing else fits.
        let t = build(1, &chain, &mempool, 999_000, false);
        assert!(t.transactions.is_empty());
        assert_eq!(t.message.coinbase_tx_value_remaining, 5_000_000_000);
    }
}
