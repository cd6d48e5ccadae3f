use std::{fmt::Display, net::SocketAddr};

use codec_sv2::SerializedFrame;
use parsers_sv2::AnyMessageOwned;
use stratum_apps::network_helpers::noise_stream::{NoiseTcpStream, NoiseTcpWriteHalf};

use crate::{
    decode_frame, encode_raw, extension_frame, spawn_reader, ConnectionError, ExtensionFrame,
    IncomingFrames, Sv2Message,
};

/// A message of an extension the SRI parsers do not know, framed by hand (the mint-quote
/// extension, the stats protocol).
pub trait ExtensionMessage: Sized {
    const EXTENSION_TYPE: u16;
    type Error: Display;
    fn message_type(&self) -> u8;
    /// Whether the frame's channel bit is set.
    fn is_channel_message(&self) -> bool {
        false
    }
    fn encode_payload(&self) -> Result<Vec<u8>, Self::Error>;
    fn decode(message_type: u8, payload: &[u8]) -> Result<Self, Self::Error>;
}

/// Frames an extension message.
pub fn encode_extension<M: ExtensionMessage>(m: &M) -> Result<SerializedFrame, ConnectionError> {
    let payload = m.encode_payload().map_err(|e| {
        ConnectionError::Protocol(format!(
            "message {:#04x} of extension {:#06x} does not encode: {e}",
            m.message_type(),
            M::EXTENSION_TYPE
        ))
    })?;
    Ok(encode_raw(
        M::EXTENSION_TYPE,
        m.is_channel_message(),
        m.message_type(),
        &payload,
    )?)
}

/// `None` when `frame` belongs to another extension; else the decoded message.
pub fn decode_extension<M: ExtensionMessage>(
    frame: &ExtensionFrame,
) -> Option<Result<M, M::Error>> {
    (frame.extension_type == M::EXTENSION_TYPE)
        .then(|| M::decode(frame.message_type, &frame.payload))
}

/// One Noise-encrypted SV2 connection: frames are read on a task of their own (reading is not
/// cancellation-safe), so `recv_frame` may sit in a `select!` arm.
pub struct Connection {
    frames: IncomingFrames,
    writer: NoiseTcpWriteHalf,
    peer: SocketAddr,
}

impl Connection {
    /// Wraps a connection whose Noise handshake is done; `capacity` frames are read ahead.
    pub fn new(noise: NoiseTcpStream, peer: SocketAddr, capacity: usize) -> Self {
        let (reader, writer) = noise.into_split();
        Self {
            frames: spawn_reader(reader, capacity),
            writer,
            peer,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The next frame; `Closed` once the peer is gone or the stream broke. Cancellation-safe.
    pub async fn recv_frame(&mut self) -> Result<SerializedFrame, ConnectionError> {
        match self.frames.recv().await {
            Some(Ok(frame)) => Ok(frame),
            _ => Err(ConnectionError::Closed),
        }
    }

    /// A frame already read, if any (to handle a burst of frames together).
    pub fn try_recv_frame(&mut self) -> Option<Result<SerializedFrame, ConnectionError>> {
        match self.frames.try_recv() {
            Ok(Ok(frame)) => Some(Ok(frame)),
            Ok(Err(_)) | Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                Some(Err(ConnectionError::Closed))
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
        }
    }

    /// The next message of the protocols the SRI parsers decode (TLVs dropped); a frame of
    /// another extension is a protocol violation.
    pub async fn recv_message(&mut self) -> Result<AnyMessageOwned, ConnectionError> {
        let mut frame = self.recv_frame().await?;
        if let Some(ext) = extension_frame(&mut frame) {
            return Err(ConnectionError::Protocol(format!(
                "unexpected message {:#04x} of extension {:#06x}",
                ext.message_type, ext.extension_type
            )));
        }
        Ok(decode_frame(&mut frame, &[])?.1)
    }

    /// The next message, which must belong to extension `M`.
    pub async fn recv_extension<M: ExtensionMessage>(&mut self) -> Result<M, ConnectionError> {
        let mut frame = self.recv_frame().await?;
        match extension_frame(&mut frame)
            .as_ref()
            .map(decode_extension::<M>)
        {
            Some(Some(Ok(m))) => Ok(m),
            Some(Some(Err(e))) => Err(ConnectionError::Protocol(format!(
                "undecodable message of extension {:#06x}: {e}",
                M::EXTENSION_TYPE
            ))),
            _ => Err(ConnectionError::Protocol(format!(
                "expected a message of extension {:#06x}",
                M::EXTENSION_TYPE
            ))),
        }
    }

    pub async fn send(&mut self, message: impl Sv2Message) -> Result<(), ConnectionError> {
        Ok(crate::send(&mut self.writer, message).await?)
    }

    pub async fn send_extension<M: ExtensionMessage>(
        &mut self,
        message: &M,
    ) -> Result<(), ConnectionError> {
        self.send_frame(encode_extension(message)?).await
    }

    pub async fn send_frame(&mut self, frame: SerializedFrame) -> Result<(), ConnectionError> {
        Ok(crate::send_frame(&mut self.writer, frame).await?)
    }

    /// The writing half, for frames built elsewhere (e.g. with TLVs) or written under a
    /// time-out.
    pub fn writer(&mut self) -> &mut NoiseTcpWriteHalf {
        &mut self.writer
    }

    /// The two halves, for a role that reads and writes from different tasks.
    pub fn into_parts(self) -> (IncomingFrames, NoiseTcpWriteHalf) {
        (self.frames, self.writer)
    }
}
