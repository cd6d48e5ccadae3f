//! What the pool publishes, signed with its authority key (BIP-340, over SHA-256 of a tag and
//! the compact JSON of `{"pool_key":..,"body":..}`): the sheet of final rates, and each
//! epoch's commitment to the batches (quotes) that make its ehash, as the root of a
//! Merkle-sum tree. A wallet checks that the rate it redeems at, and the ehash its quotes are
//! counted in, came from the pool.

use bitcoin::{
    hashes::{sha256, Hash},
    hex::{DisplayHex, FromHex},
    secp256k1::{schnorr::Signature, Keypair, Message, Secp256k1, XOnlyPublicKey},
};
use serde::{Deserialize, Serialize};

use crate::{merkle_sum::Node, SettlementError};

/// The tag of the rate sheet's signature.
pub const RATES_TAG: &[u8] = b"hashpool/rates/v1";
/// The tag of an epoch commitment's signature.
pub const EPOCH_TAG: &[u8] = b"hashpool/epoch/v1";

/// One final epoch: `x` of its ehash redeems for `floor(x x reward_sats / ehash)` sats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRate {
    pub epoch: u32,
    /// The epoch's range of the pool's work, hashes as decimal strings.
    pub start_work: String,
    pub end_work: String,
    pub reward_sats: u64,
    pub ehash: u64,
}

/// Every final epoch's rate.
pub type RateSheet = Signed<Vec<FinalRate>>;

/// A closed epoch's quotes: the root of the Merkle-sum tree over `(quote id, key, amount)` of
/// its quoted batches in quote id order (`root.sum` is its ehash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochQuotes {
    pub epoch: u32,
    pub start_work: String,
    pub end_work: String,
    pub quotes: u64,
    /// Batches of the epoch the mint has not answered yet: until none is left, later
    /// commitments can hold more quotes.
    pub unanswered: u64,
    pub root: Node,
}

pub type EpochCommitment = Signed<EpochQuotes>;

/// `body` as the pool signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// The pool's authority key, x-only, hex.
    pub pool_key: String,
    pub body: T,
    /// BIP-340 signature, hex.
    pub signature: String,
}

#[derive(Serialize)]
struct ToSign<'a, T> {
    pool_key: &'a str,
    body: &'a T,
}

fn digest<T: Serialize>(tag: &[u8], pool_key: &str, body: &T) -> Result<[u8; 32], SettlementError> {
    let json = serde_json::to_vec(&ToSign { pool_key, body })
        .map_err(|e| SettlementError::BadSheet(e.to_string()))?;
    let mut data = tag.to_vec();
    data.extend_from_slice(&json);
    Ok(sha256::Hash::hash(&data).to_byte_array())
}

impl<T: Serialize> Signed<T> {
    /// `body` signed under `tag` with the pool's authority `secret_key`.
    pub fn sign(tag: &[u8], secret_key: &[u8; 32], body: T) -> Result<Self, SettlementError> {
        let secp = Secp256k1::signing_only();
        let keypair = Keypair::from_seckey_slice(&secp, secret_key)
            .map_err(|e| SettlementError::BadSheet(format!("the pool's key: {e}")))?;
        let pool_key = keypair
            .x_only_public_key()
            .0
            .serialize()
            .to_lower_hex_string();
        let message = Message::from_digest(digest(tag, &pool_key, &body)?);
        let signature = secp.sign_schnorr(&message, &keypair);
        Ok(Self {
            pool_key,
            body,
            signature: signature.serialize().to_lower_hex_string(),
        })
    }

    /// Checks the signature under `tag`, and that the signer is the one whose x-only key is
    /// `pool_key` (the pool's, or for the mint's reports the mint's).
    pub fn verify(&self, tag: &[u8], pool_key: &[u8; 32]) -> Result<(), SettlementError> {
        let bad = |why: &str| SettlementError::BadSheet(why.to_string());
        let key = <[u8; 32]>::from_hex(&self.pool_key)
            .map_err(|_| bad("pool key is not 32 hex bytes"))?;
        if &key != pool_key {
            return Err(bad("signed by another key than the one expected"));
        }
        let key = XOnlyPublicKey::from_slice(&key).map_err(|_| bad("not a valid public key"))?;
        let signature = <[u8; 64]>::from_hex(&self.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| bad("malformed signature"))?;
        let message = Message::from_digest(digest(tag, &self.pool_key, &self.body)?);
        Secp256k1::verification_only()
            .verify_schnorr(&signature, &message, &key)
            .map_err(|_| bad("the signature does not verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle_sum::{Leaf, MerkleSumTree};

    fn rates() -> Vec<FinalRate> {
        vec![
            FinalRate {
                epoch: 0,
                start_work: "0".into(),
                end_work: "1000".into(),
                reward_sats: 4_900,
                ehash: 7,
            },
            FinalRate {
                epoch: 1,
                start_work: "1000".into(),
                end_work: "2013".into(),
                reward_sats: 5_100,
                ehash: 9,
            },
        ]
    }

    fn pool_key(secret: &[u8; 32]) -> [u8; 32] {
        let secp = Secp256k1::signing_only();
        Keypair::from_seckey_slice(&secp, secret)
            .unwrap()
            .x_only_public_key()
            .0
            .serialize()
    }

    #[test]
    fn a_signed_sheet_verifies_and_survives_json() {
        let secret = [7u8; 32];
        let sheet = RateSheet::sign(RATES_TAG, &secret, rates()).unwrap();
        sheet.verify(RATES_TAG, &pool_key(&secret)).unwrap();
        let back: RateSheet =
            serde_json::from_str(&serde_json::to_string(&sheet).unwrap()).unwrap();
        back.verify(RATES_TAG, &pool_key(&secret)).unwrap();
    }

    #[test]
    fn a_tampered_sheet_another_key_or_another_tag_fails() {
        let secret = [7u8; 32];
        let key = pool_key(&secret);
        let sheet = RateSheet::sign(RATES_TAG, &secret, rates()).unwrap();
        let mut richer = sheet.clone();
        richer.body[1].reward_sats += 1;
        assert!(richer.verify(RATES_TAG, &key).is_err());
        let mut dropped = sheet.clone();
        dropped.body.remove(0);
        assert!(dropped.verify(RATES_TAG, &key).is_err());
        let mut garbled = sheet.clone();
        garbled.signature = "00".into();
        assert!(garbled.verify(RATES_TAG, &key).is_err());
        // A signature made for one kind of publication is not one for another.
        assert!(sheet.verify(EPOCH_TAG, &key).is_err());
        // Signed by someone else, presented as the pool's or as its own.
        let forged = RateSheet::sign(RATES_TAG, &[8u8; 32], rates()).unwrap();
        assert!(forged.verify(RATES_TAG, &key).is_err());
        let mut posing = forged.clone();
        posing.pool_key = sheet.pool_key.clone();
        assert!(posing.verify(RATES_TAG, &key).is_err());
    }

    #[test]
    fn an_epoch_commitment_commits_to_its_quotes_total() {
        let secret = [7u8; 32];
        let leaves: Vec<Leaf> = (0..5)
            .map(|i| Leaf {
                id: format!("q{i}"),
                key: "02ab".into(),
                amount: 3,
            })
            .collect();
        let tree = MerkleSumTree::new(&leaves).unwrap();
        let body = EpochQuotes {
            epoch: 4,
            start_work: "10".into(),
            end_work: "20".into(),
            quotes: 5,
            unanswered: 0,
            root: tree.root(),
        };
        let signed = EpochCommitment::sign(EPOCH_TAG, &secret, body).unwrap();
        signed.verify(EPOCH_TAG, &pool_key(&secret)).unwrap();
        assert_eq!(signed.body.root.sum, 15);
        let mut smaller = signed.clone();
        smaller.body.root.sum = 12;
        assert!(smaller.verify(EPOCH_TAG, &pool_key(&secret)).is_err());
    }
}
