#![no_main]
//! One line from an SV1 miner, as the translator reads it (`LinesCodec` hands over valid UTF-8
//! only): `parse_client_line` must never panic; a request it parses, rendered again as a miner
//! would send it, parses to the same request; an error it returns, answered as the translator
//! answers it (`response_error`), is a response a miner reads back with the same id, code and
//! message. The server-line parser (the SV1 CPU miner's side) runs on the same bytes.

use hashpool_sv1::{
    parse_client_line, parse_server_line, response_error, ClientRequest, ServerMessage,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match parse_client_line(line) {
        Ok(request) => {
            let rendered = render(&request);
            let again = parse_client_line(&rendered).unwrap_or_else(|e| {
                panic!("{request:?} rendered as {rendered} does not parse: {e}")
            });
            assert!(
                same_request(&request, &again),
                "{request:?} -> {rendered} -> {again:?}"
            );
        }
        Err(e) => {
            let answer = response_error(&e.id, e.code, &e.message);
            match parse_server_line(&answer) {
                Ok(ServerMessage::Response {
                    id,
                    error: Some((code, message)),
                    ..
                }) => {
                    assert!(same_value(&id, &e.id), "{e:?} answered as {answer}");
                    assert_eq!((code, &message), (e.code, &e.message), "{answer}");
                }
                other => panic!("{e:?} answered as {answer} reads back as {other:?}"),
            }
        }
    }
    let _ = parse_server_line(line);
});

/// The request as a miner would send it.
fn render(request: &ClientRequest) -> String {
    let (method, params) = match request {
        ClientRequest::Subscribe { user_agent, .. } => (
            "mining.subscribe",
            json!(user_agent.iter().collect::<Vec<_>>()),
        ),
        ClientRequest::Authorize { user, password, .. } => {
            let mut p = vec![json!(user)];
            p.extend(password.iter().map(|s| json!(s)));
            ("mining.authorize", Value::Array(p))
        }
        ClientRequest::Configure {
            extensions,
            version_rolling_mask,
            version_rolling_min_bit_count,
            ..
        } => {
            let mut options = serde_json::Map::new();
            if let Some(mask) = version_rolling_mask {
                options.insert("version-rolling.mask".into(), json!(format!("{mask:08x}")));
            }
            if let Some(bits) = version_rolling_min_bit_count {
                options.insert("version-rolling.min-bit-count".into(), json!(bits));
            }
            ("mining.configure", json!([extensions, options]))
        }
        ClientRequest::Submit { submit, .. } => {
            let mut p = vec![
                json!(submit.worker),
                json!(submit.job_id),
                json!(hex::encode(&submit.extranonce2)),
                json!(format!("{:08x}", submit.ntime)),
                json!(format!("{:08x}", submit.nonce)),
            ];
            p.extend(submit.version_bits.map(|v| json!(format!("{v:08x}"))));
            ("mining.submit", Value::Array(p))
        }
        ClientRequest::ExtranonceSubscribe { .. } => ("mining.extranonce.subscribe", json!([])),
        ClientRequest::SuggestDifficulty { difficulty, .. } => {
            ("mining.suggest_difficulty", json!([difficulty]))
        }
    };
    json!({"id": request.id(), "method": method, "params": params}).to_string()
}

/// serde_json reads a decimal float to within an ulp or so of the one it printed.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs())
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            matches!((x.as_f64(), y.as_f64()), (Some(x), Some(y)) if close(x, y))
        }
        _ => a == b,
    }
}

fn same_request(a: &ClientRequest, b: &ClientRequest) -> bool {
    if !same_value(a.id(), b.id()) {
        return false;
    }
    match (a, b) {
        (
            ClientRequest::SuggestDifficulty { difficulty: x, .. },
            ClientRequest::SuggestDifficulty { difficulty: y, .. },
        ) => close(*x, *y),
        _ => {
            let mut b = b.clone();
            *id_mut(&mut b) = a.id().clone();
            *a == b
        }
    }
}

fn id_mut(r: &mut ClientRequest) -> &mut Value {
    match r {
        ClientRequest::Subscribe { id, .. }
        | ClientRequest::Authorize { id, .. }
        | ClientRequest::Configure { id, .. }
        | ClientRequest::Submit { id, .. }
        | ClientRequest::ExtranonceSubscribe { id }
        | ClientRequest::SuggestDifficulty { id, .. } => id,
    }
}
