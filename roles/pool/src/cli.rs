//! The pool's command line (the binary is a thin wrapper, so tests can run the same thing as a process).

use std::path::PathBuf;

use crate::{PoolConfig, PoolRunConfig};
use clap::{Parser, Subcommand};
use hashpool_config::PoolGlobalConfig;

/// Hashpool SV2 mining pool.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/pool.config.toml")]
    config: PathBuf,
    /// Shared pool-side topology (TOML).
    #[arg(short, long, default_value = "config/shared/pool.toml")]
    global_config: PathBuf,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Moves a SQLite ledger into an empty PostgreSQL database (the pool stopped), checking
    /// the ledger's totals before and after; prints them.
    MigrateLedger {
        /// The SQLite ledger file (`pool.ledger_path`).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database (`postgres://user:password@host:5432/db`), then set as
        /// `pool.ledger_database_url`.
        #[arg(long)]
        to: String,
    },
}

/// Runs the role as its binary does, until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::MigrateLedger { from, to }) = &args.command {
        return migrate_ledger(from, to).await;
    }
    let args = &args;
    hashpool_role::run("pool", &args.log, |shutdown| async move {
        let global: PoolGlobalConfig = hashpool_config::load(&args.global_config)?;
        let own: PoolConfig = hashpool_config::load(&args.config)?;
        let config = PoolRunConfig::new(&global, own).map_err(anyhow::Error::msg)?;
        Ok(crate::start(config, shutdown).await?.task)
    })
    .await
}

async fn migrate_ledger(from: &std::path::Path, to: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let totals = crate::ledger::migrate_ledger(from, to)
        .await
        .with_context(|| {
            format!(
                "moving the ledger {} into {}",
                from.display(),
                hashpool_config::database_url::redact(to)
            )
        })?;
    println!("ledger moved; totals equal before and after: {totals}");
    println!("set pool.ledger_database_url to the database and start the pool");
    Ok(())
}
