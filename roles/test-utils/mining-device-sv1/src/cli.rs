//! The SV1 miner's command line (the binary is a thin wrapper, so tests can run the same thing
//! as a process).

use std::net::SocketAddr;

use clap::Parser;

use crate::Sv1MinerOptions;

/// Stratum V1 CPU miner.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// SV1 server (a translator).
    #[arg(long, default_value = "127.0.0.1:34255")]
    address: SocketAddr,
    /// Worker name sent in mining.authorize.
    #[arg(short, long, default_value = "sv1-cpu-miner")]
    user: String,
    /// Hashing threads.
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// Hash no faster than this (H/s); unlimited when absent.
    #[arg(long)]
    limit_hashrate: Option<f64>,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
}

/// Runs the miner until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let log = args.log.clone();
    hashpool_role::run("SV1 mining device", &log, |shutdown| async move {
        let options = Sv1MinerOptions {
            address: args.address,
            user: args.user,
            threads: args.threads,
            limit_hashrate: args.limit_hashrate,
        };
        Ok(crate::start(options, shutdown).task)
    })
    .await
}
