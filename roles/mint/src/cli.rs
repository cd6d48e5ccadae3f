//! The mint's command line (the binary is a thin wrapper, so tests can run the same thing as a process).

use std::path::PathBuf;

use crate::{MintConfig, MintRunConfig};
use clap::{Parser, Subcommand};
use hashpool_config::PoolGlobalConfig;

/// Hashpool's Cashu mint (unit `hash`).
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/mint.config.toml")]
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
    /// Moves the mint's SQLite database into an empty PostgreSQL database (the mint stopped),
    /// checking its totals before and after; prints them. The seed file stays as it is.
    MigrateDatabase {
        /// The SQLite database (`mint.database_path`).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database (`postgres://user:password@host:5432/db`), then set as
        /// `mint.database_url`.
        #[arg(long)]
        to: String,
    },
}

/// Runs the role as its binary does, until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::MigrateDatabase { from, to }) = &args.command {
        use anyhow::Context;
        let totals = crate::migrate::migrate_database(from, to)
            .await
            .with_context(|| {
                format!(
                    "moving the mint database {} into {}",
                    from.display(),
                    hashpool_config::database_url::redact(to)
                )
            })?;
        println!("mint database moved; totals equal before and after: {totals}");
        println!("set mint.database_url to the database (keep the seed file) and start the mint");
        return Ok(());
    }
    let args = &args;
    hashpool_role::run("mint", &args.log, |shutdown| async move {
        let global: PoolGlobalConfig = hashpool_config::load(&args.global_config)?;
        let own: MintConfig = hashpool_config::load(&args.config)?;
        let config = MintRunConfig::new(&global, own).map_err(anyhow::Error::msg)?;
        Ok(crate::start(config, shutdown).await?.task)
    })
    .await
}
