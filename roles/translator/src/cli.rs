//! The translator's command line (the binary is a thin wrapper).

use std::path::PathBuf;

use clap::Parser;
use hashpool_config::ProxyGlobalConfig;

use crate::{config::TranslatorConfig, role::RoleConfig};

/// Hashpool translator: SV1 miners on the SV2 pool, earning ehash into the translator's wallet.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/translator.config.toml")]
    config: PathBuf,
    /// Shared miner-side topology (TOML).
    #[arg(short, long, default_value = "config/shared/proxy.toml")]
    global_config: PathBuf,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
}

/// Runs the translator until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let args = &args;
    hashpool_role::run("translator", &args.log, |shutdown| async move {
        let global: ProxyGlobalConfig = hashpool_config::load(&args.global_config)?;
        let own: TranslatorConfig = hashpool_config::load(&args.config)?;
        let config = RoleConfig::new(&global, &own).map_err(anyhow::Error::msg)?;
        Ok(crate::role::start(config, shutdown).await?.translator.task)
    })
    .await
}
