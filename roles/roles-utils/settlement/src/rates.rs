//! Final rates as the pool publishes them: a sheet of every final epoch's reward and ehash,
//! signed by the pool's authority key (BIP-340) over SHA-256 of a tag and the sheet's compact
//! JSON, so a wallet holding ehash can check the rate it redeems at came from the pool.

use bitcoin::{
    hashes::{sha256, Hash},
    hex::{DisplayHex, FromHex},
    secp256k1::{schnorr::Signature, Keypair, Message, Secp256k1, XOnlyPublicKey},
};
use serde::{Deserialize, Serialize};

use crate::SettlementError;

/// Domain separation for the signature.
const TAG: &[u8] = b"hashpool/rates/v1";

/// One final epoch: a unit of its ehash redeems for `floor(reward_sats / ehash)` sats (the
/// floor of the product for an amount: `redemption_sats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRate {
    pub epoch: u32,
    /// The epoch's range of the pool's work, hashes as decimal strings.
    pub start_work: String,
    pub end_work: String,
    pub reward_sats: u64,
    pub ehash: u64,
}

/// What is signed: the pool's key and the rates, in this order.
#[derive(Serialize)]
struct Signed<'a> {
    pool_key: &'a str,
    rates: &'a [FinalRate],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateSheet {
    /// The pool's authority key, x-only, hex.
    pub pool_key: String,
    pub rates: Vec<FinalRate>,
    /// BIP-340 signature, hex.
    pub signature: String,
}

fn digest(pool_key: &str, rates: &[FinalRate]) -> Result<[u8; 32], SettlementError> {
    let body = serde_json::to_vec(&Signed { pool_key, rates })
        .map_err(|e| SettlementError::BadSheet(e.to_string()))?;
    let mut data = TAG.to_vec();
    data.extend_from_slice(&body);
    Ok(sha256::Hash::hash(&data).to_byte_array())
}

impl RateSheet {
    /// `rates` signed with the pool's authority `secret_key`.
    pub fn sign(secret_key: &[u8; 32], rates: Vec<FinalRate>) -> Result<Self, SettlementError> {
        let secp = Secp256k1::signing_only();
        let keypair = Keypair::from_seckey_slice(&secp, secret_key)
            .map_err(|e| SettlementError::BadSheet(format!("the pool's key: {e}")))?;
        let pool_key = keypair
            .x_only_public_key()
            .0
            .serialize()
            .to_lower_hex_string();
        let message = Message::from_digest(digest(&pool_key, &rates)?);
        let signature = secp.sign_schnorr(&message, &keypair);
        Ok(Self {
            pool_key,
            rates,
            signature: signature.serialize().to_lower_hex_string(),
        })
    }

    /// Checks the signature, and that the sheet is the pool's whose x-only key is `pool_key`.
    pub fn verify(&self, pool_key: &[u8; 32]) -> Result<(), SettlementError> {
        let bad = |why: &str| SettlementError::BadSheet(why.to_string());
        let key = <[u8; 32]>::from_hex(&self.pool_key)
            .map_err(|_| bad("pool key is not 32 hex bytes"))?;
        if &key != pool_key {
            return Err(bad("signed by another key than the pool's"));
        }
        let key = XOnlyPublicKey::from_slice(&key).map_err(|_| bad("not a valid public key"))?;
        let signature = <[u8; 64]>::from_hex(&self.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| bad("malformed signature"))?;
        let message = Message::from_digest(digest(&self.pool_key, &self.rates)?);
        Secp256k1::verification_only()
            .verify_schnorr(&signature, &message, &key)
            .map_err(|_| bad("the signature does not verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let sheet = RateSheet::sign(&secret, rates()).unwrap();
        sheet.verify(&pool_key(&secret)).unwrap();
        let back: RateSheet =
            serde_json::from_str(&serde_json::to_string(&sheet).unwrap()).unwrap();
        back.verify(&pool_key(&secret)).unwrap();
    }

    #[test]
    fn a_tampered_sheet_or_another_key_fails() {
        let secret = [7u8; 32];
        let key = pool_key(&secret);
        let sheet = RateSheet::sign(&secret, rates()).unwrap();
        let mut richer = sheet.clone();
        richer.rates[1].reward_sats += 1;
        assert!(richer.verify(&key).is_err());
        let mut dropped = sheet.clone();
        dropped.rates.remove(0);
        assert!(dropped.verify(&key).is_err());
        let mut garbled = sheet.clone();
        garbled.signature = "00".into();
        assert!(garbled.verify(&key).is_err());
        // Signed by someone else, presented as the pool's or as its own.
        let forged = RateSheet::sign(&[8u8; 32], rates()).unwrap();
        assert!(forged.verify(&key).is_err());
        let mut posing = forged.clone();
        posing.pool_key = sheet.pool_key.clone();
        assert!(posing.verify(&key).is_err());
    }
}
