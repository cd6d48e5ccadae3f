use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use template_provider::TemplateProviderConfig;
use tokio_util::sync::CancellationToken;

/// Embedded regtest chain served over SV2 Template Distribution.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/template-provider.config.toml")]
    config: PathBuf,
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    log_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _log = hashpool_logging::init(args.log_file.as_deref())?;
    let config: TemplateProviderConfig = hashpool_config::load(&args.config)?;
    let shutdown = CancellationToken::new();
    let running = template_provider::start(config, shutdown.clone())
        .await
        .context("starting the template provider")?;
    hashpool_sv2_io::shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    running.task.await.context("template provider task")?;
    Ok(())
}
