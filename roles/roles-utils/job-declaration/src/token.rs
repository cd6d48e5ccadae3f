//! The job token: what the jd-server signs about an accepted job, checked by the pool against
//! the `SetCustomMiningJob` that names it.

use bitcoin::{
    consensus,
    hashes::{sha256, Hash},
    secp256k1::{schnorr::Signature, Keypair, Message, Secp256k1, XOnlyPublicKey},
    TxOut,
};

const TAG: &[u8] = b"hashpool/job-token/v1";
const FORMAT: u8 = 1;
/// format (1) + expiry (8) + commitment (32) + BIP340 signature (64).
pub const JOB_TOKEN_LEN: usize = 1 + 8 + 32 + 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a job token from a jd-server of this pool (malformed)")]
    Malformed,
    #[error("the job token's signature is not the jd-server's")]
    BadSignature,
    #[error("the job differs from the one the jd-server accepted under this token")]
    WrongJob,
    #[error("the job token expired")]
    Expired,
    #[error("invalid key: {0}")]
    BadKey(String),
}

/// Everything a `SetCustomMiningJob` says about its job, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCommitment(pub [u8; 32]);

impl JobCommitment {
    /// `extranonce_len`: the whole extranonce after `script_sig_prefix` (the pool channel's
    /// prefix and the miner's part), which ends the scriptSig.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        version: u32,
        coinbase_tx_version: u32,
        script_sig_prefix: &[u8],
        extranonce_len: usize,
        input_sequence: u32,
        outputs: &[TxOut],
        locktime: u32,
        merkle_path: &[[u8; 32]],
    ) -> Self {
        let mut data = TAG.to_vec();
        data.extend_from_slice(&version.to_le_bytes());
        data.extend_from_slice(&coinbase_tx_version.to_le_bytes());
        data.extend_from_slice(&(script_sig_prefix.len() as u32).to_le_bytes());
        data.extend_from_slice(script_sig_prefix);
        data.extend_from_slice(&(extranonce_len as u32).to_le_bytes());
        data.extend_from_slice(&input_sequence.to_le_bytes());
        // Canonical: the decoded outputs re-encoded, whatever bytes carried them.
        let outputs = consensus::serialize(&outputs.to_vec());
        data.extend_from_slice(&(outputs.len() as u32).to_le_bytes());
        data.extend_from_slice(&outputs);
        data.extend_from_slice(&locktime.to_le_bytes());
        data.extend_from_slice(&(merkle_path.len() as u32).to_le_bytes());
        for step in merkle_path {
            data.extend_from_slice(step);
        }
        Self(sha256::Hash::hash(&data).to_byte_array())
    }
}

fn digest(expires_at: u64, commitment: &[u8; 32]) -> [u8; 32] {
    let mut data = TAG.to_vec();
    data.extend_from_slice(&expires_at.to_le_bytes());
    data.extend_from_slice(commitment);
    sha256::Hash::hash(&data).to_byte_array()
}

/// A checked job token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobToken {
    pub expires_at: u64,
    pub commitment: JobCommitment,
}

impl JobToken {
    /// The token for `commitment`, valid until `expires_at` (unix seconds), signed with the
    /// jd-server's secret key.
    pub fn issue(
        secret_key: &[u8; 32],
        commitment: &JobCommitment,
        expires_at: u64,
    ) -> Result<Vec<u8>, TokenError> {
        let secp = Secp256k1::signing_only();
        let keypair = Keypair::from_seckey_slice(&secp, secret_key)
            .map_err(|e| TokenError::BadKey(e.to_string()))?;
        let signature = secp.sign_schnorr(
            &Message::from_digest(digest(expires_at, &commitment.0)),
            &keypair,
        );
        let mut token = Vec::with_capacity(JOB_TOKEN_LEN);
        token.push(FORMAT);
        token.extend_from_slice(&expires_at.to_le_bytes());
        token.extend_from_slice(&commitment.0);
        token.extend_from_slice(signature.as_ref());
        Ok(token)
    }

    /// Checks `token` against the jd-server's x-only public key, the job it must be for, and
    /// the time.
    pub fn verify(
        token: &[u8],
        jd_server_key: &[u8; 32],
        expected: &JobCommitment,
        now: u64,
    ) -> Result<JobToken, TokenError> {
        if token.len() != JOB_TOKEN_LEN || token[0] != FORMAT {
            return Err(TokenError::Malformed);
        }
        let expires_at =
            u64::from_le_bytes(token[1..9].try_into().map_err(|_| TokenError::Malformed)?);
        let commitment: [u8; 32] = token[9..41].try_into().map_err(|_| TokenError::Malformed)?;
        let signature = Signature::from_slice(&token[41..]).map_err(|_| TokenError::Malformed)?;
        let key = XOnlyPublicKey::from_slice(jd_server_key)
            .map_err(|e| TokenError::BadKey(e.to_string()))?;
        Secp256k1::verification_only()
            .verify_schnorr(
                &signature,
                &Message::from_digest(digest(expires_at, &commitment)),
                &key,
            )
            .map_err(|_| TokenError::BadSignature)?;
        if commitment != expected.0 {
            return Err(TokenError::WrongJob);
        }
        if now > expires_at {
            return Err(TokenError::Expired);
        }
        Ok(JobToken {
            expires_at,
            commitment: JobCommitment(commitment),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{Amount, ScriptBuf};

    fn commitment(version: u32) -> JobCommitment {
        let outputs = vec![TxOut {
            value: Amount::from_sat(625_000_000),
            script_pubkey: ScriptBuf::from_bytes(vec![0x00, 0x14, 1, 2, 3]),
        }];
        JobCommitment::new(
            version,
            2,
            &[3, 1, 0, 0],
            16,
            u32::MAX,
            &outputs,
            0,
            &[[9u8; 32]],
        )
    }

    fn keys(seed: u8) -> ([u8; 32], [u8; 32]) {
        let secp = Secp256k1::new();
        let keypair = Keypair::from_seckey_slice(&secp, &[seed; 32]).unwrap();
        ([seed; 32], keypair.x_only_public_key().0.serialize())
    }

    #[test]
    fn a_token_verifies_only_for_its_job_key_and_time() {
        let (secret, public) = keys(7);
        let job = commitment(0x2000_0000);
        let token = JobToken::issue(&secret, &job, 1_000).unwrap();
        assert_eq!(token.len(), JOB_TOKEN_LEN);
        let ok = JobToken::verify(&token, &public, &job, 999).unwrap();
        assert_eq!(ok.expires_at, 1_000);

        // Another job under this token.
        assert_eq!(
            JobToken::verify(&token, &public, &commitment(0x2000_0004), 999),
            Err(TokenError::WrongJob)
        );
        // Another signer (a foreign jd-server, or a forged token).
        let (_, other) = keys(8);
        assert_eq!(
            JobToken::verify(&token, &other, &job, 999),
            Err(TokenError::BadSignature)
        );
        // A later expiry written into the token breaks the signature.
        let mut stretched = token.clone();
        stretched[1..9].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            JobToken::verify(&stretched, &public, &job, 999),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            JobToken::verify(&token, &public, &job, 1_001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            JobToken::verify(&token[..50], &public, &job, 999),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            JobToken::verify(&[0u8; 16], &public, &job, 999),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn every_field_is_committed() {
        let outputs = vec![TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::new(),
        }];
        let base = JobCommitment::new(1, 2, &[3], 8, 4, &outputs, 5, &[[6; 32]]);
        let mut more = outputs.clone();
        more[0].value = Amount::from_sat(2);
        for other in [
            JobCommitment::new(9, 2, &[3], 8, 4, &outputs, 5, &[[6; 32]]),
            JobCommitment::new(1, 9, &[3], 8, 4, &outputs, 5, &[[6; 32]]),
            JobCommitment::new(1, 2, &[9], 8, 4, &outputs, 5, &[[6; 32]]),
            JobCommitment::new(1, 2, &[3], 9, 4, &outputs, 5, &[[6; 32]]),
            JobCommitment::new(1, 2, &[3], 8, 9, &outputs, 5, &[[6; 32]]),
            JobCommitment::new(1, 2, &[3], 8, 4, &more, 5, &[[6; 32]]),
            JobCommitment::new(1, 2, &[3], 8, 4, &outputs, 9, &[[6; 32]]),
            JobCommitment::new(1, 2, &[3], 8, 4, &outputs, 5, &[[9; 32]]),
            JobCommitment::new(1, 2, &[3], 8, 4, &outputs, 5, &[]),
        ] {
            assert_ne!(base, other);
        }
    }
}
