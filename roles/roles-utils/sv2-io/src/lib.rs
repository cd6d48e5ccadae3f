//! The SV2 connection layer every role uses: framing and decoding (with TLVs), a Noise
//! [`Connection`] read on a task of its own (or, for a server of many connections, a buffered
//! transport its handler reads and writes: [`accept_transport`]), [`dial`] (TCP, Noise, SetupConnection) and the
//! server side ([`accept`], [`answer_setup`]), extension negotiation both ways, and one
//! reconnect-with-back-off runner ([`keep_connected`]).

mod accept;
mod admission;
mod backoff;
mod connection;
mod dial;
mod error;
mod frame;
mod mint_quote;
mod negotiate;
mod reader;
mod reconnect;
mod serve;
mod transport;

pub use accept::{accept_until, listen};
pub use admission::{address_source, Admission, Admitted, Full};
pub use backoff::Backoff;
pub use connection::{decode_extension, encode_extension, Connection, ExtensionMessage};
pub use dial::{connect_noise, dial, resolve, Dial, HostPort};
pub use error::{log_session_end, ConnectionError};
pub use frame::{
    decode_frame, decode_received, encode, encode_raw, encode_with_tlvs, extension_frame, send,
    send_frame, str0255, text, ExtensionFrame, FrameError, OutFrame, ReceiveError, Received,
    SendError, Sv2Message,
};
pub use negotiate::{answer_extensions, Negotiated};
pub use reader::{spawn_reader, IncomingFrames};
pub use reconnect::{keep_connected, Healthy, Reconnect};
pub use serve::{accept, answer_setup, setup_refusal, ServerIdentity};
pub use transport::{accept_transport, FrameReader, FrameWriter};
