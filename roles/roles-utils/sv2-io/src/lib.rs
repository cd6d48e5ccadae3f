//! SV2 plumbing shared by every role: one way to turn a message into a frame, one way to decode
//! a frame (with TLVs), one reader task per Noise connection, and reconnect back-off.

mod accept;
mod backoff;
mod frame;
mod reader;
mod signal;

pub use accept::{accept_until, listen};
pub use backoff::Backoff;
pub use frame::{
    decode_frame, decode_received, encode, encode_raw, encode_with_tlvs, extension_frame, send,
    send_frame, str0255, text, ExtensionFrame, FrameError, OutFrame, ReceiveError, Received,
    SendError, Sv2Message,
};
pub use reader::{spawn_reader, IncomingFrames};
pub use signal::shutdown_signal;
