//! SV1 messages: what a miner sends (requests), what a server sends (responses and
//! notifications), each parsed from one line or rendered to one line.

use serde_json::{json, Value};

/// Longest line either side accepts (a `mining.notify` with a long merkle branch fits easily).
pub const MAX_LINE_LEN: usize = 16 * 1024;

/// JSON-RPC error codes miners know (the stratum convention).
pub mod error_code {
    pub const OTHER: i64 = 20;
    pub const JOB_NOT_FOUND: i64 = 21;
    pub const DUPLICATE_SHARE: i64 = 22;
    pub const LOW_DIFFICULTY: i64 = 23;
    pub const UNAUTHORIZED: i64 = 24;
    pub const NOT_SUBSCRIBED: i64 = 25;
    /// JSON-RPC 2.0's codes for what is not a request at all.
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
}

/// A line that cannot be served, with what to answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct Sv1Error {
    /// The request's id when it could be read (answer with it), else null.
    pub id: Value,
    pub code: i64,
    pub message: String,
}

impl Sv1Error {
    fn new(id: &Value, code: i64, message: impl Into<String>) -> Self {
        Self {
            id: id.clone(),
            code,
            message: message.into(),
        }
    }
}

/// `mining.submit` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub worker: String,
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub ntime: u32,
    pub nonce: u32,
    /// Rolled version bits (BIP 310), when version rolling was configured.
    pub version_bits: Option<u32>,
}

/// A miner's request.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    Subscribe {
        id: Value,
        user_agent: Option<String>,
    },
    Authorize {
        id: Value,
        user: String,
        password: Option<String>,
    },
    /// BIP 310. Only version rolling is understood; `mask` and `min_bit_count` are its
    /// parameters when requested.
    Configure {
        id: Value,
        extensions: Vec<String>,
        version_rolling_mask: Option<u32>,
        version_rolling_min_bit_count: Option<u32>,
    },
    Submit {
        id: Value,
        submit: Submit,
    },
    ExtranonceSubscribe {
        id: Value,
    },
    SuggestDifficulty {
        id: Value,
        difficulty: f64,
    },
}

impl ClientRequest {
    pub fn id(&self) -> &Value {
        match self {
            ClientRequest::Subscribe { id, .. }
            | ClientRequest::Authorize { id, .. }
            | ClientRequest::Configure { id, .. }
            | ClientRequest::Submit { id, .. }
            | ClientRequest::ExtranonceSubscribe { id }
            | ClientRequest::SuggestDifficulty { id, .. } => id,
        }
    }
}

fn hex_u32(id: &Value, v: &Value, what: &str) -> Result<u32, Sv1Error> {
    let s = v.as_str().ok_or_else(|| {
        Sv1Error::new(
            id,
            error_code::INVALID_PARAMS,
            format!("{what} must be a hex string"),
        )
    })?;
    if s.is_empty() || s.len() > 8 {
        return Err(Sv1Error::new(
            id,
            error_code::INVALID_PARAMS,
            format!("{what} must be 1-8 hex digits"),
        ));
    }
    u32::from_str_radix(s, 16)
        .map_err(|_| Sv1Error::new(id, error_code::INVALID_PARAMS, format!("{what} is not hex")))
}

fn string(id: &Value, v: Option<&Value>, what: &str) -> Result<String, Sv1Error> {
    v.and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Sv1Error::new(id, error_code::INVALID_PARAMS, format!("missing {what}")))
}

/// Parses one line from a miner.
pub fn parse_client_line(line: &str) -> Result<ClientRequest, Sv1Error> {
    let null = Value::Null;
    if line.len() > MAX_LINE_LEN {
        return Err(Sv1Error::new(
            &null,
            error_code::INVALID_REQUEST,
            "line too long",
        ));
    }
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Sv1Error::new(&null, error_code::PARSE_ERROR, format!("not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(Sv1Error::new(
            &null,
            error_code::INVALID_REQUEST,
            "not a JSON object",
        ));
    };
    let id = map.get("id").cloned().unwrap_or(Value::Null);
    if !(id.is_null() || id.is_number() || id.is_string()) {
        return Err(Sv1Error::new(
            &null,
            error_code::INVALID_REQUEST,
            "id must be a number, a string or null",
        ));
    }
    let method = map
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| Sv1Error::new(&id, error_code::INVALID_REQUEST, "missing method"))?;
    let empty = Vec::new();
    let params = match map.get("params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(p)) => p,
        Some(_) => {
            return Err(Sv1Error::new(
                &id,
                error_code::INVALID_PARAMS,
                "params must be an array",
            ))
        }
    };
    match method {
        "mining.subscribe" => Ok(ClientRequest::Subscribe {
            user_agent: params.first().and_then(Value::as_str).map(str::to_string),
            id,
        }),
        "mining.authorize" => Ok(ClientRequest::Authorize {
            user: string(&id, params.first(), "user")?,
            password: params.get(1).and_then(Value::as_str).map(str::to_string),
            id,
        }),
        "mining.configure" => {
            let extensions = params
                .first()
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Sv1Error::new(&id, error_code::INVALID_PARAMS, "missing extension list")
                })?
                .iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect();
            let options = params.get(1).and_then(Value::as_object);
            let mask = match options.and_then(|o| o.get("version-rolling.mask")) {
                Some(v) => Some(hex_u32(&id, v, "version-rolling.mask")?),
                None => None,
            };
            let min_bits = options
                .and_then(|o| o.get("version-rolling.min-bit-count"))
                .and_then(Value::as_u64)
                .map(|b| b.min(32) as u32);
            Ok(ClientRequest::Configure {
                id,
                extensions,
                version_rolling_mask: mask,
                version_rolling_min_bit_count: min_bits,
            })
        }
        "mining.submit" => {
            if params.len() < 5 || params.len() > 6 {
                return Err(Sv1Error::new(
                    &id,
                    error_code::INVALID_PARAMS,
                    "submit takes 5 or 6 params",
                ));
            }
            let extranonce2 = params[2]
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| {
                    Sv1Error::new(&id, error_code::INVALID_PARAMS, "extranonce2 is not hex")
                })?;
            let submit = Submit {
                worker: string(&id, params.first(), "worker")?,
                job_id: string(&id, params.get(1), "job id")?,
                extranonce2,
                ntime: hex_u32(&id, &params[3], "ntime")?,
                nonce: hex_u32(&id, &params[4], "nonce")?,
                version_bits: match params.get(5) {
                    Some(v) => Some(hex_u32(&id, v, "version bits")?),
                    None => None,
                },
            };
            Ok(ClientRequest::Submit { id, submit })
        }
        "mining.extranonce.subscribe" => Ok(ClientRequest::ExtranonceSubscribe { id }),
        "mining.suggest_difficulty" => {
            let difficulty = params
                .first()
                .and_then(Value::as_f64)
                .filter(|d| d.is_finite() && *d > 0.0)
                .ok_or_else(|| {
                    Sv1Error::new(
                        &id,
                        error_code::INVALID_PARAMS,
                        "difficulty must be a positive number",
                    )
                })?;
            Ok(ClientRequest::SuggestDifficulty { id, difficulty })
        }
        other => Err(Sv1Error::new(
            &id,
            error_code::METHOD_NOT_FOUND,
            format!("unknown method `{other}`"),
        )),
    }
}

/// `mining.notify` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub job_id: String,
    /// Previous block hash as SV1 sends it (see `prev_hash_to_sv1`).
    pub prev_hash: String,
    pub coinbase1: Vec<u8>,
    pub coinbase2: Vec<u8>,
    /// Merkle path, each hash in internal byte order.
    pub merkle_branch: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean_jobs: bool,
}

/// What a server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Response {
        id: Value,
        result: Value,
        error: Option<(i64, String)>,
    },
    Notify(Notify),
    SetDifficulty(f64),
    SetExtranonce {
        extranonce1: Vec<u8>,
        extranonce2_size: usize,
    },
    SetVersionMask(u32),
    /// A notification this side does not use.
    Other(String),
}

fn line(v: Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

pub fn response_ok(id: &Value, result: Value) -> String {
    line(json!({"id": id, "result": result, "error": null}))
}

pub fn response_error(id: &Value, code: i64, message: &str) -> String {
    line(json!({"id": id, "result": null, "error": [code, message, null]}))
}

pub fn request(id: u64, method: &str, params: Value) -> String {
    line(json!({"id": id, "method": method, "params": params}))
}

pub fn notify(n: &Notify) -> String {
    let branch: Vec<String> = n.merkle_branch.iter().map(hex::encode).collect();
    line(json!({"id": null, "method": "mining.notify", "params": [
        n.job_id,
        n.prev_hash,
        hex::encode(&n.coinbase1),
        hex::encode(&n.coinbase2),
        branch,
        format!("{:08x}", n.version),
        format!("{:08x}", n.nbits),
        format!("{:08x}", n.ntime),
        n.clean_jobs,
    ]}))
}

pub fn set_difficulty(difficulty: f64) -> String {
    line(json!({"id": null, "method": "mining.set_difficulty", "params": [difficulty]}))
}

pub fn set_extranonce(extranonce1: &[u8], extranonce2_size: usize) -> String {
    line(
        json!({"id": null, "method": "mining.set_extranonce", "params": [hex::encode(extranonce1), extranonce2_size]}),
    )
}

pub fn set_version_mask(mask: u32) -> String {
    line(
        json!({"id": null, "method": "mining.set_version_mask", "params": [format!("{mask:08x}")]}),
    )
}

fn bad(message: &str) -> Sv1Error {
    Sv1Error::new(&Value::Null, error_code::INVALID_PARAMS, message)
}

fn hex32(v: &Value) -> Result<[u8; 32], Sv1Error> {
    v.as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| bad("merkle branch entries are 32-byte hex"))
}

/// Parses one line from a server (what the SV1 miner reads).
pub fn parse_server_line(text: &str) -> Result<ServerMessage, Sv1Error> {
    if text.len() > MAX_LINE_LEN {
        return Err(bad("line too long"));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Sv1Error::new(
            &Value::Null,
            error_code::PARSE_ERROR,
            format!("not JSON: {e}"),
        )
    })?;
    let Some(method) = value.get("method").and_then(Value::as_str) else {
        let error = match value.get("error") {
            None | Some(Value::Null) => None,
            Some(Value::Array(e)) => Some((
                e.first()
                    .and_then(Value::as_i64)
                    .unwrap_or(error_code::OTHER),
                e.get(1).and_then(Value::as_str).unwrap_or("").to_string(),
            )),
            Some(other) => Some((error_code::OTHER, other.to_string())),
        };
        return Ok(ServerMessage::Response {
            id: value.get("id").cloned().unwrap_or(Value::Null),
            result: value.get("result").cloned().unwrap_or(Value::Null),
            error,
        });
    };
    let params = value
        .get("params")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("params must be an array"))?;
    let p = |i: usize| params.get(i).unwrap_or(&Value::Null);
    match method {
        "mining.notify" => {
            let text = |i: usize| {
                p(i).as_str()
                    .ok_or_else(|| bad("notify fields are strings"))
            };
            let bytes = |i: usize| {
                text(i).and_then(|s| hex::decode(s).map_err(|_| bad("coinbase parts are hex")))
            };
            let null = Value::Null;
            Ok(ServerMessage::Notify(Notify {
                job_id: text(0)?.to_string(),
                prev_hash: text(1)?.to_string(),
                coinbase1: bytes(2)?,
                coinbase2: bytes(3)?,
                merkle_branch: p(4)
                    .as_array()
                    .ok_or_else(|| bad("merkle branch is an array"))?
                    .iter()
                    .map(hex32)
                    .collect::<Result<_, _>>()?,
                version: hex_u32(&null, p(5), "version")?,
                nbits: hex_u32(&null, p(6), "nbits")?,
                ntime: hex_u32(&null, p(7), "ntime")?,
                clean_jobs: p(8).as_bool().unwrap_or(false),
            }))
        }
        "mining.set_difficulty" => p(0)
            .as_f64()
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(ServerMessage::SetDifficulty)
            .ok_or_else(|| bad("difficulty must be a positive number")),
        "mining.set_extranonce" => Ok(ServerMessage::SetExtranonce {
            extranonce1: p(0)
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| bad("extranonce1 is hex"))?,
            extranonce2_size: p(1).as_u64().ok_or_else(|| bad("extranonce2 size"))? as usize,
        }),
        "mining.set_version_mask" => Ok(ServerMessage::SetVersionMask(hex_u32(
            &Value::Null,
            p(0),
            "mask",
        )?)),
        other => Ok(ServerMessage::Other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let r =
            parse_client_line(r#"{"id":1,"method":"mining.subscribe","params":["cpuminer/2.5"]}"#)
                .unwrap();
        assert_eq!(
            r,
            ClientRequest::Subscribe {
                id: json!(1),
                user_agent: Some("cpuminer/2.5".into())
            }
        );
        let r = parse_client_line(
            r#"{"id":"a","method":"mining.authorize","params":["alice.w1","x"]}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            ClientRequest::Authorize {
                id: json!("a"),
                user: "alice.w1".into(),
                password: Some("x".into())
            }
        );
        let r = parse_client_line(r#"{"id":3,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#).unwrap();
        assert_eq!(
            r,
            ClientRequest::Configure {
                id: json!(3),
                extensions: vec!["version-rolling".into()],
                version_rolling_mask: Some(0x1fffe000),
                version_rolling_min_bit_count: Some(2)
            }
        );
        let r = parse_client_line(r#"{"id":4,"method":"mining.submit","params":["alice.w1","1f","00000001","6560a1b2","deadbeef","00002000"]}"#).unwrap();
        assert_eq!(
            r,
            ClientRequest::Submit {
                id: json!(4),
                submit: Submit {
                    worker: "alice.w1".into(),
                    job_id: "1f".into(),
                    extranonce2: vec![0, 0, 0, 1],
                    ntime: 0x6560a1b2,
                    nonce: 0xdeadbeef,
                    version_bits: Some(0x2000)
                }
            }
        );
    }

    #[test]
    fn bad_lines_are_errors_with_the_right_code() {
        let code = |l: &str| parse_client_line(l).unwrap_err().code;
        assert_eq!(code("{not json"), error_code::PARSE_ERROR);
        assert_eq!(code("[1,2]"), error_code::INVALID_REQUEST);
        assert_eq!(
            code(r#"{"id":{},"method":"mining.subscribe"}"#),
            error_code::INVALID_REQUEST
        );
        assert_eq!(code(r#"{"id":1}"#), error_code::INVALID_REQUEST);
        assert_eq!(
            code(r#"{"id":1,"method":"mining.fly","params":[]}"#),
            error_code::METHOD_NOT_FOUND
        );
        assert_eq!(
            code(r#"{"id":1,"method":"mining.authorize","params":[]}"#),
            error_code::INVALID_PARAMS
        );
        assert_eq!(
            code(r#"{"id":1,"method":"mining.submit","params":["a","b","zz","1","2"]}"#),
            error_code::INVALID_PARAMS
        );
        assert_eq!(
            code(r#"{"id":1,"method":"mining.submit","params":["a","b","00","123456789","2"]}"#),
            error_code::INVALID_PARAMS
        );
        assert_eq!(
            code(r#"{"id":1,"method":"mining.submit","params":["a"]}"#),
            error_code::INVALID_PARAMS
        );
        assert_eq!(
            code(r#"{"id":1,"method":"mining.subscribe","params":{}}"#),
            error_code::INVALID_PARAMS
        );
        let long = format!(r#"{{"id":1,"method":"{}"}}"#, "x".repeat(MAX_LINE_LEN));
        assert_eq!(code(&long), error_code::INVALID_REQUEST);
        // The id is kept so the error can be answered to the right request.
        let e = parse_client_line(r#"{"id":7,"method":"mining.fly"}"#).unwrap_err();
        assert_eq!(e.id, json!(7));
    }

    #[test]
    fn suggested_difficulties_parse_as_sent_or_are_refused() {
        // Tiny and huge positive numbers are the server's to clamp: parsed as sent.
        for d in [1e-30, 1e300, 0.5] {
            let line = json!({"id": 1, "method": "mining.suggest_difficulty", "params": [d]});
            match parse_client_line(&line.to_string()).unwrap() {
                // serde_json reads decimal floats to within an ulp or so.
                ClientRequest::SuggestDifficulty { id, difficulty } => {
                    assert_eq!(id, json!(1));
                    assert!((difficulty / d - 1.0).abs() < 1e-12, "{d}: {difficulty}");
                }
                other => panic!("{d}: {other:?}"),
            }
        }
        // What is not a positive number is a bad request.
        for params in ["[0]", "[-1]", "[\"x\"]", "[]", "[1e400]"] {
            let line =
                format!(r#"{{"id":1,"method":"mining.suggest_difficulty","params":{params}}}"#);
            let code = parse_client_line(&line).unwrap_err().code;
            assert!(
                code == error_code::INVALID_PARAMS || code == error_code::PARSE_ERROR,
                "{params}: {code}"
            );
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let n = Notify {
            job_id: "2a".into(),
            prev_hash: "00".repeat(32),
            coinbase1: vec![1, 2],
            coinbase2: vec![3],
            merkle_branch: vec![[7; 32]],
            version: 0x2000_0000,
            nbits: 0x1d00_ffff,
            ntime: 0x6560_a1b2,
            clean_jobs: true,
        };
        assert_eq!(
            parse_server_line(&notify(&n)).unwrap(),
            ServerMessage::Notify(n)
        );
        assert_eq!(
            parse_server_line(&set_difficulty(0.5)).unwrap(),
            ServerMessage::SetDifficulty(0.5)
        );
        assert_eq!(
            parse_server_line(&set_extranonce(&[1, 2], 4)).unwrap(),
            ServerMessage::SetExtranonce {
                extranonce1: vec![1, 2],
                extranonce2_size: 4
            }
        );
        assert_eq!(
            parse_server_line(&set_version_mask(0x1fffe000)).unwrap(),
            ServerMessage::SetVersionMask(0x1fffe000)
        );
        match parse_server_line(&response_error(
            &json!(5),
            error_code::LOW_DIFFICULTY,
            "low",
        ))
        .unwrap()
        {
            ServerMessage::Response { id, error, .. } => {
                assert_eq!(id, json!(5));
                assert_eq!(error, Some((error_code::LOW_DIFFICULTY, "low".into())));
            }
            other => panic!("{other:?}"),
        }
        match parse_server_line(&response_ok(&json!(6), json!(true))).unwrap() {
            ServerMessage::Response { result, error, .. } => {
                assert_eq!(result, json!(true));
                assert_eq!(error, None);
            }
            other => panic!("{other:?}"),
        }
    }
}
