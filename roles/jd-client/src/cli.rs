//! The jd-client's command line (the binary is a thin wrapper).

use std::path::PathBuf;

use clap::Parser;

use crate::{config::JdClientConfig, role::RoleConfig};

/// Hashpool job declarator client: its own templates mined on the pool, ehash into its wallet.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/jd-client.config.toml")]
    config: PathBuf,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
}

/// Runs the jd-client until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let args = &args;
    hashpool_role::run("jd-client", &args.log, |shutdown| async move {
        let own: JdClientConfig = hashpool_config::load(&args.config)?;
        let config = RoleConfig::new(&own).map_err(anyhow::Error::msg)?;
        Ok(crate::role::start(config, shutdown).await?.jd_client.task)
    })
    .await
}
