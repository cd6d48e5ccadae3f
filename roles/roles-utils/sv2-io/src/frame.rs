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

/// A protocol string field from text, cut to the 255 bytes the field holds (at a character
/// boundary).
pub fn str0255(v: &str) -> binary_sv2::Str0255Owned {
    let mut end = v.len().min(255);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    binary_sv2::Str0255Owned::new(v.as_bytes()[..end].to_vec()).expect("at most 255 bytes")
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Encode(#[from] FrameError),
    #[error("connection closed")]
    Closed,
}

/// Frames and writes one message.
pub async fn send(
    writer: &mut stratum_apps::network_helpers::noise_stream::NoiseTcpWriteHalf,
    message: impl Sv2Message,
) -> Result<(), SendError> {
    writer
        .write_frame(encode(message)?)
        .await
        .map_err(|_| SendError::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str0255_cuts_long_text_at_a_char_boundary() {
        assert_eq!(str0255("abc").as_bytes(), b"abc");
        let long = "é".repeat(200); // 400 bytes
        let cut = str0255(&long);
        assert_eq!(cut.as_bytes().len(), 254);
        assert!(std::str::from_utf8(cut.as_bytes()).is_ok());
    }
}
