//! The mint-quote extension's messages travel over a [`crate::Connection`] as any extension's.

use ext_mint_quote::{ExtError, MintQuoteMessage};

use crate::ExtensionMessage;

impl ExtensionMessage for MintQuoteMessage {
    const EXTENSION_TYPE: u16 = ext_mint_quote::EXTENSION_TYPE;
    type Error = ExtError;

    fn message_type(&self) -> u8 {
        MintQuoteMessage::message_type(self)
    }

    fn is_channel_message(&self) -> bool {
        MintQuoteMessage::is_channel_message(self)
    }

    fn encode_payload(&self) -> Result<Vec<u8>, ExtError> {
        Ok(MintQuoteMessage::encode(self))
    }

    fn decode(message_type: u8, payload: &[u8]) -> Result<Self, ExtError> {
        MintQuoteMessage::decode(message_type, payload)
    }
}
