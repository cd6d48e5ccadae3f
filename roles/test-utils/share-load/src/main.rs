//! `share-load`: drives any SV2 pool with shares from N standard channels and reports accepted
//! shares/s, refusals by error code and ack latency (see the library's documentation).

use std::{net::SocketAddr, time::Duration};

use anyhow::{bail, Context};
use clap::Parser;
use share_load::LoadOptions;
use stratum_apps::key_utils::Secp256k1PublicKey;

#[derive(Debug, Parser)]
#[command(
    name = "share-load",
    about = "SV2 share load generator: N standard channels over Noise, K shares in flight each"
)]
struct Cli {
    /// The pool's mining address (HOST:PORT).
    #[arg(long)]
    pool: String,
    /// The pool's authority public key (base58check), pinned in the Noise handshake.
    #[arg(long, required_unless_present = "no_pin")]
    authority_key: Option<Secp256k1PublicKey>,
    /// Accept any authority key (no pinning: only for a pool you reach on a trusted path).
    #[arg(long, conflicts_with = "authority_key")]
    no_pin: bool,
    /// Standard channels, one connection each.
    #[arg(long, default_value_t = 4)]
    channels: usize,
    /// Shares each channel keeps unacknowledged.
    #[arg(long, default_value_t = 64)]
    in_flight: u32,
    /// Seconds of submitting.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to wait at most, after the window, for the answers to shares in flight.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// User identity (repeatable: channel i uses the (i mod n)-th, as `<user>.<i>`). A pool
    /// that reads a locking key from the identity (Hashpool) needs a 66-hex-character key.
    #[arg(long = "user", default_value = "share-load")]
    users: Vec<String>,
    /// Nominal hashrate each channel announces (H/s).
    #[arg(long, default_value_t = 1.0)]
    nominal_hashrate: f32,
    /// Seconds for every channel to open and get work.
    #[arg(long, default_value_t = 30.0)]
    setup_timeout: f64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{name} {value}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pool: SocketAddr = tokio::net::lookup_host(&cli.pool)
        .await
        .with_context(|| format!("resolving {}", cli.pool))?
        .next()
        .with_context(|| format!("{} resolves to no address", cli.pool))?;
    let mut options = LoadOptions::new(pool, cli.authority_key);
    options.channels = cli.channels;
    options.in_flight = cli.in_flight;
    options.duration = seconds("duration", cli.duration)?;
    options.drain = seconds("drain", cli.drain)?;
    options.users = cli.users;
    options.nominal_hashrate = cli.nominal_hashrate;
    options.setup_timeout = seconds("setup-timeout", cli.setup_timeout)?;
    if options.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let report = share_load::run(&options).await?;
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
