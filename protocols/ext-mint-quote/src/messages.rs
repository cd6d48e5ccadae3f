//! The extension's messages and their strict decoding.

use binary_sv2::{Deserialize, GetSize, Serialize, Signature, Str0255, B0255, U256};

use crate::{
    ExtError, LockingKey, MAX_MESSAGE_SIZE, MESSAGE_TYPE_MINT_LINK_AUTH,
    MESSAGE_TYPE_MINT_LINK_CHALLENGE, MESSAGE_TYPE_MINT_QUOTE_ERROR,
    MESSAGE_TYPE_MINT_QUOTE_REQUEST, MESSAGE_TYPE_MINT_QUOTE_RESPONSE,
    MESSAGE_TYPE_QUOTE_ANNOUNCEMENT,
};

/// Pool -> mint: turn a batch of accepted work into one paid quote locked to `locking_key`.
/// The mint applies each `request_id` at most once; a repeat gets the same quote back.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MintQuoteRequest<'decoder> {
    /// Unique per batch, chosen by the pool; also the idempotency key.
    pub request_id: U256<'decoder>,
    /// Compressed secp256k1 public key (33 bytes) the quote is locked to (NUT-20).
    pub locking_key: B0255<'decoder>,
    /// Currency unit (`hash`).
    pub unit: Str0255<'decoder>,
    /// Ehash to issue.
    pub amount: u64,
    /// Accepted shares in the batch.
    pub share_count: u32,
    /// SHA-256 over the batch's share hashes in acceptance order (audit).
    pub share_commitment: U256<'decoder>,
    /// The settlement epoch the batch's work belongs to; [`crate::NO_EPOCH`] for work from
    /// before the pool's first epoch. The mint signs the quote only in that epoch's keyset.
    pub epoch: u32,
}

/// Mint -> pool: the quote created (or found again) for a request.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MintQuoteResponse<'decoder> {
    pub request_id: U256<'decoder>,
    /// The mint's quote id (what a wallet mints with).
    pub quote_id: Str0255<'decoder>,
    pub amount: u64,
}

/// Mint -> pool: a request the mint did not honour; `error_code` says whether retrying helps.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MintQuoteError<'decoder> {
    pub request_id: U256<'decoder>,
    pub error_code: Str0255<'decoder>,
    pub message: Str0255<'decoder>,
}

/// Pool -> miner, on the channel whose locking key the quote is locked to.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct QuoteAnnouncement<'decoder> {
    pub channel_id: u32,
    pub quote_id: Str0255<'decoder>,
    pub amount: u64,
    /// The key the quote is locked to (a wallet may hold several).
    pub locking_key: B0255<'decoder>,
}

/// Pool -> mint: a fresh random challenge. Noise authenticates only the pool (the responder),
/// so the mint proves its key by signing this.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MintLinkChallenge<'decoder> {
    pub nonce: U256<'decoder>,
}

/// Mint -> pool: the mint's x-only public key and its BIP340 signature of
/// [`crate::mint_link_auth_digest`] of the challenge.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MintLinkAuth<'decoder> {
    pub mint_public_key: U256<'decoder>,
    pub signature: Signature<'decoder>,
}

/// Any message of the extension, owned.
#[derive(Debug, Clone)]
pub enum MintQuoteMessage {
    Request(MintQuoteRequestOwned),
    Response(MintQuoteResponseOwned),
    Error(MintQuoteErrorOwned),
    Announcement(QuoteAnnouncementOwned),
    Challenge(MintLinkChallengeOwned),
    Auth(MintLinkAuthOwned),
}

impl MintQuoteMessage {
    pub fn message_type(&self) -> u8 {
        match self {
            Self::Request(_) => MESSAGE_TYPE_MINT_QUOTE_REQUEST,
            Self::Response(_) => MESSAGE_TYPE_MINT_QUOTE_RESPONSE,
            Self::Error(_) => MESSAGE_TYPE_MINT_QUOTE_ERROR,
            Self::Announcement(_) => MESSAGE_TYPE_QUOTE_ANNOUNCEMENT,
            Self::Challenge(_) => MESSAGE_TYPE_MINT_LINK_CHALLENGE,
            Self::Auth(_) => MESSAGE_TYPE_MINT_LINK_AUTH,
        }
    }

    /// Announcements travel on a channel (the frame's channel bit is set).
    pub fn is_channel_message(&self) -> bool {
        matches!(self, Self::Announcement(_))
    }

    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let encoded = match self.clone() {
            Self::Request(m) => binary_sv2::to_bytes(m),
            Self::Response(m) => binary_sv2::to_bytes(m),
            Self::Error(m) => binary_sv2::to_bytes(m),
            Self::Announcement(m) => binary_sv2::to_bytes(m),
            Self::Challenge(m) => binary_sv2::to_bytes(m),
            Self::Auth(m) => binary_sv2::to_bytes(m),
        };
        // Every field is bounded by its type, so encoding an owned message cannot fail.
        encoded.expect("owned extension messages always encode")
    }

    /// Decodes a payload strictly: known type, size within limits, no trailing bytes, locking
    /// keys valid, ids non-empty.
    pub fn decode(message_type: u8, payload: &[u8]) -> Result<Self, ExtError> {
        if payload.len() > MAX_MESSAGE_SIZE {
            return Err(ExtError::Oversized(payload.len()));
        }
        let mut buf = payload.to_vec();
        let (message, size) = match message_type {
            MESSAGE_TYPE_MINT_QUOTE_REQUEST => {
                let m: MintQuoteRequest = decode(&mut buf)?;
                let size = m.get_size();
                LockingKey::from_slice(m.locking_key.as_bytes())?;
                if m.unit.as_bytes().is_empty() {
                    return Err(ExtError::EmptyField("unit"));
                }
                (Self::Request(m.into_owned()), size)
            }
            MESSAGE_TYPE_MINT_QUOTE_RESPONSE => {
                let m: MintQuoteResponse = decode(&mut buf)?;
                if m.quote_id.as_bytes().is_empty() {
                    return Err(ExtError::EmptyField("quote_id"));
                }
                let size = m.get_size();
                (Self::Response(m.into_owned()), size)
            }
            MESSAGE_TYPE_MINT_QUOTE_ERROR => {
                let m: MintQuoteError = decode(&mut buf)?;
                if m.error_code.as_bytes().is_empty() {
                    return Err(ExtError::EmptyField("error_code"));
                }
                let size = m.get_size();
                (Self::Error(m.into_owned()), size)
            }
            MESSAGE_TYPE_QUOTE_ANNOUNCEMENT => {
                let m: QuoteAnnouncement = decode(&mut buf)?;
                LockingKey::from_slice(m.locking_key.as_bytes())?;
                if m.quote_id.as_bytes().is_empty() {
                    return Err(ExtError::EmptyField("quote_id"));
                }
                let size = m.get_size();
                (Self::Announcement(m.into_owned()), size)
            }
            MESSAGE_TYPE_MINT_LINK_CHALLENGE => {
                let m: MintLinkChallenge = decode(&mut buf)?;
                let size = m.get_size();
                (Self::Challenge(m.into_owned()), size)
            }
            MESSAGE_TYPE_MINT_LINK_AUTH => {
                let m: MintLinkAuth = decode(&mut buf)?;
                let size = m.get_size();
                (Self::Auth(m.into_owned()), size)
            }
            other => return Err(ExtError::UnknownMessageType(other)),
        };
        if size != payload.len() {
            return Err(ExtError::TrailingBytes(payload.len().saturating_sub(size)));
        }
        Ok(message)
    }
}

fn decode<'a, T: Deserialize<'a>>(buf: &'a mut [u8]) -> Result<T, ExtError> {
    binary_sv2::from_bytes(buf).map_err(|e| ExtError::Malformed(format!("{e:?}")))
}

/// A quote announced to a miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedQuote {
    pub channel_id: u32,
    pub quote_id: String,
    pub amount: u64,
    pub locking_key: LockingKey,
}

/// Decodes a frame a miner received on the extension: only announcements travel that way.
pub fn decode_announcement(message_type: u8, payload: &[u8]) -> Result<AnnouncedQuote, ExtError> {
    match MintQuoteMessage::decode(message_type, payload)? {
        MintQuoteMessage::Announcement(a) => Ok(AnnouncedQuote {
            channel_id: a.channel_id,
            quote_id: String::from_utf8_lossy(a.quote_id.as_bytes()).into_owned(),
            amount: a.amount,
            locking_key: LockingKey::from_slice(a.locking_key.as_bytes())?,
        }),
        other => Err(ExtError::NotForMiners(other.message_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use binary_sv2::{B0255Owned, Str0255Owned, U256Owned};

    const KEY_HEX: &str = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";

    fn key() -> LockingKey {
        LockingKey::from_hex(KEY_HEX).unwrap()
    }

    fn s(v: &str) -> Str0255Owned {
        Str0255Owned::new(v.as_bytes().to_vec()).unwrap()
    }

    fn request() -> MintQuoteMessage {
        MintQuoteMessage::Request(MintQuoteRequestOwned {
            request_id: U256Owned::from([7u8; 32]),
            locking_key: B0255Owned::new(key().as_bytes().to_vec()).unwrap(),
            unit: s("hash"),
            amount: 1 << 40,
            share_count: 12_345,
            share_commitment: U256Owned::from([9u8; 32]),
            epoch: 3,
        })
    }

    fn all() -> Vec<MintQuoteMessage> {
        vec![
            request(),
            MintQuoteMessage::Response(MintQuoteResponseOwned {
                request_id: U256Owned::from([7u8; 32]),
                quote_id: s("5b0c8f8e-3e5e-4a43-9d6a-2f1f4b0b7d11"),
                amount: 1 << 40,
            }),
            MintQuoteMessage::Error(MintQuoteErrorOwned {
                request_id: U256Owned::from([7u8; 32]),
                error_code: s(crate::error_code::AMOUNT_OUT_OF_RANGE),
                message: s(&"x".repeat(255)),
            }),
            MintQuoteMessage::Announcement(QuoteAnnouncementOwned {
                channel_id: u32::MAX,
                quote_id: s("q"),
                amount: u64::MAX,
                locking_key: B0255Owned::new(key().as_bytes().to_vec()).unwrap(),
            }),
            MintQuoteMessage::Challenge(MintLinkChallengeOwned {
                nonce: U256Owned::from([3u8; 32]),
            }),
            MintQuoteMessage::Auth(MintLinkAuthOwned {
                mint_public_key: U256Owned::from([4u8; 32]),
                signature: binary_sv2::SignatureOwned::from([5u8; 64]),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all() {
            let bytes = m.encode();
            let back = MintQuoteMessage::decode(m.message_type(), &bytes).unwrap();
            assert_eq!(back.message_type(), m.message_type());
            assert_eq!(back.encode(), bytes, "{m:?}");
        }
        let MintQuoteMessage::Request(r) =
            MintQuoteMessage::decode(MESSAGE_TYPE_MINT_QUOTE_REQUEST, &request().encode()).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.amount, 1 << 40);
        assert_eq!(r.share_count, 12_345);
        assert_eq!(r.locking_key.as_bytes(), key().as_bytes());
        assert!(MintQuoteMessage::Announcement(QuoteAnnouncementOwned {
            channel_id: 1,
            quote_id: s("q"),
            amount: 1,
            locking_key: B0255Owned::new(key().as_bytes().to_vec()).unwrap(),
        })
        .is_channel_message());
        assert!(!request().is_channel_message());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for m in all() {
            let bytes = m.encode();
            for cut in 0..bytes.len() {
                assert!(
                    MintQuoteMessage::decode(m.message_type(), &bytes[..cut]).is_err(),
                    "{:?} cut at {cut}",
                    m.message_type()
                );
            }
        }
    }

    #[test]
    fn trailing_and_oversized_input_is_refused() {
        let mut bytes = request().encode();
        bytes.push(0);
        assert_eq!(
            MintQuoteMessage::decode(MESSAGE_TYPE_MINT_QUOTE_REQUEST, &bytes).unwrap_err(),
            ExtError::TrailingBytes(1)
        );
        let huge = vec![0u8; MAX_MESSAGE_SIZE + 1];
        assert_eq!(
            MintQuoteMessage::decode(MESSAGE_TYPE_MINT_QUOTE_REQUEST, &huge).unwrap_err(),
            ExtError::Oversized(MAX_MESSAGE_SIZE + 1)
        );
    }

    #[test]
    fn wrong_type_is_an_error() {
        assert_eq!(
            MintQuoteMessage::decode(0x7f, &request().encode()).unwrap_err(),
            ExtError::UnknownMessageType(0x7f)
        );
        // A request's bytes read as another message never produce a valid message by chance
        // with the same size.
        let bytes = request().encode();
        for t in [
            MESSAGE_TYPE_MINT_QUOTE_RESPONSE,
            MESSAGE_TYPE_MINT_QUOTE_ERROR,
            MESSAGE_TYPE_QUOTE_ANNOUNCEMENT,
            MESSAGE_TYPE_MINT_LINK_CHALLENGE,
            MESSAGE_TYPE_MINT_LINK_AUTH,
        ] {
            assert!(MintQuoteMessage::decode(t, &bytes).is_err(), "type {t:#x}");
        }
    }

    #[test]
    fn bad_key_length_and_bad_point_are_refused() {
        for len in [0usize, 32, 34, 65] {
            let m = MintQuoteMessage::Request(MintQuoteRequestOwned {
                request_id: U256Owned::from([1u8; 32]),
                locking_key: B0255Owned::new(vec![2u8; len]).unwrap(),
                unit: s("hash"),
                amount: 1,
                share_count: 1,
                share_commitment: U256Owned::from([0u8; 32]),
                epoch: 0,
            });
            assert_eq!(
                MintQuoteMessage::decode(MESSAGE_TYPE_MINT_QUOTE_REQUEST, &m.encode()).unwrap_err(),
                ExtError::BadKeyLength(len)
            );
        }
        // 33 bytes, right prefix, not on the curve.
        let mut not_a_point = [0xffu8; 33];
        not_a_point[0] = 0x02;
        assert_eq!(
            LockingKey::from_slice(&not_a_point).unwrap_err(),
            ExtError::InvalidKey
        );
        assert!(LockingKey::from_hex("zz").is_err());
        assert!(LockingKey::from_hex(&KEY_HEX.replace('0', "g")).is_err());
    }

    #[test]
    fn empty_identifiers_are_refused() {
        let m = MintQuoteMessage::Response(MintQuoteResponseOwned {
            request_id: U256Owned::from([1u8; 32]),
            quote_id: s(""),
            amount: 1,
        });
        assert_eq!(
            MintQuoteMessage::decode(MESSAGE_TYPE_MINT_QUOTE_RESPONSE, &m.encode()).unwrap_err(),
            ExtError::EmptyField("quote_id")
        );
    }

    #[test]
    fn locking_key_tlv_round_trips_and_is_validated() {
        let tlv = crate::locking_key_tlv(&key());
        assert_eq!(
            crate::locking_key_from_tlvs(std::slice::from_ref(&tlv)).unwrap(),
            Some(key())
        );
        assert_eq!(crate::locking_key_from_tlvs(&[]).unwrap(), None);
        let other_extension = parsers_sv2::Tlv::new(0x0002, crate::TLV_FIELD_LOCKING_KEY, vec![1]);
        assert_eq!(
            crate::locking_key_from_tlvs(&[other_extension]).unwrap(),
            None
        );
        let short = parsers_sv2::Tlv::new(
            crate::EXTENSION_TYPE,
            crate::TLV_FIELD_LOCKING_KEY,
            vec![2; 20],
        );
        assert_eq!(
            crate::locking_key_from_tlvs(&[short]).unwrap_err(),
            ExtError::BadKeyLength(20)
        );
        // Encoded and decoded through parsers_sv2's TLV codec.
        let bytes = tlv.encode().unwrap();
        let decoded = parsers_sv2::Tlv::decode(&bytes).unwrap();
        assert_eq!(
            crate::locking_key_from_tlvs(&[decoded]).unwrap(),
            Some(key())
        );
    }
}
