//! The mint proves its key on the mint link: Noise authenticates only the pool (the
//! responder), so the pool sends a fresh challenge and the mint signs it with its key.

use binary_sv2::{SignatureOwned, U256Owned};
use secp256k1::{schnorr, Keypair, Message, Secp256k1, XOnlyPublicKey};

use crate::{MintLinkAuthOwned, MintLinkChallengeOwned};

/// Why a mint's answer to the challenge is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintLinkAuthError {
    #[error("the mint's secret key is not a valid key")]
    InvalidSecretKey,
    #[error("the mint key is not the one this pool is configured with")]
    UnexpectedKey,
    #[error("the configured mint key is not a valid x-only key")]
    InvalidExpectedKey,
    #[error("malformed signature")]
    MalformedSignature,
    #[error("the challenge signature does not verify")]
    BadSignature,
}

/// What the mint signs: SHA-256 of a domain tag and the challenge nonce.
pub fn mint_link_auth_digest(nonce: &[u8; 32]) -> [u8; 32] {
    use secp256k1::hashes::{sha256, Hash};
    let mut data = b"hashpool/mint-link/v1".to_vec();
    data.extend_from_slice(nonce);
    sha256::Hash::hash(&data).to_byte_array()
}

/// A fresh challenge (the pool's side).
pub fn new_challenge() -> MintLinkChallengeOwned {
    MintLinkChallengeOwned {
        nonce: U256Owned::from(rand::random::<[u8; 32]>()),
    }
}

/// The mint's answer: its x-only key and a BIP340 signature of the challenge's digest.
pub fn sign_challenge(
    challenge: &MintLinkChallengeOwned,
    secret_key: &[u8; 32],
) -> Result<MintLinkAuthOwned, MintLinkAuthError> {
    let secp = Secp256k1::signing_only();
    let keypair = Keypair::from_seckey_slice(&secp, secret_key)
        .map_err(|_| MintLinkAuthError::InvalidSecretKey)?;
    let digest = mint_link_auth_digest(&challenge.nonce.to_array());
    let signature = secp.sign_schnorr(&Message::from_digest(digest), &keypair);
    Ok(MintLinkAuthOwned {
        mint_public_key: U256Owned::from(keypair.x_only_public_key().0.serialize()),
        signature: SignatureOwned::from(*signature.as_ref()),
    })
}

/// The pool's check: the answer names `expected_key` and signs `challenge` with it.
pub fn verify_challenge(
    challenge: &MintLinkChallengeOwned,
    auth: &MintLinkAuthOwned,
    expected_key: &[u8; 32],
) -> Result<(), MintLinkAuthError> {
    if &auth.mint_public_key.to_array() != expected_key {
        return Err(MintLinkAuthError::UnexpectedKey);
    }
    let key = XOnlyPublicKey::from_slice(expected_key)
        .map_err(|_| MintLinkAuthError::InvalidExpectedKey)?;
    let signature = schnorr::Signature::from_slice(auth.signature.as_ref())
        .map_err(|_| MintLinkAuthError::MalformedSignature)?;
    let digest = mint_link_auth_digest(&challenge.nonce.to_array());
    Secp256k1::verification_only()
        .verify_schnorr(&signature, &Message::from_digest(digest), &key)
        .map_err(|_| MintLinkAuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x_only(secret: &[u8; 32]) -> [u8; 32] {
        let secp = Secp256k1::signing_only();
        Keypair::from_seckey_slice(&secp, secret)
            .unwrap()
            .x_only_public_key()
            .0
            .serialize()
    }

    #[test]
    fn a_signed_challenge_verifies_for_its_key_only() {
        let (secret, other) = ([7u8; 32], [9u8; 32]);
        let challenge = new_challenge();
        let auth = sign_challenge(&challenge, &secret).unwrap();
        assert_eq!(
            verify_challenge(&challenge, &auth, &x_only(&secret)),
            Ok(())
        );
        assert_eq!(
            verify_challenge(&challenge, &auth, &x_only(&other)),
            Err(MintLinkAuthError::UnexpectedKey)
        );
        // A signature of another challenge (a replay) does not verify.
        assert_eq!(
            verify_challenge(&new_challenge(), &auth, &x_only(&secret)),
            Err(MintLinkAuthError::BadSignature)
        );
        // Another key claiming to be the expected one.
        let mut forged = sign_challenge(&challenge, &other).unwrap();
        forged.mint_public_key = U256Owned::from(x_only(&secret));
        assert_eq!(
            verify_challenge(&challenge, &forged, &x_only(&secret)),
            Err(MintLinkAuthError::BadSignature)
        );
        assert_eq!(
            sign_challenge(&challenge, &[0u8; 32]).unwrap_err(),
            MintLinkAuthError::InvalidSecretKey
        );
    }
}
