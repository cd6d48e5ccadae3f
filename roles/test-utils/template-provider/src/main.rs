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
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    log_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let args = &args;
    hashpool_role::run(
        "template provider",
        args.log_file.as_deref(),
        |shutdown| async move {
            let config: TemplateProviderConfig = hashpool_config::load(&args.config)?;
            Ok(template_provider::start(config, shutdown).await?.task)
        },
    )
    .await
}
