//! A Merkle-sum tree (docs/settlement.md, "Proof of liabilities"): every node commits to its
//! children's hashes and the sum of their amounts, so the root commits to the total, and a
//! holder can check that their own entry is counted in it (an inclusion proof carries the
//! siblings' sums). An odd node at the end of a level is carried up as it is (duplicating it,
//! as Bitcoin's transaction tree does, would count it twice).

use bitcoin::hashes::{sha256, Hash, HashEngine};
use serde::{Deserialize, Serialize};

use crate::SettlementError;

/// One entry: a quote (its id), the key it is locked to, its amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    pub id: String,
    pub key: String,
    pub amount: u64,
}

/// A node: its hash and the sum under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    pub sum: u64,
}

/// The siblings from a leaf up to the root; `left` says the sibling is on the left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub index: usize,
    pub path: Vec<(bool, Node)>,
}

fn field(engine: &mut sha256::HashEngine, bytes: &[u8]) {
    engine.input(&(bytes.len() as u64).to_le_bytes());
    engine.input(bytes);
}

impl Leaf {
    pub fn node(&self) -> Node {
        let mut engine = sha256::Hash::engine();
        engine.input(b"hashpool/pol/leaf");
        field(&mut engine, self.id.as_bytes());
        field(&mut engine, self.key.as_bytes());
        engine.input(&self.amount.to_le_bytes());
        Node {
            hash: sha256::Hash::from_engine(engine).to_byte_array(),
            sum: self.amount,
        }
    }
}

fn parent(left: &Node, right: &Node) -> Result<Node, SettlementError> {
    let sum = left
        .sum
        .checked_add(right.sum)
        .ok_or(SettlementError::ValueOverflow)?;
    let mut engine = sha256::Hash::engine();
    engine.input(b"hashpool/pol/node");
    engine.input(&left.hash);
    engine.input(&left.sum.to_le_bytes());
    engine.input(&right.hash);
    engine.input(&right.sum.to_le_bytes());
    Ok(Node {
        hash: sha256::Hash::from_engine(engine).to_byte_array(),
        sum,
    })
}

/// The empty tree's root: no entries, sum zero.
pub const EMPTY: Node = Node {
    hash: [0; 32],
    sum: 0,
};

#[derive(Debug, Clone)]
pub struct MerkleSumTree {
    /// Level 0 is the leaves; the last level holds the root alone.
    levels: Vec<Vec<Node>>,
}

impl MerkleSumTree {
    pub fn new(leaves: &[Leaf]) -> Result<Self, SettlementError> {
        let mut levels = vec![leaves.iter().map(Leaf::node).collect::<Vec<_>>()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let mut up = Vec::with_capacity(below.len().div_ceil(2));
            for pair in below.chunks(2) {
                match (pair.first(), pair.get(1)) {
                    (Some(left), Some(right)) => up.push(parent(left, right)?),
                    (Some(odd), None) => up.push(*odd),
                    _ => {}
                }
            }
            levels.push(up);
        }
        Ok(Self { levels })
    }

    pub fn root(&self) -> Node {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(EMPTY)
    }

    /// The proof for leaf `index`.
    pub fn proof(&self, index: usize) -> Option<Proof> {
        self.levels.first()?.get(index)?;
        let mut path = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if let Some(node) = level.get(sibling) {
                path.push((sibling < i, *node));
            }
            i /= 2;
        }
        Some(Proof { index, path })
    }
}

/// Whether `leaf` with `proof` leads to `root` (hash and sum).
pub fn verify(leaf: &Leaf, proof: &Proof, root: &Node) -> bool {
    let mut node = leaf.node();
    for (left, sibling) in &proof.path {
        let next = if *left {
            parent(sibling, &node)
        } else {
            parent(&node, sibling)
        };
        match next {
            Ok(n) => node = n,
            Err(_) => return false,
        }
    }
    node == *root
}

mod hex32 {
    use bitcoin::hex::{DisplayHex, FromHex};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.to_lower_hex_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        <[u8; 32]>::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Leaf> {
        (0..n)
            .map(|i| Leaf {
                id: format!("quote-{i}"),
                key: format!("02{i:064x}"),
                amount: 1 + i as u64 * 7,
            })
            .collect()
    }

    #[test]
    fn every_leaf_proves_its_place_in_a_root_that_sums_them_all() {
        for n in 1..=20 {
            let l = leaves(n);
            let tree = MerkleSumTree::new(&l).unwrap();
            let root = tree.root();
            assert_eq!(root.sum, l.iter().map(|x| x.amount).sum::<u64>());
            for (i, leaf) in l.iter().enumerate() {
                let proof = tree.proof(i).unwrap();
                assert!(verify(leaf, &proof, &root), "n {n} leaf {i}");
                // Survives JSON.
                let back: Proof =
                    serde_json::from_str(&serde_json::to_string(&proof).unwrap()).unwrap();
                assert!(verify(leaf, &back, &root));
            }
            assert!(tree.proof(n).is_none());
        }
        assert_eq!(MerkleSumTree::new(&[]).unwrap().root(), EMPTY);
    }

    #[test]
    fn a_changed_amount_a_changed_sum_or_another_leaf_does_not_verify() {
        let l = leaves(9);
        let tree = MerkleSumTree::new(&l).unwrap();
        let root = tree.root();
        let proof = tree.proof(4).unwrap();
        let mut more = l[4].clone();
        more.amount += 1;
        assert!(!verify(&more, &proof, &root));
        let mut other_key = l[4].clone();
        other_key.key = l[5].key.clone();
        assert!(!verify(&other_key, &proof, &root));
        // A sibling claiming a smaller sum (an entry dropped from the total) fails.
        let mut shrunk = proof.clone();
        shrunk.path[0].1.sum -= 1;
        assert!(!verify(&l[4], &shrunk, &root));
        // A root claiming a smaller total fails.
        let lower = Node {
            sum: root.sum - 1,
            ..root
        };
        assert!(!verify(&l[4], &proof, &lower));
        assert!(!verify(&l[5], &proof, &root));
    }

    #[test]
    fn sums_past_u64_are_refused() {
        let l = vec![
            Leaf {
                id: "a".into(),
                key: "k".into(),
                amount: u64::MAX,
            },
            Leaf {
                id: "b".into(),
                key: "k".into(),
                amount: 1,
            },
        ];
        assert_eq!(
            MerkleSumTree::new(&l).unwrap_err(),
            SettlementError::ValueOverflow
        );
    }
}
