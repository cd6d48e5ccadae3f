#![no_main]
//! A stats protocol frame the stats service (or a reporter) receives, as the Noise decoder
//! hands it over: header (the stats extension type, a message type, the payload length) and
//! exactly that payload. Input: message type (1 byte), then the payload. The path is the one
//! `ingest::next` and the reporter take: `extension_frame`, then `StatsMessage::decode`. It must
//! never panic, and whatever decodes must encode again and decode to the same message (floats
//! within an ulp or so: serde_json's reading of them). Frames of other extension types are
//! refused before the payload is looked at (unit tests in `protocol.rs`).

use codec_sv2::SerializedFrame;
use hashpool_stats::protocol::{StatsMessage, EXTENSION_TYPE};
use hashpool_sv2_io::extension_frame;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some(mut frame) = frame_of(data) else {
        return;
    };
    let ext = extension_frame(&mut frame).expect("a stats frame is an extension frame");
    let Ok(message) = StatsMessage::decode(&ext) else {
        return;
    };
    let mut encoded = message
        .encode()
        .unwrap_or_else(|e| panic!("{message:?} decoded but does not encode: {e}"));
    let ext = extension_frame(&mut encoded).expect("a stats frame is an extension frame");
    let again = StatsMessage::decode(&ext)
        .unwrap_or_else(|e| panic!("{message:?} encoded does not decode: {e}"));
    assert_eq!(message.message_type(), again.message_type());
    assert!(
        same(&json_of(&message), &json_of(&again)),
        "{message:?} -> {again:?}"
    );
});

/// The frame the Noise decoder would deliver for these bytes.
fn frame_of(data: &[u8]) -> Option<SerializedFrame> {
    let (message_type, payload) = data.split_first()?;
    let mut bytes = EXTENSION_TYPE.to_le_bytes().to_vec();
    bytes.push(*message_type);
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    bytes.extend_from_slice(payload);
    #[allow(clippy::useless_conversion)]
    Some(SerializedFrame::from_bytes(bytes.into()).expect("header and payload agree"))
}

fn json_of(m: &StatsMessage) -> Value {
    fn v(x: &impl serde::Serialize) -> Value {
        serde_json::to_value(x).expect("a decoded message serializes")
    }
    match m {
        StatsMessage::Challenge(x) => v(x),
        StatsMessage::Hello(x) => v(x),
        StatsMessage::Welcome(x) => v(x),
        StatsMessage::Refused(x) => v(x),
        StatsMessage::Report(x) => v(x),
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b
        || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs())
        || (a - b).abs() <= f64::MIN_POSITIVE
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            matches!((x.as_f64(), y.as_f64()), (Some(x), Some(y)) if close(x, y))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, xv)| y.get(k).is_some_and(|yv| same(xv, yv)))
        }
        _ => a == b,
    }
}
