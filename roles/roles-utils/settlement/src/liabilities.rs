//! The mint's half of the proof of liabilities (docs/settlement.md, "Proof of liabilities"):
//! per epoch, signed with the mint's authority key, the ehash it issued (as the root of a
//! Merkle-sum tree over its quotes, built as the pool builds its commitment), what has been
//! redeemed, what is outstanding, and the sats redemptions issued. A wallet checks the mint's
//! report against itself and against the pool's commitment to the same epoch: the two trees
//! must be the same tree, so the ehash the pool's rate divides by is the ehash the mint owes.

use serde::{Deserialize, Serialize};

use crate::{
    merkle_sum::Node,
    rates::{EpochCommitment, Signed},
};

/// The tag of the mint's epoch report signature.
pub const MINT_EPOCH_TAG: &[u8] = b"hashpool/mint-epoch/v1";

/// One epoch as the mint accounts for it. (In [`Signed`], `pool_key` is the signer's key: here
/// the mint's.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintEpochReport {
    pub epoch: u32,
    /// The epoch's `hash` keyset.
    pub keyset: String,
    /// Ehash quotes issued in the epoch.
    pub quotes: u64,
    /// The ehash they issued.
    pub issued: u64,
    /// The Merkle-sum root over `(quote id, key, amount)` of those quotes in quote id order
    /// (`root.sum` is `issued`).
    pub root: Node,
    /// Ehash of the epoch melted by redemptions.
    pub redeemed: u64,
    /// `issued - redeemed`: the epoch's ehash the mint still owes.
    pub outstanding: u64,
    /// Sats the redemptions of this epoch issued.
    pub sats_issued: u64,
    /// Sats every epoch's redemptions issued, when the report was made.
    pub mint_sats_issued: u64,
    /// Sats withdrawn on chain (recorded withdrawal melts), when the report was made: the
    /// sat ecash the mint still owes is `mint_sats_issued - sats_withdrawn`.
    pub sats_withdrawn: u64,
}

pub type MintReport = Signed<MintEpochReport>;

/// What does not check out in the mint's report of `epoch`: its signature by `mint_key`, its
/// arithmetic, and, when the pool's commitment to the epoch is complete (every batch
/// answered), that both commit to the same quotes.
pub fn check_mint_report(
    epoch: u32,
    report: &MintReport,
    mint_key: &[u8; 32],
    pool: Option<&EpochCommitment>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = report.verify(MINT_EPOCH_TAG, mint_key) {
        problems.push(format!("the mint's report of epoch {epoch}: {e}"));
    }
    let r = &report.body;
    if r.epoch != epoch {
        problems.push(format!(
            "the mint's report of epoch {epoch} is of epoch {}",
            r.epoch
        ));
    }
    if r.root.sum != r.issued {
        problems.push(format!(
            "the mint's epoch {epoch}: {} ehash issued, its quotes commit to {}",
            r.issued, r.root.sum
        ));
    }
    if r.redeemed > r.issued || r.issued - r.redeemed != r.outstanding {
        problems.push(format!(
            "the mint's epoch {epoch}: {} issued less {} redeemed is not {} outstanding",
            r.issued, r.redeemed, r.outstanding
        ));
    }
    if r.sats_issued > r.mint_sats_issued || r.sats_withdrawn > r.mint_sats_issued {
        problems.push(format!(
            "the mint's epoch {epoch}: {} sats issued by the epoch and {} withdrawn exceed the \
             {} sats it issued in all",
            r.sats_issued, r.sats_withdrawn, r.mint_sats_issued
        ));
    }
    if let Some(c) = pool.filter(|c| c.body.unanswered == 0) {
        if c.body.root != r.root {
            problems.push(format!(
                "epoch {epoch}: the mint's quotes ({} ehash) are not the pool's ({} ehash)",
                r.root.sum, c.body.root.sum
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        merkle_sum::{Leaf, MerkleSumTree},
        rates::{EpochQuotes, EPOCH_TAG},
    };

    const MINT: [u8; 32] = [7; 32];
    const POOL: [u8; 32] = [9; 32];

    fn x_only(secret: &[u8; 32]) -> [u8; 32] {
        let secp = bitcoin::secp256k1::Secp256k1::signing_only();
        bitcoin::secp256k1::Keypair::from_seckey_slice(&secp, secret)
            .unwrap()
            .x_only_public_key()
            .0
            .serialize()
    }

    fn root(amounts: &[u64]) -> Node {
        let leaves: Vec<Leaf> = amounts
            .iter()
            .enumerate()
            .map(|(i, a)| Leaf {
                id: format!("q{i}"),
                key: "02aa".into(),
                amount: *a,
            })
            .collect();
        MerkleSumTree::new(&leaves).unwrap().root()
    }

    fn report(body: MintEpochReport) -> MintReport {
        Signed::sign(MINT_EPOCH_TAG, &MINT, body).unwrap()
    }

    fn honest() -> MintEpochReport {
        MintEpochReport {
            epoch: 4,
            keyset: "01ab".into(),
            quotes: 3,
            issued: 60,
            root: root(&[10, 20, 30]),
            redeemed: 25,
            outstanding: 35,
            sats_issued: 2_500,
            mint_sats_issued: 9_000,
            sats_withdrawn: 4_000,
        }
    }

    fn pool(amounts: &[u64], unanswered: u64) -> EpochCommitment {
        Signed::sign(
            EPOCH_TAG,
            &POOL,
            EpochQuotes {
                epoch: 4,
                start_work: "0".into(),
                end_work: "1".into(),
                quotes: amounts.len() as u64,
                unanswered,
                root: root(amounts),
            },
        )
        .unwrap()
    }

    #[test]
    fn an_honest_report_checks_and_every_lie_is_named() {
        let key = x_only(&MINT);
        let same = pool(&[10, 20, 30], 0);
        assert!(check_mint_report(4, &report(honest()), &key, Some(&same)).is_empty());

        // Signed by another key, or for another epoch.
        assert_eq!(
            check_mint_report(4, &report(honest()), &x_only(&POOL), None).len(),
            1
        );
        assert_eq!(check_mint_report(5, &report(honest()), &key, None).len(), 1);
        // A body changed after signing.
        let mut altered = report(honest());
        altered.body.redeemed = 20;
        altered.body.outstanding = 40;
        assert_eq!(check_mint_report(4, &altered, &key, None).len(), 1);
        // Signed, but the arithmetic does not hold.
        let understated = report(MintEpochReport {
            outstanding: 30,
            ..honest()
        });
        assert_eq!(check_mint_report(4, &understated, &key, None).len(), 1);
        let overdrawn = report(MintEpochReport {
            redeemed: 61,
            outstanding: 0,
            ..honest()
        });
        assert_eq!(check_mint_report(4, &overdrawn, &key, None).len(), 1);
        // More sats withdrawn than the mint ever issued.
        let withdrawn = report(MintEpochReport {
            sats_withdrawn: 9_001,
            ..honest()
        });
        assert_eq!(check_mint_report(4, &withdrawn, &key, None).len(), 1);
        let short = report(MintEpochReport {
            issued: 50,
            outstanding: 25,
            ..honest()
        });
        assert_eq!(check_mint_report(4, &short, &key, None).len(), 1);
        // A quote the pool counts that the mint leaves out (or the other way round).
        let other = pool(&[10, 20, 31], 0);
        assert_eq!(
            check_mint_report(4, &report(honest()), &key, Some(&other)).len(),
            1
        );
        // While the pool's commitment is incomplete the trees are not compared.
        let incomplete = pool(&[10, 20], 1);
        assert!(check_mint_report(4, &report(honest()), &key, Some(&incomplete)).is_empty());
    }
}
