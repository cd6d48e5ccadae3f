#![no_main]
//! Every decoder of the extension on arbitrary bytes: errors are fine, panics are bugs, and
//! whatever decodes must re-encode to exactly the bytes it came from.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((message_type, payload)) = data.split_first() {
        if let Ok(message) = ext_mint_quote::MintQuoteMessage::decode(*message_type, payload) {
            assert_eq!(message.encode(), payload);
        }
    }
    if let Ok(tlv) = parsers_sv2::Tlv::decode(data) {
        let _ = ext_mint_quote::locking_key_from_tlvs(&[tlv]);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ext_mint_quote::LockingKey::from_hex(text);
    }
});
