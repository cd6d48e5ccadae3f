use std::path::PathBuf;

use clap::Parser;
use template_provider::TemplateProviderConfig;

/// Embedded regtest chain served over SV2 Template Distribution.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/template-provider.config.toml")]
    config: PathBuf,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let args = &args;
    hashpool_role::run("template provider", &args.log, |shutdown| async move {
        let config: TemplateProviderConfig = hashpool_config::load(&args.config)?;
        Ok(template_provider::start(config, shutdown).await?.task)
    })
    .await
}
