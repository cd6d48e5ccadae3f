//! `config/template-provider.config.toml`.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};

#[derive(Debug, Clone, Deserialize)]
pub struct TemplateProviderConfig {
    pub template_provider: ServerConfig,
    pub chain: ChainConfig,
    pub mempool: MempoolConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// Template Distribution (Noise) listener.
    pub listen_address: SocketAddr,
    /// HTTP status API (`/status`, `/blocks/{height}`).
    pub http_address: SocketAddr,
    pub authority_public_key: Secp256k1PublicKey,
    pub authority_secret_key: Secp256k1SecretKey,
    /// Validity of the Noise certificate handed to each client.
    pub cert_validity_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChainConfig {
    /// Where the chain's blocks are kept; a restart continues from them.
    pub data_dir: PathBuf,
    /// Compact target of every block, hex (`207fffff`: the regtest limit).
    #[serde(deserialize_with = "hex_u32")]
    pub nbits: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MempoolConfig {
    /// A synthetic transaction joins the mempool this often (0: never).
    pub synthetic_tx_interval_ms: u64,
    /// Fee each synthetic transaction pays.
    pub synthetic_tx_fee_sats: u64,
    /// The mempool stops growing at this many transactions.
    pub max_transactions: usize,
}

fn hex_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let s = String::deserialize(d)?;
    u32::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a hex u32: {e}")))
}
