//! The Noise transport of a server holding many connections (the pool's miners), read and
//! written by the connection's own task. Frames are decoded from a buffer that one read per
//! burst fills (the stratum-apps read half makes two reads per frame: header, then payload),
//! and a burst of replies leaves in one write. Both buffers are let go between bursts, so an
//! idle connection holds neither.

use std::time::Duration;

use codec_sv2::{
    Decoded, Decrypted, EncodableFrame, Handshake, NoiseDecoder, NoiseEncoder, SerializedFrame,
    TransportDecryptState, TransportEncryptState,
};
use noise_sv2::{Responder, ELLSWIFT_ENCODING_SIZE};
use stratum_apps::network_helpers::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
};

use crate::{ConnectionError, ServerIdentity};

/// Room made for each read from the socket.
const READ_CHUNK: usize = 8 * 1024;
/// A buffer no larger than this is kept between bursts (and reused).
const KEEP_BUFFER: usize = 512;

/// The responder's Noise handshake on an accepted connection, within `timeout`; the halves
/// of its transport. Frames whose payload is longer than `max_payload` are refused while they
/// are read, before the decoder has buffered more than that.
pub async fn accept_transport(
    stream: TcpStream,
    identity: &ServerIdentity,
    timeout: Duration,
    max_payload: usize,
) -> Result<(FrameReader, FrameWriter), ConnectionError> {
    tokio::time::timeout(timeout, handshake(stream, identity, max_payload))
        .await
        .map_err(|_| ConnectionError::Timeout("in the Noise handshake"))?
        .map_err(ConnectionError::Noise)
}

/// Noise NX as the responder (the same steps as stratum-apps' `NoiseTcpStream::accept`).
async fn handshake(
    stream: TcpStream,
    identity: &ServerIdentity,
    max_payload: usize,
) -> Result<(FrameReader, FrameWriter), Error> {
    let responder = Responder::from_authority_kp(
        &identity.public_key.into_bytes(),
        &identity.secret_key.into_bytes(),
        Duration::from_secs(identity.cert_validity_secs),
    )
    .map_err(|_| Error::InvalidKey)?;
    let (mut socket_in, mut socket_out) = stream.into_split();
    let mut decoder = NoiseDecoder::new();
    let mut encoder = NoiseEncoder::new();
    let first = loop {
        let mut bytes = vec![0u8; decoder.writable_len()];
        socket_in
            .read_exact(&mut bytes)
            .await
            .map_err(|_| Error::SocketClosed)?;
        decoder.writable().copy_from_slice(&bytes);
        match decoder.next_handshake_frame::<Responder>()? {
            Decoded::Frame(frame) => break frame,
            Decoded::Incomplete(_) => continue,
        }
    };
    let payload: [u8; ELLSWIFT_ENCODING_SIZE] = first
        .payload()
        .try_into()
        .map_err(|_| Error::HandshakeRemoteInvalidMessage)?;
    let (second, transport) = Handshake::responder(responder).step_1(payload)?;
    socket_out
        .write_all(encoder.encode_handshake(second).as_ref())
        .await
        .map_err(|_| Error::SocketClosed)?;
    let (encrypt, decrypt) = transport.split();
    Ok((
        FrameReader {
            socket: socket_in,
            decoder,
            state: Some(decrypt),
            received: Vec::new(),
            start: 0,
            frame_bytes: 0,
            max_frame_bytes: encrypted_len(max_payload),
        },
        FrameWriter {
            socket: socket_out,
            encoder,
            state: encrypt,
            queued: Vec::new(),
        },
    ))
}

/// The reading half: frames decoded from what one read brought in.
pub struct FrameReader {
    socket: OwnedReadHalf,
    decoder: NoiseDecoder,
    /// Taken while a frame is decrypted; gone after a decryption error (the stream is over).
    state: Option<TransportDecryptState>,
    /// Bytes received; those before `start` were handed to the decoder.
    received: Vec<u8>,
    start: usize,
    /// Encrypted bytes of the frame being read handed to the decoder so far, and the most a
    /// frame may take: a peer declaring a 16 MiB payload is refused once it passes the limit,
    /// rather than buffered whole (the payload's length is only known to the decoder).
    frame_bytes: usize,
    max_frame_bytes: usize,
}

/// Encrypted length of a frame of `payload` bytes: the sealed header, then the payload sealed
/// chunk by chunk.
fn encrypted_len(payload: usize) -> usize {
    codec_sv2::ENCRYPTED_SV2_FRAME_HEADER_SIZE
        + payload
        + noise_sv2::AEAD_MAC_LEN * payload.div_ceil(codec_sv2::SV2_FRAME_PLAINTEXT_CHUNK_SIZE)
}

impl FrameReader {
    /// The next frame; `Error::SocketClosed` once the peer is gone. Cancellation-safe: the
    /// bytes received so far stay in the reader.
    pub async fn next(&mut self) -> Result<SerializedFrame, Error> {
        loop {
            if let Some(frame) = self.decode_received()? {
                return Ok(frame);
            }
            self.socket
                .readable()
                .await
                .map_err(|_| Error::SocketClosed)?;
            // Readiness may be spurious: then nothing was read and we wait again.
            self.fill()?;
        }
    }

    /// A frame whose bytes have already arrived, without waiting; `None` when there is none.
    pub fn try_next(&mut self) -> Option<Result<SerializedFrame, Error>> {
        match self.decode_received() {
            Ok(Some(frame)) => return Some(Ok(frame)),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        match self.fill() {
            Ok(true) => self.decode_received().transpose(),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Reads what the socket holds now (up to [`READ_CHUNK`] more); false when it has nothing.
    fn fill(&mut self) -> Result<bool, Error> {
        self.received.reserve(READ_CHUNK);
        match self.socket.try_read_buf(&mut self.received) {
            Ok(0) => Err(Error::SocketClosed),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.release_if_empty();
                Ok(false)
            }
            Err(_) => Err(Error::SocketClosed),
        }
    }

    /// The next frame from the bytes received, if they hold a whole one.
    fn decode_received(&mut self) -> Result<Option<SerializedFrame>, Error> {
        loop {
            let wanted = self.decoder.writable_len();
            let available = self.received.len() - self.start;
            if available < wanted {
                self.compact();
                return Ok(None);
            }
            self.frame_bytes += wanted;
            if self.frame_bytes > self.max_frame_bytes {
                // The stream is over: nothing after this point is decoded.
                self.state = None;
                return Err(Error::CodecError(codec_sv2::Error::FramingSv2Error(
                    framing_sv2::Error::PayloadTooLong(self.frame_bytes),
                )));
            }
            let bytes = &self.received[self.start..self.start + wanted];
            self.decoder.writable().copy_from_slice(bytes);
            self.start += wanted;
            let state = self.state.take().ok_or(Error::SocketClosed)?;
            match self.decoder.next_transport_frame(state)? {
                Decrypted::Frame(frame, state) => {
                    self.state = Some(state);
                    self.frame_bytes = 0;
                    if self.start == self.received.len() {
                        self.release_if_empty();
                    }
                    return Ok(Some(frame));
                }
                Decrypted::Incomplete(_, state) => self.state = Some(state),
            }
        }
    }

    /// Moves the bytes not yet decoded to the front.
    fn compact(&mut self) {
        if self.start > 0 {
            self.received.drain(..self.start);
            self.start = 0;
        }
        self.release_if_empty();
    }

    /// Lets a large empty buffer go: an idle connection keeps none.
    fn release_if_empty(&mut self) {
        if self.start == self.received.len() {
            self.start = 0;
            if self.received.capacity() > KEEP_BUFFER {
                self.received = Vec::new();
            } else {
                self.received.clear();
            }
        }
    }
}

/// The writing half: frames are encrypted as they are queued and written together.
pub struct FrameWriter {
    socket: OwnedWriteHalf,
    encoder: NoiseEncoder,
    state: TransportEncryptState,
    queued: Vec<u8>,
}

impl FrameWriter {
    /// Encrypts `frame` behind those queued; nothing is written yet.
    pub fn queue<F: EncodableFrame>(&mut self, frame: F) -> Result<(), Error> {
        let bytes = self.encoder.encode_transport(frame, &mut self.state)?;
        self.queued.extend_from_slice(bytes.as_ref());
        Ok(())
    }

    /// Writes every queued frame, in one write when the socket takes it all. Not
    /// cancellation-safe: a cancelled flush may leave part of a frame written, so a caller
    /// that gives up on a flush (a time-out) must drop the connection.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let result = self.socket.write_all(&self.queued).await;
        if self.queued.capacity() > KEEP_BUFFER {
            self.queued = Vec::new();
        } else {
            self.queued.clear();
        }
        result.map_err(|_| Error::SocketClosed)
    }

    /// Queues `frame` and flushes.
    pub async fn write_frame<F: EncodableFrame>(&mut self, frame: F) -> Result<(), Error> {
        self.queue(frame)?;
        self.flush().await
    }
}
