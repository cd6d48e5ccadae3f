use codec_sv2::{MessageFrame, SerializedFrame};
use framing_sv2::header::Header;
use parsers_sv2::{
    parse_message_frame_with_tlvs, AnyMessageOwned, CommonMessagesOwned, ExtensionsOwned,
    JobDeclarationOwned, MiningOwned, TemplateDistributionOwned, Tlv,
};

/// A frame ready to be written to a Noise connection.
pub type OutFrame = MessageFrame<AnyMessageOwned>;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message does not fit in a frame: {0:?}")]
    Encode(parsers_sv2::ParserError),
    #[error("cannot decode message type {msg_type:#04x} (extension {ext_type:#06x}): {reason}")]
    Decode {
        msg_type: u8,
        ext_type: u16,
        reason: String,
    },
}

/// A message of any SV2 (sub)protocol. parsers_sv2 only converts common messages into
/// [`AnyMessageOwned`]; this covers every family.
pub trait Sv2Message {
    fn into_any(self) -> AnyMessageOwned;
}

impl Sv2Message for AnyMessageOwned {
    fn into_any(self) -> AnyMessageOwned {
        self
    }
}
impl Sv2Message for CommonMessagesOwned {
    fn into_any(self) -> AnyMessageOwned {
        AnyMessageOwned::Common(self)
    }
}
impl Sv2Message for MiningOwned {
    fn into_any(self) -> AnyMessageOwned {
        AnyMessageOwned::Mining(self)
    }
}
impl Sv2Message for TemplateDistributionOwned {
    fn into_any(self) -> AnyMessageOwned {
        AnyMessageOwned::TemplateDistribution(self)
    }
}
impl Sv2Message for JobDeclarationOwned {
    fn into_any(self) -> AnyMessageOwned {
        AnyMessageOwned::JobDeclaration(self)
    }
}
impl Sv2Message for ExtensionsOwned {
    fn into_any(self) -> AnyMessageOwned {
        AnyMessageOwned::Extensions(self)
    }
}

/// Frames `message` with the header its type calls for.
pub fn encode(message: impl Sv2Message) -> Result<OutFrame, FrameError> {
    MessageFrame::try_from(message.into_any()).map_err(FrameError::Encode)
}

/// Decodes a received frame. TLVs of extensions in `negotiated` are returned; others are
/// dropped (a peer that did not negotiate an extension ignores its fields).
pub fn decode_frame(
    frame: &mut SerializedFrame,
    negotiated: &[u16],
) -> Result<(Header, AnyMessageOwned, Option<Vec<Tlv>>), FrameError> {
    let header = frame.header();
    let err = |reason: String| FrameError::Decode {
        msg_type: header.msg_type(),
        ext_type: header.ext_type_without_channel_msg(),
        reason,
    };
    let (message, tlvs) = parse_message_frame_with_tlvs(header, frame.payload(), negotiated)
        .map_err(|e| err(format!("{e:?}")))?;
    Ok((header, message.into_owned(), tlvs))
}

/// A protocol string field as text (invalid UTF-8 is replaced, never an error: these are names
/// and codes for logs and lookups).
pub fn text(s: &binary_sv2::Str0255Owned) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}
