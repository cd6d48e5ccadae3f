//! What miners and translators in front of the test pool are configured with.

use std::{net::SocketAddr, time::Duration};

use crate::{loopback_any_port, public_key};

/// A miner's locking key, derived from `name` (distinct names, distinct keys).
pub fn test_key(name: &str) -> ext_mint_quote::LockingKey {
    use bitcoin::hashes::{sha256, Hash};
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let secret = bitcoin::secp256k1::SecretKey::from_slice(
        sha256::Hash::hash(name.as_bytes()).as_byte_array(),
    )
    .expect("a hash is a valid secret key with overwhelming probability");
    let public = bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &secret);
    ext_mint_quote::LockingKey::from_slice(&public.serialize()).expect("a valid point")
}

/// A miner that negotiates the mint-quote extension and locks its ehash to `test_key(user)`.
pub fn miner_options(
    pool: SocketAddr,
    user: &str,
    hashrate: f32,
    limit: bool,
) -> mining_device::MinerOptions {
    mining_device::MinerOptions {
        pool_address: pool,
        pool_authority_key: Some(public_key()),
        user_identity: user.to_string(),
        device_id: user.to_string(),
        threads: 1,
        nominal_hashrate: hashrate,
        limit_hashrate: limit,
        hash_pace: None,
        locking_key: Some(test_key(user)),
        minter: None,
    }
}

/// An SV1 miner on one thread for the translator at `address`, hashing at most `hashrate`.
pub fn sv1_miner_options(
    address: SocketAddr,
    user: &str,
    hashrate: f64,
) -> mining_device_sv1::Sv1MinerOptions {
    mining_device_sv1::Sv1MinerOptions {
        address,
        user: user.into(),
        threads: 1,
        limit_hashrate: Some(hashrate),
    }
}

/// A translator in front of the test pool (aggregated mode), its miners' difficulty starting at
/// `initial_hashrate` and aiming at 120 shares a minute.
pub fn translator_config(
    pool: SocketAddr,
    user: &str,
    locking_key: Option<ext_mint_quote::LockingKey>,
    initial_hashrate: f32,
) -> translator::TranslatorRunConfig {
    translator::TranslatorRunConfig {
        downstream_address: loopback_any_port(),
        upstreams: vec![translator::UpstreamEndpoint {
            address: pool.into(),
            authority_public_key: public_key(),
        }],
        user_identity: user.into(),
        nominal_hashrate: 60_000.0,
        locking_key,
        channel_mode: translator::ChannelMode::Aggregated,
        default_key: None,
        vardiff: translator::VardiffSettings {
            initial_hashrate,
            shares_per_minute: 120.0,
            interval: Duration::from_secs(16),
        },
    }
}
