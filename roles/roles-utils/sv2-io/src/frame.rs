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

/// Extension types parsers_sv2 parses: the base protocols (0) and extension negotiation (1).
/// Frames of any other extension are handed over raw ([`extension_frame`]).
fn parsed_by_sri(extension_type: u16) -> bool {
    extension_type == 0 || extension_type == 0x0001
}

/// A frame of an extension parsers_sv2 does not know (e.g. the mint-quote extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionFrame {
    pub extension_type: u16,
    pub message_type: u8,
    pub channel_msg: bool,
    pub payload: Vec<u8>,
}

/// `Some` when `frame` belongs to an extension the SRI parsers cannot decode: such frames must
/// be dispatched before [`decode_frame`].
pub fn extension_frame(frame: &mut SerializedFrame) -> Option<ExtensionFrame> {
    let header = frame.header();
    let extension_type = header.ext_type_without_channel_msg();
    if parsed_by_sri(extension_type) {
        return None;
    }
    Some(ExtensionFrame {
        extension_type,
        message_type: header.msg_type(),
        channel_msg: header.channel_msg(),
        payload: frame.payload().to_vec(),
    })
}

/// What a frame received from a peer holds, once [`decode_received`] has checked it.
#[derive(Debug)]
pub enum Received {
    /// A message the SRI parsers decode, with the TLVs of the negotiated extensions.
    Message {
        header: Header,
        message: AnyMessageOwned,
        tlvs: Option<Vec<Tlv>>,
    },
    /// A frame of an extension the SRI parsers do not know: the caller dispatches or refuses it.
    Extension(ExtensionFrame),
}

/// Why a received frame was not decoded.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("frame payload of {size} bytes exceeds {max}")]
    TooLarge { size: usize, max: usize },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The path of a frame read from a peer (a Noise-decrypted frame): a payload over `max_payload`
/// is refused, a frame of an extension the SRI parsers do not know is handed over raw
/// ([`extension_frame`]), and the rest is decoded ([`decode_frame`], keeping the TLVs of the
/// extensions in `negotiated`). Never panics, whatever the bytes (fuzzed:
/// `roles/roles-utils/sv2-io/fuzz`).
pub fn decode_received(
    frame: &mut SerializedFrame,
    max_payload: usize,
    negotiated: &[u16],
) -> Result<Received, ReceiveError> {
    let size = frame.header().payload_length();
    if size > max_payload {
        return Err(ReceiveError::TooLarge {
            size,
            max: max_payload,
        });
    }
    if let Some(ext) = extension_frame(frame) {
        return Ok(Received::Extension(ext));
    }
    let (header, message, tlvs) = decode_frame(frame, negotiated)?;
    Ok(Received::Message {
        header,
        message,
        tlvs,
    })
}

/// The one builder of frames from raw parts: header fields and payload as given.
pub fn encode_raw(
    extension_type: u16,
    channel_msg: bool,
    message_type: u8,
    payload: &[u8],
) -> Result<SerializedFrame, FrameError> {
    let err = |reason: String| FrameError::Decode {
        msg_type: message_type,
        ext_type: extension_type,
        reason,
    };
    if payload.len() >= 1 << 24 {
        return Err(err(format!(
            "payload of {} bytes does not fit a frame",
            payload.len()
        )));
    }
    let ext = extension_type | if channel_msg { 0x8000 } else { 0 };
    let mut bytes = Vec::with_capacity(6 + payload.len());
    bytes.extend_from_slice(&ext.to_le_bytes());
    bytes.push(message_type);
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    bytes.extend_from_slice(payload);
    // `.into()`: the slice type differs when `with_buffer_pool` is unified into the build.
    #[allow(clippy::useless_conversion)]
    SerializedFrame::from_bytes(bytes.into()).map_err(|e| err(format!("{e:?}")))
}

/// Frames an SV2 message with TLV fields appended to its payload.
pub fn encode_with_tlvs(
    message: impl Sv2Message,
    tlvs: &[Tlv],
) -> Result<SerializedFrame, FrameError> {
    use parsers_sv2::IsSv2Message;
    let any = message.into_any();
    let (ext, channel_msg, msg_type) =
        (any.extension_type(), any.channel_bit(), any.message_type());
    let mut payload = binary_sv2::to_bytes(any).map_err(|e| FrameError::Decode {
        msg_type,
        ext_type: ext,
        reason: format!("{e:?}"),
    })?;
    for tlv in tlvs {
        payload.extend(tlv.encode().map_err(|e| FrameError::Decode {
            msg_type,
            ext_type: ext,
            reason: format!("TLV: {e:?}"),
        })?);
    }
    encode_raw(ext, channel_msg, msg_type, &payload)
}

/// Writes an already built frame.
pub async fn send_frame(
    writer: &mut stratum_apps::network_helpers::noise_stream::NoiseTcpWriteHalf,
    frame: SerializedFrame,
) -> Result<(), SendError> {
    writer
        .write_frame(frame)
        .await
        .map_err(|_| SendError::Closed)
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[test]
    fn raw_frames_round_trip_through_extension_dispatch() {
        let mut f = encode_raw(0x4861, true, 4, &[1, 2, 3]).unwrap();
        let ext = extension_frame(&mut f).unwrap();
        assert_eq!(
            ext,
            ExtensionFrame {
                extension_type: 0x4861,
                message_type: 4,
                channel_msg: true,
                payload: vec![1, 2, 3]
            }
        );
        // Base-protocol frames go to the SRI parsers.
        let mut f = encode_raw(0, false, 0x1a, &[0; 24]).unwrap();
        assert!(extension_frame(&mut f).is_none());
    }

    #[test]
    fn tlvs_are_appended_and_come_back_when_negotiated() {
        let open = MiningOwned::OpenStandardMiningChannel(mining_sv2_open());
        let tlv = Tlv::new(0x4861, 1, vec![2; 33]);
        let mut f = encode_with_tlvs(open.clone(), std::slice::from_ref(&tlv)).unwrap();
        let (_, _, tlvs) = decode_frame(&mut f, &[0x4861]).unwrap();
        assert_eq!(tlvs.unwrap(), vec![tlv.clone()]);
        // Not negotiated: the message still parses, the TLV is dropped.
        let mut f = encode_with_tlvs(open, &[tlv]).unwrap();
        let (_, m, tlvs) = decode_frame(&mut f, &[]).unwrap();
        assert!(matches!(
            m,
            AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannel(_))
        ));
        assert!(tlvs.is_none());
    }

    #[test]
    fn received_frames_are_size_checked_split_and_decoded() {
        let open = MiningOwned::OpenStandardMiningChannel(mining_sv2_open());
        let tlv = Tlv::new(0x4861, 1, vec![2; 33]);
        let mut f = encode_with_tlvs(open.clone(), std::slice::from_ref(&tlv)).unwrap();
        match decode_received(&mut f, 1 << 17, &[0x4861]).unwrap() {
            Received::Message { message, tlvs, .. } => {
                assert!(matches!(
                    message,
                    AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannel(_))
                ));
                assert_eq!(tlvs.unwrap(), vec![tlv]);
            }
            other => panic!("{other:?}"),
        }
        // Over the limit: refused before anything is parsed.
        let mut f = encode_raw(0, false, 0x10, &[0; 100]).unwrap();
        assert!(matches!(
            decode_received(&mut f, 99, &[]),
            Err(ReceiveError::TooLarge { size: 100, max: 99 })
        ));
        // An extension the SRI parsers do not know: handed over raw.
        let mut f = encode_raw(0x4861, false, 4, &[1, 2]).unwrap();
        assert!(matches!(
            decode_received(&mut f, 1 << 17, &[0x4861]),
            Ok(Received::Extension(ExtensionFrame {
                extension_type: 0x4861,
                ..
            }))
        ));
        // A base-protocol frame that does not parse: a frame error.
        let mut f = encode_raw(0, false, 0x10, &[1, 2, 3]).unwrap();
        assert!(matches!(
            decode_received(&mut f, 1 << 17, &[]),
            Err(ReceiveError::Frame(FrameError::Decode {
                msg_type: 0x10,
                ..
            }))
        ));
    }

    fn mining_sv2_open() -> mining_sv2::OpenStandardMiningChannelOwned {
        mining_sv2::OpenStandardMiningChannelOwned {
            request_id: 1,
            user_identity: str0255("u"),
            nominal_hash_rate: 1.0,
            max_target: binary_sv2::U256Owned::from([0xffu8; 32]),
        }
    }
}
