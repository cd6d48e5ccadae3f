//! `share-load`: drives any SV2 pool with shares from N standard channels and reports accepted
//! shares/s, refusals by error code and ack latency; `share-load hold` opens N connections (one
//! standard channel each), gets each a job and an answer, and holds them (see the library's
//! documentation).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use share_load::{HoldOptions, HoldReport, LoadOptions};
use stratum_apps::key_utils::Secp256k1PublicKey;
use tokio::sync::Notify;

#[derive(Debug, Parser)]
#[command(
    name = "share-load",
    about = "SV2 share load generator: N standard channels over Noise, K shares in flight each",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hold N connections, one standard channel each, every one with a job and an answer.
    ///
    /// Opens N connections (one standard channel each) at a bounded pace, gets each a job and
    /// an answer to one share, and holds them open until released (`--hold-secs`,
    /// `--until-file`, SIGINT or SIGTERM); then prints the report (connections opened, with a
    /// job, answered: accepted and refused by code, failures and losses by reason). Exits with
    /// status 1 when not every connection got a job and an answer and was held to the end.
    Hold(HoldArgs),
}

/// The pool and how to present ourselves to it (both modes).
#[derive(Debug, Args)]
struct PoolArgs {
    /// The pool's mining address (HOST:PORT).
    #[arg(long, required = true)]
    pool: Option<String>,
    /// The pool's authority public key (base58check), pinned in the Noise handshake.
    #[arg(long, required_unless_present = "no_pin")]
    authority_key: Option<Secp256k1PublicKey>,
    /// Accept any authority key (no pinning: only for a pool you reach on a trusted path).
    #[arg(long, conflicts_with = "authority_key")]
    no_pin: bool,
    /// User identity (repeatable: channel i uses the (i mod n)-th, as `<user>.<i>`). A pool
    /// that reads a locking key from the identity (Hashpool) needs a 66-hex-character key.
    #[arg(long = "user", default_value = "share-load")]
    users: Vec<String>,
    /// Nominal hashrate each channel announces (H/s).
    #[arg(long, default_value_t = 1.0)]
    nominal_hashrate: f32,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The share load (no subcommand).
#[derive(Debug, Args)]
struct LoadArgs {
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
    /// Seconds for every channel to open and get work.
    #[arg(long, default_value_t = 30.0)]
    setup_timeout: f64,
}

#[derive(Debug, Args)]
struct HoldArgs {
    #[command(flatten)]
    pool: PoolArgs,
    /// Connections, one standard channel each.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connections started per second at most (0: as fast as --concurrency allows).
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Connections between their connect and their answer at once, at most.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds each connection has from its connect to the answer to its share.
    #[arg(long, default_value_t = 60.0)]
    setup_timeout: f64,
    /// Hashes tried for a share that meets the channel's target; then the next nonce is
    /// submitted as it is (a pool that checks refuses it: an answer all the same).
    #[arg(long, default_value_t = 4096)]
    grind_budget: u32,
    /// Seconds to hold once every connection is set up (without it: until --until-file or a
    /// signal).
    #[arg(long)]
    hold_secs: Option<f64>,
    /// Hold until this file exists (it must not exist at the start).
    #[arg(long)]
    until_file: Option<PathBuf>,
    /// Once every connection is set up, write the report so far (JSON) to this file (written
    /// whole, by rename).
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{name} {value}"))
}

async fn load_options(args: &PoolArgs) -> anyhow::Result<LoadOptions> {
    let address = args.pool.as_deref().context("--pool is required")?;
    if args.authority_key.is_none() && !args.no_pin {
        bail!("--authority-key or --no-pin is required");
    }
    let pool: SocketAddr = tokio::net::lookup_host(address)
        .await
        .with_context(|| format!("resolving {address}"))?
        .next()
        .with_context(|| format!("{address} resolves to no address"))?;
    let mut options = LoadOptions::new(pool, args.authority_key);
    options.users = args.users.clone();
    options.nominal_hashrate = args.nominal_hashrate;
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Some(Command::Hold(args)) = cli.command {
        return hold(args).await;
    }
    let mut options = load_options(&cli.pool).await?;
    options.channels = cli.load.channels;
    options.in_flight = cli.load.in_flight;
    options.duration = seconds("duration", cli.load.duration)?;
    options.drain = seconds("drain", cli.load.drain)?;
    options.setup_timeout = seconds("setup-timeout", cli.load.setup_timeout)?;
    if options.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let report = share_load::run(&options).await?;
    if cli.pool.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn hold(args: HoldArgs) -> anyhow::Result<ExitCode> {
    let mut options = HoldOptions::new(load_options(&args.pool).await?, args.connections);
    options.ramp_per_sec = args.ramp;
    options.concurrency = args.concurrency;
    options.setup_timeout = seconds("setup-timeout", args.setup_timeout)?;
    options.grind_budget = args.grind_budget;
    let hold_for = args
        .hold_secs
        .map(|s| seconds("hold-secs", s))
        .transpose()?;
    if let Some(file) = &args.until_file {
        if file.exists() {
            bail!("--until-file {} exists already", file.display());
        }
    }

    // The release: the hold's end once every connection is set up, or a signal at any time
    // (a failed ready file releases at once).
    let ready = Arc::new(Notify::new());
    let abort = Arc::new(Notify::new());
    let release = {
        let (ready, abort, until_file) = (ready.clone(), abort.clone(), args.until_file.clone());
        async move {
            let held = async {
                ready.notified().await;
                hold_ends(hold_for, until_file.as_deref()).await;
            };
            tokio::select! {
                _ = held => {}
                _ = abort.notified() => {}
                why = signal() => eprintln!("share-load hold: {why}: releasing"),
            }
        }
    };
    let on_ready = |report: &HoldReport| {
        eprintln!(
            "share-load hold: ready: {} of {} answered ({} accepted, {} refused), {} held, {} failed",
            report.answered,
            report.connections,
            report.accepted,
            report.answered - report.accepted,
            report.held,
            report.failed
        );
        if let Some(path) = &args.ready_file {
            if let Err(e) = write_whole(path, report) {
                eprintln!(
                    "share-load hold: writing {}: {e:#}; releasing",
                    path.display()
                );
                abort.notify_one();
                return;
            }
        }
        ready.notify_one();
    };
    let report = share_load::hold(&options, on_ready, release).await?;
    if args.pool.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The hold's own end: after `hold_for`, or once `until_file` exists, whichever comes first
/// (never, with neither: a signal ends it).
async fn hold_ends(hold_for: Option<Duration>, until_file: Option<&Path>) {
    let timer = async {
        match hold_for {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let file = async {
        match until_file {
            Some(path) => {
                while !path.exists() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = timer => {}
        _ = file => {}
    }
}

/// SIGINT or SIGTERM (never, where they cannot be listened to).
async fn signal() -> &'static str {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                "SIGTERM"
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        why = interrupt => why,
        why = terminate => why,
    }
}

/// Writes `report` as JSON to `path` through a temporary file and a rename, so a reader never
/// sees half of it.
fn write_whole(path: &Path, report: &HoldReport) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, serde_json::to_vec(report)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
