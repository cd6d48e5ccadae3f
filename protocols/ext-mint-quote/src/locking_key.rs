use parsers_sv2::Tlv;

use crate::{ExtError, EXTENSION_TYPE, TLV_FIELD_LOCKING_KEY};

/// A compressed secp256k1 public key.
pub const LOCKING_KEY_LEN: usize = 33;

/// The key an ehash quote is locked to (NUT-20): only its holder can mint the quote.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockingKey([u8; LOCKING_KEY_LEN]);

impl LockingKey {
    /// Accepts exactly 33 bytes that are a point on the curve.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ExtError> {
        let array: [u8; LOCKING_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| ExtError::BadKeyLength(bytes.len()))?;
        secp256k1::PublicKey::from_slice(&array).map_err(|_| ExtError::InvalidKey)?;
        Ok(Self(array))
    }

    /// From 66 hex characters (how keys appear in user identities and configs).
    pub fn from_hex(s: &str) -> Result<Self, ExtError> {
        let s = s.trim();
        if s.len() != LOCKING_KEY_LEN * 2 || !s.is_ascii() {
            return Err(ExtError::BadKeyLength(s.len() / 2));
        }
        let bytes: Result<Vec<u8>, _> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
            .collect();
        Self::from_slice(&bytes.map_err(|_| ExtError::InvalidKey)?)
    }

    pub fn as_bytes(&self) -> &[u8; LOCKING_KEY_LEN] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for LockingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockingKey({})", self.to_hex())
    }
}

impl std::fmt::Display for LockingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The TLV a miner appends to its channel-open message.
pub fn locking_key_tlv(key: &LockingKey) -> Tlv {
    Tlv::new(
        EXTENSION_TYPE,
        TLV_FIELD_LOCKING_KEY,
        key.as_bytes().to_vec(),
    )
}

/// The locking key among a message's TLVs: `Ok(None)` when there is none, an error when the
/// field is there but is not a valid key.
pub fn locking_key_from_tlvs(tlvs: &[Tlv]) -> Result<Option<LockingKey>, ExtError> {
    tlvs.iter()
        .find(|t| {
            t.r#type.extension_type == EXTENSION_TYPE
                && t.r#type.field_type == TLV_FIELD_LOCKING_KEY
        })
        .map(|t| LockingKey::from_slice(&t.value))
        .transpose()
}
