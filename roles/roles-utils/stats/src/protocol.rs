//! The stats protocol, version 1.
//!
//! Transport: TCP, Noise NX as in SV2 (the stats service is the responder; reporters pin its
//! authority key). Every message is one SV2 frame of extension type [`EXTENSION_TYPE`] whose
//! payload is a JSON document; the frame's message type says which document it is.
//!
//! Flow: the service sends [`Challenge`] (its protocol version and a fresh nonce); the reporter
//! answers [`Hello`] (the version it speaks, its role and name, its x-only public key and a
//! BIP340 signature of [`auth_digest`]`(nonce)`); the service answers [`Welcome`] or
//! [`Refused`] and closes. After Welcome the reporter sends [`Report`]s; anything malformed
//! (bad JSON, unknown message type, a report before Hello) is refused and the connection
//! closed.

use bitcoin::{
    hashes::{sha256, Hash},
    secp256k1::{schnorr::Signature, Keypair, Message, Secp256k1, XOnlyPublicKey},
};
use codec_sv2::SerializedFrame;
use hashpool_sv2_io::{encode_raw, ExtensionFrame};
use serde::{Deserialize, Serialize};

/// Experimental extension range (0x4000..0x7fff): "Hs" for Hashpool stats.
pub const EXTENSION_TYPE: u16 = 0x4873;
/// The protocol version this code speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest payload accepted: a snapshot of thousands of miners fits many times over.
pub const MAX_PAYLOAD: usize = 4 << 20;

pub const MSG_CHALLENGE: u8 = 0x01;
pub const MSG_HELLO: u8 = 0x02;
pub const MSG_WELCOME: u8 = 0x03;
pub const MSG_REFUSED: u8 = 0x04;
pub const MSG_REPORT: u8 = 0x10;

/// Which side of Hashpool a reporter is; a stats service takes reports from one role only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Pool,
    Translator,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Pool => "pool",
            Role::Translator => "translator",
        }
    }
}

/// Service -> reporter, first message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    pub protocol_version: u16,
    /// 32 random bytes, hex.
    pub nonce: String,
}

/// Reporter -> service, answer to the challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u16,
    pub role: Role,
    /// The reporter's name (e.g. its user identity), for logs and the API.
    pub reporter: String,
    /// x-only public key, hex.
    pub public_key: String,
    /// BIP340 signature of `auth_digest(nonce)`, hex.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {}

/// Service -> reporter: why it is refused; the connection closes after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    /// `unsupported-version`, `unauthorized`, `malformed`, `wrong-role`, `unexpected`.
    pub code: String,
    pub message: String,
}

/// Something a reporter knows, sent as it happens (events) or periodically (snapshots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    Snapshot(Snapshot),
    Block(Block),
    Issuance(Issuance),
}

/// The reporter's state now, and the work accepted since its previous snapshot. A snapshot
/// lists every current subject: those it omits are no longer connected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Unix seconds, reporter's clock.
    pub at: u64,
    /// Shares accepted since the previous snapshot, all subjects together (including subjects
    /// that left in between).
    pub shares: u64,
    /// Work of those shares, in difficulty-1 shares.
    pub work: f64,
    /// Shares refused since the previous snapshot.
    pub shares_rejected: u64,
    pub subjects: Vec<Subject>,
    /// Health of the reporter's own dependencies (template provider, mint, pool...).
    pub services: Vec<ServiceHealth>,
    /// The reporter's wallet balance (translator), in ehash.
    pub wallet_balance: Option<u64>,
    /// The chain being mined, as the reporter's work source tells it (pool).
    #[serde(default)]
    pub network: Option<Network>,
}

/// The chain a reporter's work is for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Network {
    /// Height of the block being mined (the tip's height + 1).
    pub height: u64,
    /// Difficulty of the block being mined (difficulty 1 = the target of nBits 0x1d00ffff).
    pub difficulty: f64,
    /// Unix seconds when the reporter learned of the current tip.
    pub tip_seen_at: u64,
}

/// A channel, downstream connection or SV1 miner, as the reporter sees it now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Subject {
    /// Unique for the reporter: `channel:7`, `downstream:3`, `miner:alice.rig1#12`.
    pub id: String,
    /// `channel`, `downstream`, `miner`.
    pub kind: String,
    /// What a person reads: a user identity, a worker name, a vendor.
    pub label: String,
    /// The subject it belongs to (a channel's downstream).
    pub parent: Option<String>,
    /// Shares accepted since the previous snapshot.
    pub shares: u64,
    /// Their work, in difficulty-1 shares.
    pub work: f64,
    /// Shares accepted since the subject appeared.
    pub shares_total: u64,
    /// The hashrate the subject claims or its difficulty implies (H/s), if any. The service's
    /// own hashrate figures come from accepted work, not from this.
    pub nominal_hashrate: Option<f64>,
}

/// Whether a service the reporter depends on is reachable.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServiceHealth {
    pub name: String,
    pub up: bool,
    pub detail: String,
}

/// A block found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Block {
    pub at: u64,
    /// Block hash, hex (display order).
    pub hash: String,
    /// The subject whose share it was.
    pub subject: Option<String>,
    pub template_id: Option<u64>,
    /// Its height (BIP34, read from its coinbase).
    #[serde(default)]
    pub height: Option<u64>,
    /// What its coinbase pays in all (subsidy + fees), satoshis.
    #[serde(default)]
    pub reward_sats: Option<u64>,
    /// The difficulty it was mined at.
    #[serde(default)]
    pub difficulty: Option<f64>,
}

/// ehash issued: a paid quote (pool) or minted proofs (translator).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Issuance {
    pub at: u64,
    pub quote_id: String,
    pub amount: u64,
    /// The key the ehash is locked to, hex.
    pub locking_key: String,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsMessage {
    Challenge(Challenge),
    Hello(Hello),
    Welcome(Welcome),
    Refused(Refused),
    Report(Report),
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of extension {0:#06x}, not the stats protocol")]
    WrongExtension(u16),
    #[error("unknown message type {0:#04x}")]
    UnknownMessage(u8),
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed payload: {0}")]
    Json(#[from] serde_json::Error),
    #[error("frame: {0}")]
    Frame(#[from] hashpool_sv2_io::FrameError),
}

impl StatsMessage {
    pub fn message_type(&self) -> u8 {
        match self {
            StatsMessage::Challenge(_) => MSG_CHALLENGE,
            StatsMessage::Hello(_) => MSG_HELLO,
            StatsMessage::Welcome(_) => MSG_WELCOME,
            StatsMessage::Refused(_) => MSG_REFUSED,
            StatsMessage::Report(_) => MSG_REPORT,
        }
    }

    pub fn encode(&self) -> Result<SerializedFrame, ProtocolError> {
        Ok(encode_raw(
            EXTENSION_TYPE,
            false,
            self.message_type(),
            &self.payload()?,
        )?)
    }

    fn payload(&self) -> Result<Vec<u8>, ProtocolError> {
        let payload = match self {
            StatsMessage::Challenge(m) => serde_json::to_vec(m)?,
            StatsMessage::Hello(m) => serde_json::to_vec(m)?,
            StatsMessage::Welcome(m) => serde_json::to_vec(m)?,
            StatsMessage::Refused(m) => serde_json::to_vec(m)?,
            StatsMessage::Report(m) => serde_json::to_vec(m)?,
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge(payload.len()));
        }
        Ok(payload)
    }

    pub fn decode(frame: &ExtensionFrame) -> Result<Self, ProtocolError> {
        if frame.extension_type != EXTENSION_TYPE {
            return Err(ProtocolError::WrongExtension(frame.extension_type));
        }
        Self::decode_payload(frame.message_type, &frame.payload)
    }

    fn decode_payload(message_type: u8, p: &[u8]) -> Result<Self, ProtocolError> {
        if p.len() > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge(p.len()));
        }
        Ok(match message_type {
            MSG_CHALLENGE => StatsMessage::Challenge(serde_json::from_slice(p)?),
            MSG_HELLO => StatsMessage::Hello(serde_json::from_slice(p)?),
            MSG_WELCOME => StatsMessage::Welcome(serde_json::from_slice(p)?),
            MSG_REFUSED => StatsMessage::Refused(serde_json::from_slice(p)?),
            MSG_REPORT => StatsMessage::Report(serde_json::from_slice(p)?),
            other => return Err(ProtocolError::UnknownMessage(other)),
        })
    }
}

impl hashpool_sv2_io::ExtensionMessage for StatsMessage {
    const EXTENSION_TYPE: u16 = EXTENSION_TYPE;
    type Error = ProtocolError;

    fn message_type(&self) -> u8 {
        StatsMessage::message_type(self)
    }

    fn encode_payload(&self) -> Result<Vec<u8>, ProtocolError> {
        self.payload()
    }

    fn decode(message_type: u8, payload: &[u8]) -> Result<Self, ProtocolError> {
        Self::decode_payload(message_type, payload)
    }
}

/// What a reporter signs: SHA-256 of a domain tag and the challenge nonce.
pub fn auth_digest(nonce: &[u8; 32]) -> [u8; 32] {
    let mut data = b"hashpool/stats/v1".to_vec();
    data.extend_from_slice(nonce);
    sha256::Hash::hash(&data).to_byte_array()
}

/// The reporter's Hello for `challenge`, signed with `secret_key`.
pub fn sign_hello(
    challenge: &Challenge,
    role: Role,
    reporter: &str,
    secret_key: &[u8; 32],
) -> Result<Hello, String> {
    let nonce = parse_nonce(&challenge.nonce)?;
    let secp = Secp256k1::signing_only();
    let keypair =
        Keypair::from_seckey_slice(&secp, secret_key).map_err(|e| format!("reporter key: {e}"))?;
    let signature = secp.sign_schnorr(&Message::from_digest(auth_digest(&nonce)), &keypair);
    Ok(Hello {
        protocol_version: PROTOCOL_VERSION,
        role,
        reporter: reporter.to_string(),
        public_key: hex::encode(keypair.x_only_public_key().0.serialize()),
        signature: hex::encode(signature.serialize()),
    })
}

/// Checks that `hello` is signed, for `nonce`, by one of `allowed` (x-only keys).
pub fn verify_hello(hello: &Hello, nonce: &[u8; 32], allowed: &[[u8; 32]]) -> Result<(), String> {
    let key_bytes: [u8; 32] = hex::decode(&hello.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the public key is not 32 hex bytes")?;
    if !allowed.contains(&key_bytes) {
        return Err("this key may not report here".into());
    }
    let key = XOnlyPublicKey::from_slice(&key_bytes).map_err(|_| "not a valid public key")?;
    let signature = hex::decode(&hello.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("malformed signature")?;
    Secp256k1::verification_only()
        .verify_schnorr(&signature, &Message::from_digest(auth_digest(nonce)), &key)
        .map_err(|_| "the challenge signature does not verify".to_string())
}

pub fn parse_nonce(text: &str) -> Result<[u8; 32], String> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "the challenge nonce is not 32 hex bytes".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(m: &StatsMessage) -> ExtensionFrame {
        let mut f = m.encode().unwrap();
        hashpool_sv2_io::extension_frame(&mut f).unwrap()
    }

    #[test]
    fn messages_round_trip_through_frames() {
        let report = StatsMessage::Report(Report::Snapshot(Snapshot {
            at: 7,
            shares: 3,
            work: 1.5,
            subjects: vec![Subject {
                id: "channel:1".into(),
                kind: "channel".into(),
                shares: 3,
                work: 1.5,
                ..Default::default()
            }],
            ..Default::default()
        }));
        assert_eq!(StatsMessage::decode(&frame_of(&report)).unwrap(), report);
        let refused = StatsMessage::Refused(Refused {
            code: "unauthorized".into(),
            message: "no".into(),
        });
        assert_eq!(StatsMessage::decode(&frame_of(&refused)).unwrap(), refused);
    }

    #[test]
    fn malformed_and_foreign_frames_are_errors() {
        let mut bad = frame_of(&StatsMessage::Welcome(Welcome {}));
        bad.payload = b"{not json".to_vec();
        assert!(matches!(
            StatsMessage::decode(&bad),
            Err(ProtocolError::Json(_))
        ));
        let mut unknown = frame_of(&StatsMessage::Welcome(Welcome {}));
        unknown.message_type = 0x7f;
        assert!(matches!(
            StatsMessage::decode(&unknown),
            Err(ProtocolError::UnknownMessage(0x7f))
        ));
        let mut foreign = frame_of(&StatsMessage::Welcome(Welcome {}));
        foreign.extension_type = 0x4861;
        assert!(matches!(
            StatsMessage::decode(&foreign),
            Err(ProtocolError::WrongExtension(_))
        ));
        // A report of an unknown kind is malformed, not ignored.
        let mut odd = frame_of(&StatsMessage::Welcome(Welcome {}));
        odd.message_type = MSG_REPORT;
        odd.payload = br#"{"type":"gossip"}"#.to_vec();
        assert!(StatsMessage::decode(&odd).is_err());
    }

    #[test]
    fn only_an_allowed_key_that_signed_this_nonce_is_accepted() {
        let secret = [7u8; 32];
        let nonce = [9u8; 32];
        let challenge = Challenge {
            protocol_version: PROTOCOL_VERSION,
            nonce: hex::encode(nonce),
        };
        let hello = sign_hello(&challenge, Role::Pool, "pool", &secret).unwrap();
        let key: [u8; 32] = hex::decode(&hello.public_key).unwrap().try_into().unwrap();
        assert!(verify_hello(&hello, &nonce, &[key]).is_ok());
        // Another nonce (a replayed Hello), another key, a tampered signature: refused.
        assert!(verify_hello(&hello, &[1u8; 32], &[key]).is_err());
        assert!(verify_hello(&hello, &nonce, &[[2u8; 32]]).is_err());
        let mut tampered = hello.clone();
        let mut signature = hex::decode(&hello.signature).unwrap();
        signature[0] ^= 1;
        tampered.signature = hex::encode(signature);
        assert!(verify_hello(&tampered, &nonce, &[key]).is_err());
    }
}
