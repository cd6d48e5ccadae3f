//! Public mode: the key a miner's SV1 username names. `<key>[.<worker>]`, where the key is a
//! compressed secp256k1 public key in hex (66 characters) or a nostr `npub`; a username with no
//! key mines for the default key when the operator chose one. Whatever looks like an attempt at
//! a key and is not one is refused, default key or not: a typo must not pay someone else.

use bitcoin::bech32;
use ext_mint_quote::LockingKey;

/// What to put in the username, said with every refusal.
const HOW: &str = "use your ehash public key as the username: the 66 hex characters that \
                   `hashpool-wallet init` prints (or an npub), optionally followed by .workername";

/// Why a username is refused at `mining.authorize`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("`{0}` is not a valid public key: {HOW}")]
    BadKey(String),
    #[error("`{0}` is not a valid npub: {HOW}")]
    BadNpub(String),
    #[error("no key in the username `{0}`: {HOW}")]
    NoKey(String),
}

/// The key a miner mines for, and the worker name it goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerKey {
    pub key: LockingKey,
    pub worker: String,
}

/// The key `username` names (`default_key` for one that names none).
pub fn parse_username(
    username: &str,
    default_key: Option<LockingKey>,
) -> Result<MinerKey, UsernameError> {
    let username = username.trim();
    let (head, worker) = username.split_once('.').unwrap_or((username, ""));
    let worker = worker.to_string();
    if let Ok(key) = LockingKey::from_hex(head) {
        return Ok(MinerKey { key, worker });
    }
    let lower = head.to_ascii_lowercase();
    if lower.starts_with("npub1") {
        let key = npub_key(&lower).ok_or_else(|| UsernameError::BadNpub(short(head)))?;
        return Ok(MinerKey { key, worker });
    }
    // 40 hex characters and more are no worker name: a key cut short, an x-only key, a key
    // with a typo.
    if head.len() >= 40 && head.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(UsernameError::BadKey(short(head)));
    }
    match default_key {
        Some(key) => Ok(MinerKey {
            key,
            worker: username.to_string(),
        }),
        None => Err(UsernameError::NoKey(short(username))),
    }
}

/// A nostr public key is x-only (BIP-340): its compressed form is the even-y point, `02 || x`,
/// the key whose Schnorr signatures (NUT-20) the npub's secret key makes.
fn npub_key(npub: &str) -> Option<LockingKey> {
    let (hrp, data) = bech32::decode(npub).ok()?;
    if hrp.as_str() != "npub" || data.len() != 32 {
        return None;
    }
    let compressed: Vec<u8> = std::iter::once(0x02).chain(data).collect();
    LockingKey::from_slice(&compressed).ok()
}

/// At most 80 characters of what a miner sent, for the refusal and the logs.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "02ba4b87a1e7f4d8d65be7fb4d2fa2cb3b71e6ff1b9c8d4e2c8e1e1ce0c4b0f7e1";

    fn key() -> LockingKey {
        // A point on the curve: the generator's compressed form.
        LockingKey::from_hex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
            .unwrap()
    }

    #[test]
    fn a_key_with_or_without_a_worker() {
        let hex = key().to_hex();
        assert_eq!(
            parse_username(&hex, None).unwrap(),
            MinerKey {
                key: key(),
                worker: String::new()
            }
        );
        let with_worker = parse_username(&format!("{hex}.rig.1"), None).unwrap();
        assert_eq!(with_worker.key, key());
        assert_eq!(with_worker.worker, "rig.1");
        // Upper-case hex is the same key.
        let upper = parse_username(&hex.to_uppercase(), None).unwrap();
        assert_eq!(upper.key, key());
    }

    #[test]
    fn an_npub_is_its_even_y_key() {
        // The generator's x coordinate as an npub.
        let x = hex::decode("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
            .unwrap();
        let npub =
            bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("npub").unwrap(), &x).unwrap();
        let parsed = parse_username(&format!("{npub}.bitaxe"), None).unwrap();
        assert_eq!(parsed.key, key());
        assert_eq!(parsed.worker, "bitaxe");
        // A damaged checksum, another prefix's data, a wrong length: refused, not defaulted.
        let mut broken = npub.clone();
        broken.pop();
        broken.push(if npub.ends_with('q') { 'p' } else { 'q' });
        assert!(matches!(
            parse_username(&broken, Some(key())),
            Err(UsernameError::BadNpub(_))
        ));
        let short_data =
            bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("npub").unwrap(), &x[..20])
                .unwrap();
        assert!(matches!(
            parse_username(&short_data, Some(key())),
            Err(UsernameError::BadNpub(_))
        ));
    }

    #[test]
    fn what_looks_like_a_key_and_is_not_is_refused_even_with_a_default() {
        // Not on the curve.
        assert!(LockingKey::from_hex(KEY).is_err());
        for bad in [
            KEY.to_string(),
            format!("{KEY}.rig"),
            key().to_hex()[..64].to_string(),
            key().to_hex()[2..].to_string(),
            format!("{}0", key().to_hex()),
        ] {
            let err = parse_username(&bad, Some(key())).unwrap_err();
            assert!(matches!(err, UsernameError::BadKey(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains("hashpool-wallet init"), "{err}");
        }
    }

    #[test]
    fn no_key_is_the_default_key_only_when_there_is_one() {
        for user in [
            "bitaxe",
            "worker.1",
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "",
        ] {
            let err = parse_username(user, None).unwrap_err();
            assert!(matches!(err, UsernameError::NoKey(_)), "{user}: {err:?}");
            assert!(err.to_string().contains("66 hex characters"), "{err}");
            let defaulted = parse_username(user, Some(key())).unwrap();
            assert_eq!(defaulted.key, key());
            assert_eq!(defaulted.worker, user);
        }
    }

    #[test]
    fn a_long_username_is_quoted_short() {
        let err = parse_username(&"x".repeat(10_000), None).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
    }
}
