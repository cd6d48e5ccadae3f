#![no_main]
//! The pool's path for a frame from a miner (`Connection::on_frame` in
//! roles/pool/src/downstream/mod.rs), on the frame the Noise decoder hands over once it has
//! decrypted one: header (extension type, message type, payload length) and exactly that
//! payload. Input: extension type (2 bytes, little endian, channel bit included), message type
//! (1 byte), then the payload.
//!
//! `decode_received` with the pool's limit and both sets of extensions a miner can have
//! negotiated (none, mint-quote) must never panic, and:
//! - with or without negotiation, the same frame is refused or decoded alike, to the same
//!   message (TLVs are only returned when negotiated);
//! - a decoded message, encoded again with its TLVs, decodes to the same message and TLVs;
//! - a payload one byte over the limit is refused before anything is parsed.

use codec_sv2::SerializedFrame;
use hashpool_sv2_io::{decode_received, encode_with_tlvs, ReceiveError, Received};
use libfuzzer_sys::fuzz_target;

/// `MAX_MINER_FRAME_PAYLOAD` in roles/pool/src/downstream/mod.rs.
const MAX_MINER_FRAME_PAYLOAD: usize = 1 << 17;
/// `ext_mint_quote::EXTENSION_TYPE`.
const MINT_QUOTE: u16 = 0x4861;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = frame_bytes(data) else {
        return;
    };
    let plain = decode_received(&mut frame(&bytes), MAX_MINER_FRAME_PAYLOAD, &[]);
    let with_ext = decode_received(&mut frame(&bytes), MAX_MINER_FRAME_PAYLOAD, &[MINT_QUOTE]);
    match (&plain, &with_ext) {
        (
            Ok(Received::Message {
                message: a,
                tlvs: none,
                ..
            }),
            Ok(Received::Message {
                message: b,
                tlvs,
                header,
            }),
        ) => {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            assert!(
                none.is_none(),
                "TLVs returned without negotiation: {none:?}"
            );
            assert_eq!(header.msg_type(), data[2]);
            // Encoded again (as a peer would send it), the message and its TLVs come back.
            let tlvs = tlvs.clone().unwrap_or_default();
            let mut again = encode_with_tlvs(b.clone(), &tlvs)
                .unwrap_or_else(|e| panic!("{b:?} decoded but does not encode: {e}"));
            match decode_received(&mut again, MAX_MINER_FRAME_PAYLOAD, &[MINT_QUOTE]) {
                Ok(Received::Message {
                    message: c,
                    tlvs: t,
                    ..
                }) => {
                    assert_eq!(format!("{b:?}"), format!("{c:?}"));
                    assert_eq!(t.unwrap_or_default(), tlvs);
                }
                other => panic!("{b:?} encoded again reads back as {other:?}"),
            }
        }
        (Ok(Received::Extension(a)), Ok(Received::Extension(b))) => {
            assert_eq!(a, b);
            assert_eq!(a.message_type, data[2]);
            assert_eq!(a.payload, data[3..]);
        }
        (Err(ReceiveError::Frame(_)), Err(ReceiveError::Frame(_))) => {}
        _ => panic!("negotiation changed the outcome: {plain:?} / {with_ext:?}"),
    }
    // The size check comes first.
    if data.len() > 3 {
        let limit = data.len() - 4;
        assert!(matches!(
            decode_received(&mut frame(&bytes), limit, &[MINT_QUOTE]),
            Err(ReceiveError::TooLarge { .. })
        ));
    }
});

/// Header (with the payload's length) and payload, as the Noise decoder delivers them.
fn frame_bytes(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 3 || data.len() - 3 >= 1 << 24 {
        return None;
    }
    let (head, payload) = data.split_at(3);
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    bytes.extend_from_slice(payload);
    Some(bytes)
}

fn frame(bytes: &[u8]) -> SerializedFrame {
    #[allow(clippy::useless_conversion)]
    SerializedFrame::from_bytes(bytes.to_vec().into()).expect("header and payload agree")
}
